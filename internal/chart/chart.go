// Package chart draws apd's charts in pure Go, as SVG or PNG: a panel per
// sensor with a line (or, for daily totals, bars) per host in the host's
// display name and colour, round time ticks in local time, the unit on
// the value axis, and a map of the hosts coloured by their latest value.
// apd chart, /api/v1/chart.png|.svg and the dashboard's map draw with it.
//
// Value axes are written in their unit's own terms, as the CLI writes
// values: bytes on the binary scale (23.5 GiB), ratios as percentages,
// seconds as 30s, 5m, 1d 6h, large and small numbers with SI prefixes,
// other units after the number; steps are round in the unit written, and
// no axis has two equal labels. The map is in the same unit as the chart.
// A panel of more than 12 hosts draws the 10 whose latest values lie
// furthest from the median in colour and the rest in grey, so a fleet
// stays readable and its outliers stand out.
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
	"strconv"
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

// overlaps says whether r and o share any area.
func (r rect) overlaps(o rect) bool {
	return r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h
}

func (f *Figure) draw(c canvas) error {
	if f.Location == nil {
		f.Location = time.Local
	}
	W, H := float64(f.Width), float64(f.Height)
	n := len(f.Panels)
	if n == 0 {
		if f.Map != nil {
			return f.drawMap(c, rect{0, 0, W, H})
		}
		c.text(W/2, H/2, "no readings in this range", 14, f.Theme.Muted, AlignMiddle)
		return nil
	}
	charts, cols := rect{0, 0, W, H}, int(math.Ceil(math.Sqrt(float64(n))))
	if f.Map != nil {
		var mapR rect
		charts, mapR, cols = f.layout(W, H)
		if err := f.drawMap(c, mapR); err != nil {
			return err
		}
	}
	rows := (n + cols - 1) / cols
	cw, ch := charts.w/float64(cols), charts.h/float64(rows)
	for i := range f.Panels {
		r := rect{charts.x + float64(i%cols)*cw, charts.y + float64(i/cols)*ch, cw, ch}
		f.drawPanel(c, &f.Panels[i], r)
	}
	return nil
}

// The map's margins around its frame: the padding and the colour scale
// across, the padding and the title down.
const (
	mapChromeW = 2*10 + 70
	mapChromeH = 2*10 + titleSize + 10
	// A panel narrower or lower than these is not worth drawing beside a
	// map.
	minPanelW, minPanelH = 300, 180
)

// layout shares a figure between its panels and its map, keeping the
// map's aspect: below the panels across the whole width (MapHeight, or
// 45 % of the height), or, when that would leave the map a small picture
// in a wide strip — a row of panels over a city, say — in a column beside
// them, with the panels stacked in the rest. The column is chosen when it
// gives the map half as much area again and the panels stay readable. It
// returns where the panels go, where the map goes, and the panels'
// columns.
func (f *Figure) layout(W, H float64) (charts, mapR rect, cols int) {
	n := len(f.Panels)
	aspect := f.Map.aspect()
	fitted := func(w, h float64) float64 { // the area a map of aspect fills in w×h
		w, h = w-mapChromeW, h-mapChromeH
		if w <= 0 || h <= 0 {
			return 0
		}
		return math.Min(w, h*aspect) * math.Min(h, w/aspect)
	}
	mh := float64(f.MapHeight)
	if mh <= 0 || mh >= H {
		mh = H * 0.45
	}
	charts, mapR = rect{0, 0, W, H - mh}, rect{0, H - mh, W, mh}
	cols = int(math.Ceil(math.Sqrt(float64(n))))
	if f.MapHeight > 0 {
		return charts, mapR, cols
	}
	mw := math.Min(W*0.5, (H-mapChromeH)*aspect+mapChromeW)
	sideCols := gridColumns(n, W-mw, H)
	sideRows := (n + sideCols - 1) / sideCols
	readable := (W-mw)/float64(sideCols) >= minPanelW && H/float64(sideRows) >= minPanelH
	if readable && fitted(mw, H) > 1.5*fitted(W, mh) {
		return rect{0, 0, W - mw, H}, rect{W - mw, 0, mw, H}, sideCols
	}
	return charts, mapR, cols
}

