package chart

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/chart/geo"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/schema"
)

// recorder is a canvas that keeps what is drawn on it, for tests of where
// things go.
type recorder struct {
	circles []drawnCircle
	rects   []drawnRect
	texts   []drawnText
	lines   []color.RGBA
}

type drawnCircle struct {
	x, y, r      float64
	fill, stroke color.RGBA
}

type drawnRect struct {
	rect
	fill color.RGBA
}

type drawnText struct {
	x, y float64
	s    string
}

func (c *recorder) polyline(pts []Point, col color.RGBA, width float64) {
	c.lines = append(c.lines, col)
}
func (c *recorder) polygons(rings [][]Point, fill, stroke color.RGBA, width float64) {}
func (c *recorder) rect(x, y, w, h float64, fill color.RGBA) {
	c.rects = append(c.rects, drawnRect{rect{x, y, w, h}, fill})
}
func (c *recorder) circle(x, y, r float64, fill, stroke color.RGBA) {
	c.circles = append(c.circles, drawnCircle{x, y, r, fill, stroke})
}
func (c *recorder) text(x, y float64, s string, size float64, col color.RGBA, align Align) {
	c.texts = append(c.texts, drawnText{x, y, s})
}

var _ canvas = (*recorder)(nil)

func (c *recorder) count(s string) int {
	n := 0
	for _, t := range c.texts {
		if t.s == s {
			n++
		}
	}
	return n
}

// markers are the hosts' circles on the map (a ring has no fill).
func (c *recorder) markers() []drawnCircle {
	var out []drawnCircle
	for _, ci := range c.circles {
		if ci.fill.A != 0 && ci.r > 2 {
			out = append(out, ci)
		}
	}
	return out
}

// scaleBar is the map's scale bar: the one bar 3 pixels high.
func (c *recorder) scaleBar() (rect, bool) {
	for _, r := range c.rects {
		if r.h == 3 {
			return r.rect, true
		}
	}
	return rect{}, false
}

// landFrame is the map's frame below country scale (the land colour).
func (c *recorder) landFrame(t *testing.T, th Theme) rect {
	t.Helper()
	for _, r := range c.rects {
		if r.fill == th.Land {
			return r.rect
		}
	}
	t.Fatal("no map frame")
	return rect{}
}

// cityHosts are the three located hosts of the picture; the
// Attic is in the south-west corner, where the scale bar used to be.
var cityHosts = []MapHost{
	{Label: "Kitchen", At: geo.LatLon{Lat: 52.3731, Lon: 4.8922}, Value: 23.1, Colour: rgb(0xcc3300)},
	{Label: "Attic", At: geo.LatLon{Lat: 52.3600, Lon: 4.8700}, Value: 19.2, Colour: rgb(0x8e5bb5)},
	{Label: "Garden", At: geo.LatLon{Lat: 52.3826, Lon: 4.9100}, Value: 11.3, Colour: rgb(0x3d9b47)},
}

func withMap(t *testing.T, panels int, hosts []MapHost, w, h int) *Figure {
	f := figure(t)
	for len(f.Panels) < panels {
		f.Panels = append(f.Panels, f.Panels[0])
	}
	f.Panels = f.Panels[:panels]
	f.Width, f.Height = w, h
	f.Map = &Map{Title: "Temperature, latest", Unit: "degC", Hosts: hosts}
	return f
}

