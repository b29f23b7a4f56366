package chart

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/chart/geo"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/schema"
)

var noon = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func figure(t *testing.T) *Figure {
	t.Helper()
	colours := []color.RGBA{rgb(0xcc3300), rgb(0x2266aa), rgb(0x33aa44)}
	p := Panel{Title: "Temperature", Unit: "degC"}
	for i, name := range []string{"Kitchen", "Attic <1>", "Garden & shed"} {
		s := Series{Host: fmt.Sprintf("h%d", i), Label: name, Colour: colours[i]}
		for m := 0; m < 24*60; m += 10 {
			s.Points = append(s.Points, XY{noon.Add(time.Duration(m-24*60) * time.Minute), 15 + float64(i*3) + float64(m%120)/30})
		}
		p.Series = append(p.Series, s)
	}
	return &Figure{Panels: []Panel{p}, Width: 900, Height: 400, From: noon.Add(-24 * time.Hour), To: noon, Location: time.UTC, Theme: Light}
}

// TestSVGLinesAndLegend: the SVG is well-formed XML with one line (an
// unfilled path) per host in the host's colour and the host's name in
// the legend, escaped.
func TestSVGLinesAndLegend(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSVG(&buf, figure(t)); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&buf)
	lines := map[string]int{}
	var texts []string
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			attr := map[string]string{}
			for _, a := range el.Attr {
				attr[a.Name.Local] = a.Value
			}
			if el.Name.Local == "path" && attr["fill"] == "none" && strings.Count(attr["d"], "L") > 100 {
				lines[attr["stroke"]]++
			}
			inText = el.Name.Local == "text"
		case xml.CharData:
			if inText {
				texts = append(texts, string(el))
			}
		case xml.EndElement:
			inText = false
		}
	}
	for _, c := range []string{"#cc3300", "#2266aa", "#33aa44"} {
		if lines[c] != 1 {
			t.Errorf("lines in %s: %d, want 1 (all: %v)", c, lines[c], lines)
		}
	}
	joined := strings.Join(texts, "|")
	for _, want := range []string{"Kitchen", "Attic <1>", "Garden & shed", "Temperature", "20 °C", "Dec 1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no text %q in %s", want, joined)
		}
	}
}

// TestPNGColours: the PNG decodes, has the asked size, and each host's
// colour covers a line's worth of pixels.
func TestPNGColours(t *testing.T) {
	var buf bytes.Buffer
	if err := WritePNG(&buf, figure(t)); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 900 || b.Dy() != 400 {
		t.Fatalf("size %v", b)
	}
	count := map[color.RGBA]int{}
	for y := 0; y < 400; y++ {
		for x := 0; x < 900; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			count[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 255}]++
		}
	}
	for _, c := range []color.RGBA{rgb(0xcc3300), rgb(0x2266aa), rgb(0x33aa44)} {
		if count[c] < 500 {
			t.Errorf("colour %s covers %d pixels", hex(c), count[c])
		}
	}
}

func TestTimeTicks(t *testing.T) {
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Skip("no time zone data")
	}
	for _, tc := range []struct {
		name     string
		from, to time.Time
		loc      *time.Location
		width    float64
		want     string // the first labels
	}{
		{"a day in hours, local", noon.Add(-24 * time.Hour), noon, ams, 900, "Nov 30 15:00:00|Nov 30 18:00:00|Nov 30 21:00:00|Dec 1 00:00:00"},
		{"an hour", noon.Add(-time.Hour), noon, time.UTC, 900, "Dec 1 11:00:00|Dec 1 11:10:00|Dec 1 11:20:00"},
		{"a week in days", noon.Add(-7 * 24 * time.Hour), noon, ams, 900, "Nov 25 00:00:00|Nov 26 00:00:00|Nov 27 00:00:00"},
		{"a week, narrow", noon.Add(-7 * 24 * time.Hour), noon, time.UTC, 200, "Nov 30 00:00:00"},
		{"a quarter in fortnights from Mondays", noon.AddDate(0, -3, 0), noon, time.UTC, 900, "Sep 14 00:00:00|Sep 28 00:00:00"},
		{"a year in months", noon.AddDate(-1, 0, 0), noon, time.UTC, 900, "Jan 1 00:00:00|Mar 1 00:00:00|May 1 00:00:00"},
		{"minutes", noon.Add(-5 * time.Minute), noon, time.UTC, 900, "Dec 1 11:55:00|Dec 1 11:55:30|Dec 1 11:56:00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ticks := timeTicks(tc.from, tc.to, tc.loc, tc.width, 90)
			var got []string
			for _, tk := range ticks {
				if tk.t.Before(tc.from) || tk.t.After(tc.to) {
					t.Errorf("tick %s outside the range", tk.t)
				}
				got = append(got, tk.t.In(tc.loc).Format("Jan 2 15:04:05"))
			}
			if len(ticks) == 0 || len(ticks) > int(tc.width/90)+1 {
				t.Fatalf("%d ticks: %v", len(ticks), got)
			}
			if !strings.HasPrefix(strings.Join(got, "|"), tc.want) {
				t.Errorf("ticks %v, want them to start %s", got, tc.want)
			}
		})
	}
	// Across the end of summer time days stay on local midnights.
	from := time.Date(2026, 10, 22, 0, 0, 0, 0, ams)
	for _, tk := range timeTicks(from, from.AddDate(0, 0, 8), ams, 900, 90) {
		if l := tk.t.In(ams); l.Hour() != 0 || l.Minute() != 0 {
			t.Errorf("day tick at %s", l)
		}
	}
}

