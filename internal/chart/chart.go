// Package chart draws apd's charts in pure Go, as SVG or PNG: a panel per
// sensor with a line (or, for daily totals, bars) per host in the host's
// display name and colour, round time ticks in local time, the unit on
// the value axis, and a map of the hosts coloured by their latest value.
// apd chart, /api/v1/chart.png|.svg and the dashboard's map draw with it.
//
// It draws with its own small canvas (golang.org/x/image's rasteriser and
// the Go font) rather than a plotting library: apd needs round local-time
// ticks, bars on a time axis, maps and host colours that no library had
// as it needs them, and the whole of it adds about as much to the binary
// as the fonts of the smallest library alone.
package chart

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/apd-telemetry/apd/internal/chart/geo"
)

// XY is one point of a series: a time and a value.
type XY struct {
	T time.Time
	V float64
}

// Series is one host's points in one panel.
type Series struct {
	Host   string
	Label  string
	Colour color.RGBA
	Points []XY
}

// Panel is one chart: one sensor.
type Panel struct {
	Title string
	Unit  string
	// Bars draws each point as a bar of Period (daily totals).
	Bars   bool
	Period time.Duration
	Series []Series
}

// MapHost is a host on the map.
type MapHost struct {
	Label  string
	At     geo.LatLon
	Value  float64
	Colour color.RGBA // the host's own, for its label
}

// Map is the map panel: hosts at their locations, coloured by Value.
type Map struct {
	Title string
	Unit  string
	Hosts []MapHost
	// Interpolate adds an inverse-distance-weighted layer between hosts.
	Interpolate bool
	// Overlay is the user's own shapes (GeoJSON), drawn over the map.
	Overlay []geo.Shape
}

// Figure is what one image shows: panels in a grid, about square, and
// optionally a map below.
type Figure struct {
	Panels        []Panel
	Map           *Map
	Width, Height int
	// MapHeight is the map's share of Height (0: a map-only figure uses
	// all of it, a map below panels 45 %).
	MapHeight int
	From, To  time.Time
	Location  *time.Location
	Theme     Theme
}

// Theme is a figure's colours.
type Theme struct {
	Background, Text, Muted, Grid, Land, Border, Water color.RGBA
}

// Light and Dark are the themes.
var (
	Light = Theme{Background: rgb(0xffffff), Text: rgb(0x222222), Muted: rgb(0x666666), Grid: rgb(0xe4e4e4),
		Land: rgb(0xf1efe8), Border: rgb(0xb5b0a3), Water: rgb(0xdde8f0)}
	Dark = Theme{Background: rgb(0x16181d), Text: rgb(0xe6e6e6), Muted: rgb(0x9aa0a6), Grid: rgb(0x2c3038),
		Land: rgb(0x262a31), Border: rgb(0x4a505a), Water: rgb(0x1b2530)}
)

func rgb(v uint32) color.RGBA { return color.RGBA{uint8(v >> 16), uint8(v >> 8), uint8(v), 255} }

// Palette gives hosts without a colour of their own one of these, in
// order (Tableau 10: distinct, and readable on light and dark).
var Palette = []color.RGBA{rgb(0x4e79a7), rgb(0xf28e2b), rgb(0xe15759), rgb(0x76b7b2), rgb(0x59a14f),
	rgb(0xedc948), rgb(0xb07aa1), rgb(0xff9da7), rgb(0x9c755f), rgb(0xbab0ac)}

// WriteSVG draws f as an SVG document.
func WriteSVG(w io.Writer, f *Figure) error {
	c := newSVG(f.Width, f.Height, f.Theme.Background)
	if err := f.draw(c); err != nil {
		return err
	}
	return c.writeTo(w)
}

// WritePNG draws f as a PNG image.
func WritePNG(w io.Writer, f *Figure) error {
	c := newPNG(f.Width, f.Height, f.Theme.Background)
	if err := f.draw(c); err != nil {
		return err
	}
	return c.writeTo(w)
}

// Write draws f in format "png" or "svg".
func Write(w io.Writer, f *Figure, format string) error {
	switch format {
	case "png":
		return WritePNG(w, f)
	case "svg":
		return WriteSVG(w, f)
	}
	return fmt.Errorf("image format %q: want png or svg", format)
}

type rect struct{ x, y, w, h float64 }