// gridColumns is the number of columns that gives n panels in w×h cells
// closest to twice as wide as high, the shape of a time series.
func gridColumns(n int, w, h float64) int {
	best, bestScore := 1, math.Inf(1)
	for cols := 1; cols <= n; cols++ {
		rows := (n + cols - 1) / cols
		score := math.Abs(math.Log((w / float64(cols)) / (h / float64(rows)) / 2))
		if score < bestScore {
			best, bestScore = cols, score
		}
	}
	return best
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
	// The unit is on every tick (23.5 GiB, 12%, 6h), so the title does
	// not repeat it: a title in bytes over ticks in GiB would mislead.
	c.text(r.x+pad, r.y+pad+titleSize, p.Title, titleSize, th.Text, AlignStart)

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			lo, hi = math.Min(lo, pt.V), math.Max(hi, pt.V)
		}
	}
	if p.Bars {
		lo, hi = math.Min(lo, 0), math.Max(hi, 0)
	}
	inColour := coloured(p.Series)
	legend := legendOf(p, inColour)
	legendH := f.legendHeight(legend, r.w-2*pad)
	plotTop := r.y + pad + titleSize + 14
	plotBottom := r.y + r.h - pad - legendH - labelSize - 8
	if math.IsInf(lo, 1) {
		c.text(r.x+r.w/2, (plotTop+plotBottom)/2, "no readings in this range", labelSize+1, th.Muted, AlignMiddle)
		return
	}
	axis := newValueAxis(lo, hi, max(2, int((plotBottom-plotTop)/45)), p.Unit)
	labelW := 0.0
	for _, tk := range axis.ticks {
		labelW = math.Max(labelW, textWidth(tk.label, labelSize))
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
	yOf := func(v float64) float64 { return plot.y + plot.h - (v-axis.min)/(axis.max-axis.min)*plot.h }

	for _, tk := range axis.ticks {
		y := yOf(tk.v)
		c.rect(plot.x, y-0.5, plot.w, 1, th.Grid)
		c.text(plot.x-6, y+4, tk.label, labelSize, th.Muted, AlignEnd)
	}
	for _, tk := range timeTicks(from, to, f.Location, plot.w, 90) {
		x := xOf(tk.t)
		c.rect(x-0.5, plot.y, 1, plot.h, th.Grid)
		if half := textWidth(tk.label, labelSize) / 2; x-half >= r.x && x+half <= r.x+r.w {
			c.text(x, plot.y+plot.h+labelSize+5, tk.label, labelSize, th.Muted, AlignMiddle)
		}
	}
	c.rect(plot.x, plot.y+plot.h-0.5, plot.w, 1, th.Muted)

	// The more grey lines, the fainter each, so that a crowd stays a
	// background.
	grey := th.Muted
	grey.A = uint8(max(30, min(90, 2700/max(1, len(p.Series)-emphasised))))
	if p.Bars {
		f.drawBars(c, p, plot, xOf, yOf, inColour, grey)
	} else {
		// The grey hosts first, so the coloured ones are drawn over them.
		for _, pass := range []bool{false, true} {
			for si, s := range p.Series {
				if inColour[si] != pass {
					continue
				}
				colour, width := s.Colour, 1.75
				if !pass {
					colour, width = grey, 1
				}
				for _, run := range runs(s.Points) {
					pts := make([]Point, len(run))
					for i, pt := range run {
						pts[i] = Point{xOf(pt.T), yOf(pt.V)}
					}
					if len(pts) == 1 {
						c.circle(pts[0].X, pts[0].Y, 2, colour, color.RGBA{})
						continue
					}
					c.polyline(pts, colour, width)
				}
			}
		}
	}
	f.drawLegend(c, legend, rect{r.x + pad, r.y + r.h - pad - legendH, r.w - 2*pad, legendH})
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

func (f *Figure) drawBars(c canvas, p *Panel, plot rect, xOf func(time.Time) float64, yOf func(float64) float64, inColour []bool, grey color.RGBA) {
	n := float64(len(p.Series))
	for si, s := range p.Series {
		colour := s.Colour
		if !inColour[si] {
			colour = grey
		}
		for _, pt := range s.Points {
			x0, x1 := xOf(pt.T), xOf(pt.T.Add(p.Period))
			slot := (x1 - x0) * 0.8 / n
			x := x0 + (x1-x0)*0.1 + float64(si)*slot
			y0, y1 := yOf(0), yOf(pt.V)
			c.rect(x, math.Min(y0, y1), math.Max(slot-1, 1), math.Abs(y1-y0), colour)
		}
	}
}

const swatch = 12

// legendEntry is a host in a panel's legend, or (without a swatch) the
// note of how many more are drawn in grey.
type legendEntry struct {
	label  string
	colour color.RGBA
	note   bool
}

func legendOf(p *Panel, inColour []bool) []legendEntry {
	var out []legendEntry
	rest := 0
	for i, s := range p.Series {
		if inColour[i] {
			out = append(out, legendEntry{label: s.Label, colour: s.Colour})
		} else {
			rest++
		}
	}
	if rest > 0 {
		out = append(out, legendEntry{label: fmt.Sprintf("+%d more (grey)", rest), note: true})
	}
	return out
}

func (e legendEntry) width() float64 {
	w := textWidth(e.label, labelSize) + 16
	if !e.note {
		w += swatch + 6
	}
	return w
}

// legendRows lays the legend's entries out in rows that fit width.
func legendRows(entries []legendEntry, width float64) [][]int {
	var rows [][]int
	x := width + 1
	for i, e := range entries {
		w := e.width()
		if x+w > width && x > 0 {
			rows = append(rows, nil)
			x = 0
		}
		rows[len(rows)-1] = append(rows[len(rows)-1], i)
		x += w
	}
	return rows
}

func (f *Figure) legendHeight(entries []legendEntry, width float64) float64 {
	return float64(len(legendRows(entries, width))) * (labelSize + 7)
}

func (f *Figure) drawLegend(c canvas, entries []legendEntry, r rect) {
	for ri, row := range legendRows(entries, r.w) {
		x, y := r.x, r.y+float64(ri)*(labelSize+7)+labelSize
		for _, i := range row {
			e := entries[i]
			if e.note {
				c.text(x, y, e.label, labelSize, f.Theme.Muted, AlignStart)
			} else {
				c.rect(x, y-swatch+2, swatch, swatch-2, e.colour)
				c.text(x+swatch+6, y, e.label, labelSize, f.Theme.Text, AlignStart)
			}
			x += e.width()
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

// singleHostKm is the radius of the frame around a lone host: a
// neighbourhood, enough for a scale bar and a graticule to place it by.
const singleHostKm = 2

// box is the part of the world the map shows: the hosts' bounds, or a
// neighbourhood around a lone host, which has no extent to fit.
func (m *Map) box() geo.BBox {
	pts := make([]geo.LatLon, len(m.Hosts))
	for i, h := range m.Hosts {
		pts[i] = h.At
	}
	if len(pts) == 1 {
		return geo.Around(pts[0], singleHostKm)
	}
	return geo.Bounds(pts, 0.02)
}

// aspect is the width over the height of the map's frame.
func (m *Map) aspect() float64 {
	if len(m.Hosts) == 0 {
		return 2
	}
	b := m.box()
	proj := geo.Fit(b, 0, 0, 1000, 1000)
	x0, y0 := proj.Project(geo.LatLon{Lat: b.MaxLat, Lon: b.MinLon})
	x1, y1 := proj.Project(geo.LatLon{Lat: b.MinLat, Lon: b.MaxLon})
	if y1-y0 <= 0 || x1-x0 <= 0 {
		return 1
	}
	return (x1 - x0) / (y1 - y0)
}

func (f *Figure) drawMap(c canvas, r rect) error {
	m, th := f.Map, f.Theme
	pad := 10.0
	c.text(r.x+pad, r.y+pad+titleSize, m.Title, titleSize, th.Text, AlignStart)
	area := rect{r.x + pad, r.y + pad + titleSize + 10, r.w - mapChromeW, r.h - mapChromeH}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, h := range m.Hosts {
		lo, hi = math.Min(lo, h.Value), math.Max(hi, h.Value)
	}
	low, high := formatRange(lo, hi, m.Unit)
	// The colour scale's column is as wide as its labels.
	legendW := 14 + 4 + math.Max(textWidth(low, labelSize-1), textWidth(high, labelSize-1))
	area.w = r.w - 2*pad - legendW - 10
	if len(m.Hosts) == 0 {
		c.text(area.x+area.w/2, area.y+area.h/2, "no host with a location and a reading (apd hosts set HOST --location LAT,LON)", labelSize+1, th.Muted, AlignMiddle)
		return nil
	}
	box := m.box()
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
	degrees := func(v float64) string { return strconv.FormatFloat(roundTo(v, step), 'f', -1, 64) + "°" }
	for lat := math.Ceil(box.MinLat/step) * step; lat <= box.MaxLat; lat += step {
		_, y := proj.Project(geo.LatLon{Lat: lat, Lon: box.MinLon})
		c.rect(frame.x, y-0.25, frame.w, 0.5, th.Grid)
		c.text(frame.x+3, y-3, degrees(lat), labelSize-2, th.Muted, AlignStart)
	}
	for lon := math.Ceil(box.MinLon/step) * step; lon <= box.MaxLon; lon += step {
		x, _ := proj.Project(geo.LatLon{Lat: box.MinLat, Lon: lon})
		c.rect(x-0.25, frame.y, 0.5, frame.h, th.Grid)
		if x+3+textWidth(degrees(lon), labelSize-2) <= frame.x+frame.w {
			c.text(x+3, frame.y+frame.h-4, degrees(lon), labelSize-2, th.Muted, AlignStart)
		}
	}
	// Hosts, largest value last so it is on top; smaller in a crowd.
	radius := 7.0
	if len(m.Hosts) > 30 {
		radius = 5
	}
	order := make([]int, len(m.Hosts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return m.Hosts[order[a]].Value < m.Hosts[order[b]].Value })
	taken := make([]rect, 0, 2*len(m.Hosts)) // markers and labels: what the labels and the scale bar must not cover
	for _, i := range order {
		x, y := proj.Project(m.Hosts[i].At)
		c.circle(x, y, radius, RampColour(scale(m.Hosts[i].Value)), th.Text)
		taken = append(taken, rect{x - radius - 1, y - radius - 1, 2*radius + 2, 2*radius + 2})
	}
	if len(m.Hosts) == 1 {
		// A ring of a round distance around a lone host tells how far
		// the frame reaches without a second place to measure by.
		km, px := proj.ScaleBar(frame.h / 3.5)
		x, y := proj.Project(m.Hosts[0].At)
		c.circle(x, y, px, color.RGBA{}, th.Border)
		label := distanceLabel(km)
		c.text(x, y-px-4, label, labelSize-1, th.Muted, AlignMiddle)
		taken = append(taken, rect{x - textWidth(label, labelSize-1)/2, y - px - 4 - labelSize, textWidth(label, labelSize-1), labelSize + 2})
	}
	taken = f.drawMapLabels(c, r, proj, radius, taken)
	f.drawScaleBar(c, proj, frame, taken)
	// Legend: the colour scale, right of the map; one value is one colour.
	lx, ly, lh := r.x+r.w-pad-legendW, area.y+10, math.Min(area.h-20, 180.0)
	if lo == hi {
		c.rect(lx, ly, 14, 14, RampColour(0.5))
		c.text(lx+18, ly+11, high, labelSize-1, th.Text, AlignStart)
		return nil
	}
	const steps = 24
	for i := range steps {
		t := 1 - float64(i)/steps
		c.rect(lx, ly+float64(i)*lh/steps, 14, lh/steps+0.5, RampColour(t))
	}
	c.text(lx+18, ly+8, high, labelSize-1, th.Text, AlignStart)
	c.text(lx+18, ly+lh, low, labelSize-1, th.Text, AlignStart)
	return nil
}

// drawMapLabels writes each host's name and value beside its marker, to
// the right or else to the left, where it covers no other label or
// marker; in a crowd, the hosts furthest from the median value are
// labelled first and the labels that do not fit are left out. It returns
// taken with the labels' boxes added.
func (f *Figure) drawMapLabels(c canvas, r rect, proj geo.Projection, radius float64, taken []rect) []rect {
	m, th := f.Map, f.Theme
	vs := make([]float64, len(m.Hosts))
	for i, h := range m.Hosts {
		vs[i] = h.Value
	}
	median := medianOf(vs)
	order := make([]int, len(m.Hosts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return math.Abs(m.Hosts[order[a]].Value-median) > math.Abs(m.Hosts[order[b]].Value-median)
	})
	for _, i := range order {
		h := m.Hosts[i]
		x, y := proj.Project(h.At)
		value := formatValue(h.Value, m.Unit)
		w := math.Max(textWidth(h.Label, labelSize), textWidth(value, labelSize-1))
		own := rect{x - radius - 1, y - radius - 1, 2*radius + 2, 2*radius + 2}
		for _, side := range []float64{1, -1} {
			lx := x + side*(radius+3)
			box := rect{lx, y - 4 - labelSize, w, labelSize + 15}
			align := AlignStart
			if side < 0 {
				box.x, align = lx-w, AlignEnd
			}
			if box.x < r.x || box.x+box.w > r.x+r.w || box.y < r.y || box.y+box.h > r.y+r.h || hits(box, taken, own) {
				continue
			}
			c.text(lx, y-4, h.Label, labelSize, th.Text, align)
			c.text(lx, y+9, value, labelSize-1, th.Muted, align)
			taken = append(taken, box)
			break
		}
	}
	return taken
}

// hits says whether box overlaps any of taken but self.
func hits(box rect, taken []rect, self rect) bool {
	for _, t := range taken {
		if t != self && box.overlaps(t) {
			return true
		}
	}
	return false
}

// drawScaleBar puts the scale bar in the first place inside the frame
// where it covers no marker or label: a corner (bottom left, bottom right,
// top left, top right) or the middle of the bottom or top edge, at a
// quarter of the frame's width, else an eighth, else a sixteenth. A map
// too crowded for any of them has none: the graticule still gives its
// scale.
func (f *Figure) drawScaleBar(c canvas, proj geo.Projection, frame rect, taken []rect) {
	for _, share := range []float64{4, 8, 16} {
		km, px := proj.ScaleBar(frame.w / share)
		label := distanceLabel(km)
		w := math.Max(px, textWidth(label, labelSize-1))
		h := labelSize + 8.0 // the label over the bar
		left, right, middle := frame.x+10, frame.x+frame.w-10-w, frame.x+(frame.w-w)/2
		bottom, top := frame.y+frame.h-22, frame.y+10+h
		for _, at := range []Point{{left, bottom}, {right, bottom}, {left, top}, {right, top}, {middle, bottom}, {middle, top}} {
			box := rect{at.X - 3, at.Y - h, w + 6, h + 6}
			if box.x < frame.x || box.x+box.w > frame.x+frame.w || hits(box, taken, rect{}) {
				continue
			}
			c.rect(at.X, at.Y, px, 3, f.Theme.Text)
			c.text(at.X, at.Y-4, label, labelSize-1, f.Theme.Text, AlignStart)
			return
		}
	}
}

// distanceLabel writes a round distance: 2 km, 500 m.
func distanceLabel(km float64) string {
	if km < 1 {
		return strconv.FormatFloat(km*1000, 'f', -1, 64) + " m"
	}
	return strconv.FormatFloat(km, 'f', -1, 64) + " km"
}