func TestStyles(t *testing.T) {
	hosts := []store.Host{{Name: "c"}, {Name: "a", HostMeta: store.HostMeta{Display: "Attic", Colour: Hex(Palette[1])}}, {Name: "b"}, {Name: "d", HostMeta: store.HostMeta{Colour: "#cc3300"}}}
	st := Styles(hosts)
	if st["a"].Label != "Attic" || st["a"].Colour != Palette[1] || st["b"].Label != "b" {
		t.Errorf("styles %+v", st)
	}
	if st["b"].Colour != Palette[0] || st["c"].Colour != Palette[2] || st["d"].Colour != rgb(0xcc3300) {
		t.Errorf("palette colours: b %s c %s d %s; a colour a host took is skipped", Hex(st["b"].Colour), Hex(st["c"].Colour), Hex(st["d"].Colour))
	}
}

func TestRunsSplitAtGaps(t *testing.T) {
	var pts []XY
	for i := 0; i < 10; i++ {
		pts = append(pts, XY{noon.Add(time.Duration(i) * time.Minute), 1})
	}
	for i := 0; i < 5; i++ {
		pts = append(pts, XY{noon.Add(time.Hour + time.Duration(i)*time.Minute), 1})
	}
	if r := runs(pts); len(r) != 2 || len(r[0]) != 10 || len(r[1]) != 5 {
		t.Errorf("runs: %d (%v)", len(r), r)
	}
}

type local struct{ store.Store }

func (l local) Query(q store.Query, spec query.Spec, fn func(*schema.Reading) error) error {
	return query.Execute(l.Store, q, spec, fn)
}

// TestBuild reads a real store: a panel per sensor with a series per
// host in the host's style, downsampled to about the points asked, daily
// totals as bars, and the map with only the hosts that have a location.
func TestBuild(t *testing.T) {
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var b store.Batch
	for _, h := range []string{"a", "b", "c"} {
		for m := 0; m < 7*24*60; m += 5 {
			ts := noon.Add(time.Duration(m-7*24*60) * time.Minute)
			b.Readings = append(b.Readings,
				schema.Reading{Host: h, Sensor: "temperature", Time: ts, Value: schema.Quantity{Magnitude: 20, Unit: "degC"}.Raw()},
				schema.Reading{Host: h, Sensor: "energy", Time: ts, Value: json.RawMessage(fmt.Sprint(m))})
		}
	}
	if _, err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	_ = st.SetHostMeta("a", store.HostMeta{Display: "Attic", Colour: "#cc3300", Location: &store.Location{Lat: 52.37, Lon: 4.89}})
	_ = st.SetHostMeta("b", store.HostMeta{Location: &store.Location{Lat: 52.38, Lon: 4.9}})
	req := Request{Sensors: []string{"temperature", "energy"}, Since: noon.Add(-7 * 24 * time.Hour), Until: noon, Points: 500, Map: true, Location: time.UTC}
	fig, err := Build(local{st}, req, noon)
	if err != nil {
		t.Fatal(err)
	}
	if len(fig.Panels) != 2 || fig.Panels[0].Title != "Temperature" || fig.Panels[0].Unit != "degC" {
		t.Fatalf("panels %+v", fig.Panels)
	}
	p := fig.Panels[0]
	if len(p.Series) != 3 || p.Series[0].Label != "Attic" || p.Series[0].Colour != rgb(0xcc3300) {
		t.Errorf("series %v %v", len(p.Series), p.Series[0].Label)
	}
	if n := len(p.Series[1].Points); n < 300 || n > 600 {
		t.Errorf("a week of 5-minute readings (2016) came as %d points, asked about 500 (in windows of whole summary periods)", n)
	}
	if fig.Map == nil || len(fig.Map.Hosts) != 2 {
		t.Fatalf("map %+v", fig.Map)
	}
	x, y := geo.Fit(geo.Bounds([]geo.LatLon{fig.Map.Hosts[0].At, fig.Map.Hosts[1].At}, 0.02), 0, 0, 100, 100).Project(fig.Map.Hosts[1].At)
	if !(x > 50 && y < 50) {
		t.Errorf("b, north-east of a, drawn at %.0f,%.0f", x, y)
	}
	req.Clean, req.Sensors, req.Map = "daily_kwh", []string{"energy"}, false
	fig, err = Build(local{st}, req, noon)
	if err != nil {
		t.Fatal(err)
	}
	if p := fig.Panels[0]; !p.Bars || p.Unit != "kWh" || len(p.Series[0].Points) != 8 {
		t.Errorf("daily totals: bars %v unit %q, %d days", p.Bars, p.Unit, len(p.Series[0].Points))
	}
	for _, format := range []string{"png", "svg"} {
		if err := Write(io.Discard, fig, format); err != nil {
			t.Error(err)
		}
	}
	if _, err := Build(local{st}, Request{Sensors: []string{"temperature"}, Since: noon, Until: noon}, noon); err == nil {
		t.Error("an empty range drew")
	}
}