func (f *Figure) draw(c canvas) error {
	if f.Location == nil {
		f.Location = time.Local
	}
	W, H := float64(f.Width), float64(f.Height)
	chartsH := H
	if f.Map != nil {
		mh := float64(f.MapHeight)
		if len(f.Panels) == 0 {
			mh = H
		} else if mh <= 0 {
			mh = H * 0.45
		}
		chartsH = H - mh
		if err := f.drawMap(c, rect{0, chartsH, W, mh}); err != nil {
			return err
		}
	}
	n := len(f.Panels)
	if n == 0 {
		if f.Map == nil {
			c.text(W/2, H/2, "no readings in this range", 14, f.Theme.Muted, AlignMiddle)
		}
		return nil
	}
	cols := int(math.Ceil(math.Sqrt(float64(n))))
	rows := (n + cols - 1) / cols
	cw, ch := W/float64(cols), chartsH/float64(rows)
	for i := range f.Panels {
		r := rect{float64(i%cols) * cw, float64(i/cols) * ch, cw, ch}
		f.drawPanel(c, &f.Panels[i], r)
	}
	return nil
}

// DisplayUnit is how a unit is written on an axis.
func DisplayUnit(u string) string {
	switch u {
	case "degC":
		return "°C"
	case "degF":
		return "°F"
	case "percent":
		return "%"
	case "ratio":
		return ""
	case "deg":
		return "°"
	}
	return u
}

const (
	titleSize = 14
	labelSize = 11
)

func (f *Figure) drawPanel(c canvas, p *Panel, r rect) {
	th := f.Theme
	pad := 10.0
	title := p.Title
	if u := DisplayUnit(p.Unit); u != "" {
		title += " (" + u + ")"
	}
	c.text(r.x+pad, r.y+pad+titleSize, title, titleSize, th.Text, AlignStart)

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			lo, hi = math.Min(lo, pt.V), math.Max(hi, pt.V)
		}
	}
	if p.Bars {
		lo, hi = math.Min(lo, 0), math.Max(hi, 0)
	}
	legendH := f.legendHeight(p, r.w-2*pad)
	plotTop := r.y + pad + titleSize + 14
	plotBottom := r.y + r.h - pad - legendH - labelSize - 8
	if math.IsInf(lo, 1) {
		c.text(r.x+r.w/2, (plotTop+plotBottom)/2, "no readings in this range", labelSize+1, th.Muted, AlignMiddle)
		return
	}
	yTicks, yMin, yMax := valueTicks(lo, hi, max(2, int((plotBottom-plotTop)/45)))
	labelW := 0.0
	for _, v := range yTicks {
		labelW = math.Max(labelW, textWidth(formatTick(v), labelSize))
	}
	plot := rect{r.x + pad + labelW + 8, plotTop, 0, plotBottom - plotTop}
	plot.w = r.x + r.w - pad - plot.x
	if plot.w < 20 || plot.h < 20 {
		return
	}
	from, to := f.From, f.To
	if p.Bars && p.Period > 0 {
		// Whole periods: a bar for each day of the range, the first and
		// last included.
		from = firstTick(from, day, f.Location)
	}
	span := to.Sub(from).Seconds()
	xOf := func(t time.Time) float64 { return plot.x + t.Sub(from).Seconds()/span*plot.w }
	yOf := func(v float64) float64 { return plot.y + plot.h - (v-yMin)/(yMax-yMin)*plot.h }

	for _, v := range yTicks {
		y := yOf(v)
		c.rect(plot.x, y-0.5, plot.w, 1, th.Grid)
		c.text(plot.x-6, y+4, formatTick(v), labelSize, th.Muted, AlignEnd)
	}
	for _, tk := range timeTicks(from, to, f.Location, plot.w, 90) {
		x := xOf(tk.t)
		c.rect(x-0.5, plot.y, 1, plot.h, th.Grid)
		if half := textWidth(tk.label, labelSize) / 2; x-half >= r.x && x+half <= r.x+r.w {
			c.text(x, plot.y+plot.h+labelSize+5, tk.label, labelSize, th.Muted, AlignMiddle)
		}
	}
	c.rect(plot.x, plot.y+plot.h-0.5, plot.w, 1, th.Muted)

	if p.Bars {
		f.drawBars(c, p, plot, xOf, yOf)
	} else {
		for _, s := range p.Series {
			for _, run := range runs(s.Points) {
				pts := make([]Point, len(run))
				for i, pt := range run {
					pts[i] = Point{xOf(pt.T), yOf(pt.V)}
				}
				if len(pts) == 1 {
					c.circle(pts[0].X, pts[0].Y, 2, s.Colour, color.RGBA{})
					continue
				}
				c.polyline(pts, s.Colour, 1.75)
			}
		}
	}
	f.drawLegend(c, p, rect{r.x + pad, r.y + r.h - pad - legendH, r.w - 2*pad, legendH})
}