// TestMapLayout: beside panels or below them, the map keeps its aspect
// and gets room: two panels over a city put the map in a column beside
// them rather than a strip below; the scale bar covers no marker, at any
// size.
func TestMapLayout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		panels, w, h int
		beside       bool
	}{
		{"two panels, the CLI's default height", 2, 1200, 545, true},
		{"two panels, the API's default height", 2, 1200, 700, true},
		{"one panel, tall", 1, 1200, 1090, false},
		{"three panels", 3, 1200, 1090, false},
		{"narrow", 2, 500, 545, false},
		{"small", 1, 400, 300, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := withMap(t, tc.panels, cityHosts, tc.w, tc.h)
			c := &recorder{}
			if err := f.draw(c); err != nil {
				t.Fatal(err)
			}
			frame := c.landFrame(t, f.Theme)
			if got, want := frame.w/frame.h, f.Map.aspect(); math.Abs(got-want) > 0.02*want {
				t.Errorf("map frame %.0f×%.0f (aspect %.3f), want aspect %.3f", frame.w, frame.h, got, want)
			}
			beside := frame.x > float64(tc.w)/2-20 && frame.y < 0.45*float64(tc.h)
			if beside != tc.beside {
				t.Errorf("map at %.0f,%.0f (%.0f×%.0f): beside %v, want %v", frame.x, frame.y, frame.w, frame.h, beside, tc.beside)
			}
			if tc.beside && frame.w < 0.4*float64(tc.w) {
				t.Errorf("map beside the panels is %.0f of %d wide", frame.w, tc.w)
			}
			bar, ok := c.scaleBar()
			if !ok {
				if tc.w >= 1000 {
					t.Error("no scale bar")
				}
				return
			}
			labelW := 0.0
			for _, tx := range c.texts {
				if tx.x == bar.x && tx.y == bar.y-4 {
					labelW = textWidth(tx.s, labelSize-1)
				}
			}
			if labelW == 0 {
				t.Fatal("the scale bar has no label")
			}
			barBox := rect{bar.x, bar.y - labelSize, math.Max(bar.w, labelW), labelSize + 3}
			markers := c.markers()
			if len(markers) != len(cityHosts) {
				t.Fatalf("%d markers", len(markers))
			}
			for _, m := range markers {
				if barBox.overlaps(rect{m.x - m.r, m.y - m.r, 2 * m.r, 2 * m.r}) {
					t.Errorf("the scale bar %+v covers the marker at %.0f,%.0f", barBox, m.x, m.y)
				}
			}
		})
	}
}

// TestMapOneHost: a lone host is framed a few kilometres around, with a
// ring of a round distance, and its value once in the colour scale, not
// a ramp from a value to itself.
func TestMapOneHost(t *testing.T) {
	t.Parallel()
	f := withMap(t, 0, cityHosts[:1], 800, 600)
	f.Map.Unit = "percent"
	f.Map.Hosts[0].Value = 27
	c := &recorder{}
	if err := f.draw(c); err != nil {
		t.Fatal(err)
	}
	b := f.Map.box()
	if km := (b.MaxLat - b.MinLat) * 111.32; math.Abs(km-2*singleHostKm) > 0.01 {
		t.Errorf("frame %.2f km high, want %d", km, 2*singleHostKm)
	}
	frame := c.landFrame(t, f.Theme)
	if m := c.markers(); len(m) != 1 || math.Abs(m[0].x-(frame.x+frame.w/2)) > 1 || math.Abs(m[0].y-(frame.y+frame.h/2)) > 1 {
		t.Errorf("the host at %+v, the frame %+v", m, frame)
	}
	rings := 0
	for _, ci := range c.circles {
		if ci.fill.A == 0 && ci.r > 20 {
			rings++
		}
	}
	if rings != 1 || c.count("1 km") != 1 {
		t.Errorf("%d rings, %d labels of 1 km; texts %v", rings, c.count("1 km"), c.texts)
	}
	if n := c.count("27.0%"); n != 2 {
		t.Errorf("27.0%% written %d times, want twice (the host's label and the scale)", n)
	}
	if c.count("Kitchen") != 1 {
		t.Error("no label")
	}
}