// runs splits points where readings are missing — a gap of more than
// three times the usual spacing — so a line is not drawn across hours a
// device was off.
func runs(pts []XY) [][]XY {
	if len(pts) < 3 {
		return [][]XY{pts}
	}
	gaps := make([]time.Duration, len(pts)-1)
	for i := 1; i < len(pts); i++ {
		gaps[i-1] = pts[i].T.Sub(pts[i-1].T)
	}
	sorted := slices.Clone(gaps)
	slices.Sort(sorted)
	limit := 3 * sorted[len(sorted)/2]
	var out [][]XY
	start := 0
	for i, g := range gaps {
		if g > limit {
			out = append(out, pts[start:i+1])
			start = i + 1
		}
	}
	return append(out, pts[start:])
}

func (f *Figure) drawBars(c canvas, p *Panel, plot rect, xOf func(time.Time) float64, yOf func(float64) float64) {
	n := float64(len(p.Series))
	for si, s := range p.Series {
		for _, pt := range s.Points {
			x0, x1 := xOf(pt.T), xOf(pt.T.Add(p.Period))
			slot := (x1 - x0) * 0.8 / n
			x := x0 + (x1-x0)*0.1 + float64(si)*slot
			y0, y1 := yOf(0), yOf(pt.V)
			c.rect(x, math.Min(y0, y1), math.Max(slot-1, 1), math.Abs(y1-y0), s.Colour)
		}
	}
}

const swatch = 12

// legendRows lays the legend's entries out in rows that fit width.
func legendRows(p *Panel, width float64) [][]int {
	var rows [][]int
	x := width + 1
	for i, s := range p.Series {
		w := swatch + 6 + textWidth(s.Label, labelSize) + 16
		if x+w > width && x > 0 {
			rows = append(rows, nil)
			x = 0
		}
		rows[len(rows)-1] = append(rows[len(rows)-1], i)
		x += w
	}
	return rows
}

func (f *Figure) legendHeight(p *Panel, width float64) float64 {
	return float64(len(legendRows(p, width))) * (labelSize + 7)
}

func (f *Figure) drawLegend(c canvas, p *Panel, r rect) {
	for ri, row := range legendRows(p, r.w) {
		x, y := r.x, r.y+float64(ri)*(labelSize+7)+labelSize
		for _, i := range row {
			s := p.Series[i]
			c.rect(x, y-swatch+2, swatch, swatch-2, s.Colour)
			c.text(x+swatch+6, y, s.Label, labelSize, f.Theme.Text, AlignStart)
			x += swatch + 6 + textWidth(s.Label, labelSize) + 16
		}
	}
}

// ramp is the colour scale of map values, low to high (viridis-like:
// ordered in lightness, readable for the colour-blind).
var ramp = []color.RGBA{rgb(0x440154), rgb(0x3b528b), rgb(0x21918c), rgb(0x5ec962), rgb(0xfde725)}

// RampColour is the colour of t in [0, 1] on the map's scale.
func RampColour(t float64) color.RGBA {
	t = math.Max(0, math.Min(1, t))
	pos := t * float64(len(ramp)-1)
	i := int(math.Min(math.Floor(pos), float64(len(ramp)-2)))
	u := pos - float64(i)
	a, b := ramp[i], ramp[i+1]
	mix := func(x, y uint8) uint8 { return uint8(math.Round(float64(x)*(1-u) + float64(y)*u)) }
	return color.RGBA{mix(a.R, b.R), mix(a.G, b.G), mix(a.B, b.B), 255}
}

func (f *Figure) drawMap(c canvas, r rect) error {
	m, th := f.Map, f.Theme
	pad := 10.0
	c.text(r.x+pad, r.y+pad+titleSize, m.Title, titleSize, th.Text, AlignStart)
	area := rect{r.x + pad, r.y + pad + titleSize + 10, r.w - 2*pad - 70, r.h - 2*pad - titleSize - 10}
	if len(m.Hosts) == 0 {
		c.text(area.x+area.w/2, area.y+area.h/2, "no host with a location and a reading (apd hosts set HOST --location LAT,LON)", labelSize+1, th.Muted, AlignMiddle)
		return nil
	}
	pts := make([]geo.LatLon, len(m.Hosts))
	for i, h := range m.Hosts {
		pts[i] = h.At
	}
	box := geo.Bounds(pts, 0.02)
	proj := geo.Fit(box, area.x, area.y, area.w, area.h)
	// The projection keeps its aspect: the map is the part of the area
	// it fills.
	x0, y0 := proj.Project(geo.LatLon{Lat: box.MaxLat, Lon: box.MinLon})
	x1, y1 := proj.Project(geo.LatLon{Lat: box.MinLat, Lon: box.MaxLon})
	frame := rect{x0, y0, x1 - x0, y1 - y0}
	detail := geo.Detail(box)
	if detail != "" {
		c.rect(frame.x, frame.y, frame.w, frame.h, th.Water)
		all, err := geo.Countries(detail)
		if err != nil {
			return err
		}
		var rings [][]Point
		for _, country := range geo.In(all, box) {
			for _, ring := range country.Rings {
				rp := make([]Point, len(ring))
				for i, ll := range ring {
					x, y := proj.Project(ll)
					rp[i] = Point{math.Max(frame.x-2, math.Min(frame.x+frame.w+2, x)), math.Max(frame.y-2, math.Min(frame.y+frame.h+2, y))}
				}
				rings = append(rings, rp)
			}
		}
		c.polygons(rings, th.Land, th.Border, 0.8)
	} else {
		c.rect(frame.x, frame.y, frame.w, frame.h, th.Land)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, h := range m.Hosts {
		lo, hi = math.Min(lo, h.Value), math.Max(hi, h.Value)
	}
	scale := func(v float64) float64 {
		if hi == lo {
			return 0.5
		}
		return (v - lo) / (hi - lo)
	}
	if m.Interpolate && len(m.Hosts) >= 3 {
		samples := make([]geo.Sample, len(m.Hosts))
		for i, h := range m.Hosts {
			samples[i] = geo.Sample{At: h.At, Value: h.Value}
		}
		const cell = 12.0
		for y := frame.y; y < frame.y+frame.h; y += cell {
			for x := frame.x; x < frame.x+frame.w; x += cell {
				v := geo.IDW(samples, proj.Unproject(x+cell/2, y+cell/2))
				col := RampColour(scale(v))
				col.A = 90
				c.rect(x, y, math.Min(cell, frame.x+frame.w-x), math.Min(cell, frame.y+frame.h-y), col)
			}
		}
	}
	for _, sh := range m.Overlay {
		var rings [][]Point
		for _, ring := range sh.Rings {
			rp := make([]Point, len(ring))
			for i, ll := range ring {
				x, y := proj.Project(ll)
				rp[i] = Point{x, y}
			}
			if sh.Closed {
				rings = append(rings, rp)
			} else {
				c.polyline(rp, th.Muted, 1.5)
			}
		}
		fill := th.Muted
		fill.A = 40
		c.polygons(rings, fill, th.Muted, 1.2)
	}
	// The graticule and labels of its lines.
	step := geo.GraticuleStep(box, 5)
	for lat := math.Ceil(box.MinLat/step) * step; lat <= box.MaxLat; lat += step {
		_, y := proj.Project(geo.LatLon{Lat: lat, Lon: box.MinLon})
		c.rect(frame.x, y-0.25, frame.w, 0.5, th.Grid)
		c.text(frame.x+3, y-3, formatTick(roundTo(lat, step))+"°", labelSize-2, th.Muted, AlignStart)
	}
	for lon := math.Ceil(box.MinLon/step) * step; lon <= box.MaxLon; lon += step {
		x, _ := proj.Project(geo.LatLon{Lat: box.MinLat, Lon: lon})
		c.rect(x-0.25, frame.y, 0.5, frame.h, th.Grid)
		c.text(x+3, frame.y+frame.h-4, formatTick(roundTo(lon, step))+"°", labelSize-2, th.Muted, AlignStart)
	}
	// Hosts, largest value last so it is on top.
	order := make([]int, len(m.Hosts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return m.Hosts[order[a]].Value < m.Hosts[order[b]].Value })
	for _, i := range order {
		h := m.Hosts[i]
		x, y := proj.Project(h.At)
		c.circle(x, y, 7, RampColour(scale(h.Value)), th.Text)
		c.text(x+10, y-4, h.Label, labelSize, th.Text, AlignStart)
		c.text(x+10, y+9, formatTick(roundTo(h.Value, 0.1))+" "+DisplayUnit(m.Unit), labelSize-1, th.Muted, AlignStart)
	}
	// Scale bar, bottom left.
	km, px := proj.ScaleBar(frame.w / 4)
	sx, sy := frame.x+10, frame.y+frame.h-22
	c.rect(sx, sy, px, 3, th.Text)
	label := fmt.Sprintf("%g km", km)
	if km < 1 {
		label = fmt.Sprintf("%g m", km*1000)
	}
	c.text(sx, sy-4, label, labelSize-1, th.Text, AlignStart)
	// Legend: the colour scale, right of the map.
	lx, ly, lh := r.x+r.w-pad-60, area.y+10, math.Min(area.h-20, 180.0)
	const steps = 24
	for i := range steps {
		t := 1 - float64(i)/steps
		c.rect(lx, ly+float64(i)*lh/steps, 14, lh/steps+0.5, RampColour(t))
	}
	u := DisplayUnit(m.Unit)
	c.text(lx+18, ly+8, formatTick(roundTo(hi, 0.1))+" "+u, labelSize-1, th.Text, AlignStart)
	c.text(lx+18, ly+lh, formatTick(roundTo(lo, 0.1))+" "+u, labelSize-1, th.Text, AlignStart)
	return nil
}