// TestManyHosts: past twelve hosts a panel colours the ten furthest from
// the median and greys the rest, and says how many; every host still has
// its own colour.
func TestManyHosts(t *testing.T) {
	t.Parallel()
	var hosts []store.Host
	p := Panel{Title: "Temperature", Unit: "degC"}
	for i := range 100 {
		hosts = append(hosts, store.Host{Name: fmt.Sprintf("h%03d", i)})
	}
	styles := Styles(hosts)
	seen := map[color.RGBA]string{}
	for _, h := range hosts {
		st := styles[h.Name]
		if other, dup := seen[st.Colour]; dup {
			t.Errorf("%s and %s share %s", h.Name, other, hex(st.Colour))
		}
		seen[st.Colour] = h.Name
		s := Series{Host: h.Name, Label: st.Label, Colour: st.Colour}
		v := float64(len(p.Series)) // h000 lowest … h099 highest
		s.Points = []XY{{noon.Add(-time.Hour), 50}, {noon, v}}
		p.Series = append(p.Series, s)
	}
	inColour := coloured(p.Series)
	var picked []string
	for i, ok := range inColour {
		if ok {
			picked = append(picked, p.Series[i].Host)
		}
	}
	if got, want := strings.Join(picked, " "), "h000 h001 h002 h003 h004 h095 h096 h097 h098 h099"; got != want {
		t.Errorf("in colour: %s, want %s", got, want)
	}
	f := &Figure{Panels: []Panel{p}, Width: 900, Height: 400, From: noon.Add(-2 * time.Hour), To: noon, Location: time.UTC, Theme: Light}
	c := &recorder{}
	if err := f.draw(c); err != nil {
		t.Fatal(err)
	}
	if c.count("+90 more (grey)") != 1 || c.count("h050") != 0 || c.count("h099") != 1 {
		t.Errorf("legend: %v", c.texts)
	}
	coloredLines := 0
	for _, l := range c.lines {
		if l.A == 255 {
			coloredLines++
		}
	}
	if coloredLines != 10 || len(c.lines) != 100 {
		t.Errorf("%d lines, %d in colour", len(c.lines), coloredLines)
	}
	if few := coloured(p.Series[:12]); strings.Contains(fmt.Sprint(few), "false") {
		t.Errorf("twelve hosts: %v, want all in colour", few)
	}
}

// TestMapInChartUnit: the map's values are in the unit of the chart
// beside it: a ratio as a percentage, a converted unit converted, bytes
// on the binary scale.
func TestMapInChartUnit(t *testing.T) {
	t.Parallel()
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var b store.Batch
	for i, h := range []string{"a", "b"} {
		for m := 0; m < 60; m += 5 {
			ts := noon.Add(time.Duration(m-60) * time.Minute)
			q := func(v float64, unit string) json.RawMessage { return schema.Quantity{Magnitude: v, Unit: unit}.Raw() }
			b.Readings = append(b.Readings,
				schema.Reading{Host: h, Sensor: "cpu_load", Time: ts, Value: q(0.27+0.1*float64(i), "ratio")},
				schema.Reading{Host: h, Sensor: "temperature", Time: ts, Value: q(20+float64(i), "degC")},
				schema.Reading{Host: h, Sensor: "ram_available", Time: ts, Value: q(24.8e9+1e8*float64(i), "B")})
		}
		_ = st.SetHostMeta(h, store.HostMeta{Location: &store.Location{Lat: 52.37 + 0.01*float64(i), Lon: 4.89}})
	}
	if _, err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sensor, unit string
		wantUnit     string
		want         []float64 // a's and b's latest
		texts        []string  // on the map
	}{
		{"cpu_load", "", "percent", []float64{27, 37}, []string{"27.0%", "37.0%"}},
		{"temperature", "degF", "degF", []float64{68, 69.8}, []string{"68.0 °F", "69.8 °F"}},
		{"ram_available", "", "B", []float64{24.8e9, 24.9e9}, []string{"23.1 GiB", "23.2 GiB"}},
	} {
		req := Request{Sensors: []string{tc.sensor}, Unit: tc.unit, Since: noon.Add(-time.Hour), Until: noon, Map: true, Location: time.UTC}
		fig, err := Build(local{st}, req, noon)
		if err != nil {
			t.Fatal(err)
		}
		m := fig.Map
		if m.Unit != tc.wantUnit || fig.Panels[0].Unit != tc.wantUnit || len(m.Hosts) != 2 {
			t.Fatalf("%s: map in %q, chart in %q, %d hosts; want %q", tc.sensor, m.Unit, fig.Panels[0].Unit, len(m.Hosts), tc.wantUnit)
		}
		for i, h := range m.Hosts {
			if math.Abs(h.Value-tc.want[i]) > 1e-6*math.Abs(tc.want[i]) {
				t.Errorf("%s: %s's value %g, want %g", tc.sensor, h.Label, h.Value, tc.want[i])
			}
		}
		c := &recorder{}
		if err := fig.draw(c); err != nil {
			t.Fatal(err)
		}
		for _, want := range tc.texts {
			if c.count(want) == 0 {
				t.Errorf("%s: no %q on the map: %v", tc.sensor, want, c.texts)
			}
		}
	}
}
