package main_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile writes text to a new file in the test's directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestQueryClean: the temperature cleaner over imported readings
// [21, 61, 21] leaves [21, 21], on a file and through a running server.
func TestQueryClean(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "in.ndjson", `{"v":1,"host":"pi","sensor":"temperature","ts":"2026-12-01T12:00:00.000Z","value":{"magnitude":21,"unit":"degC"}}
{"v":1,"host":"pi","sensor":"temperature","ts":"2026-12-01T12:01:00.000Z","value":{"magnitude":61,"unit":"degC"}}
{"v":1,"host":"pi","sensor":"temperature","ts":"2026-12-01T12:02:00.000Z","value":{"magnitude":21,"unit":"degC"}}
`)
	db := filepath.Join(t.TempDir(), "apd.db")
	if r := run(t, nil, "apd", "import", "--db", db, file); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	values := func(out string) []float64 {
		var vs []float64
		for _, row := range ndjsonLines(t, out) {
			vs = append(vs, row["value"].(map[string]any)["magnitude"].(float64))
		}
		return vs
	}
	args := []string{"query", "--sensor", "temperature", "--since", "2026-12-01", "--until", "2026-12-02", "--format", "ndjson"}
	raw := run(t, nil, "apd", append(args, "--db", db)...)
	if got := values(raw.stdout); len(got) != 3 {
		t.Fatalf("without a cleaner: %v (%s)", got, raw.stderr)
	}
	r := run(t, nil, "apd", append(args, "--db", db, "--clean", "temperature")...)
	if got := values(r.stdout); r.code != 0 || len(got) != 2 || got[0] != 21 || got[1] != 21 {
		t.Fatalf("--clean temperature: exit %d, %v, %s", r.code, got, r.stderr)
	}
	bad := run(t, nil, "apd", append(args, "--db", db, "--clean", "nope")...)
	if bad.code != 2 || !strings.Contains(bad.stderr, "temperature") {
		t.Errorf("unknown cleaner: exit %d, %s", bad.code, bad.stderr)
	}

	s := startServe(t)
	s.stop(t)
	if r := run(t, nil, "apd", "import", "--db", filepath.Join(s.data, "apd.db"), file); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	s = startServeIn(t, s.data)
	r = run(t, nil, "apd", append(args, "--server", "http://"+s.http, "--clean", "temperature")...)
	if got := values(r.stdout); r.code != 0 || len(got) != 2 {
		t.Fatalf("--clean temperature through the server: exit %d, %v, %s", r.code, got, r.stderr)
	}
}

// TestHostsSet: names, colours and locations set on a file and through a
// server show in apd hosts, survive export → import into a new file, and
// --unset clears them.
func TestHostsSet(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "in.ndjson", `{"v":1,"host":"pi-kitchen","sensor":"temperature","ts":"2026-12-01T12:00:00.000Z","value":21}
{"v":1,"host":"pi-attic","sensor":"temperature","ts":"2026-12-01T12:00:00.000Z","value":25}
`)
	db := filepath.Join(t.TempDir(), "apd.db")
	if r := run(t, nil, "apd", "import", "--db", db, file); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	set := run(t, nil, "apd", "hosts", "set", "pi-kitchen", "--db", db, "--name", "Kitchen", "--colour", "#CC3300", "--location", "52.37,4.89")
	if set.code != 0 || !strings.Contains(set.stdout, `name "Kitchen", colour #cc3300, location 52.37,4.89`) {
		t.Fatalf("hosts set: exit %d, %s%s", set.code, set.stdout, set.stderr)
	}
	if r := run(t, nil, "apd", "hosts", "set", "pi-kitchen", "--db", db, "--name", "Kitchen ☕"); r.code != 0 {
		t.Fatalf("rename: %s", r.stderr)
	}
	for _, bad := range [][]string{{"--colour", "red"}, {"--location", "95,1"}, {"--location", "52.37"}, {}} {
		if r := run(t, nil, "apd", append([]string{"hosts", "set", "pi-kitchen", "--db", db}, bad...)...); r.code != 2 {
			t.Errorf("hosts set %v: exit %d, %s", bad, r.code, r.stderr)
		}
	}
	type host struct {
		Host     string
		Name     string
		Colour   string
		Location *struct{ Lat, Lon float64 }
	}
	hosts := func(args ...string) map[string]host {
		t.Helper()
		r := run(t, nil, "apd", append([]string{"hosts", "--json"}, args...)...)
		var hs []host
		if err := json.Unmarshal([]byte(r.stdout), &hs); err != nil {
			t.Fatalf("hosts --json: %v: %s%s", err, r.stdout, r.stderr)
		}
		m := map[string]host{}
		for _, h := range hs {
			m[h.Host] = h
		}
		return m
	}
	check := func(where string, m map[string]host) {
		t.Helper()
		k := m["pi-kitchen"]
		if k.Name != "Kitchen ☕" || k.Colour != "#cc3300" || k.Location == nil || k.Location.Lat != 52.37 || k.Location.Lon != 4.89 {
			t.Errorf("%s: pi-kitchen %+v", where, k)
		}
		if a := m["pi-attic"]; a.Name != "" || a.Colour != "" || a.Location != nil {
			t.Errorf("%s: pi-attic %+v", where, a)
		}
	}
	check("file", hosts("--db", db))
	table := run(t, nil, "apd", "hosts", "--db", db)
	if !strings.Contains(table.stdout, "Kitchen ☕") {
		t.Errorf("apd hosts does not show the name:\n%s", table.stdout)
	}

	exp := run(t, nil, "apd", "export", "--db", db)
	copyDB := filepath.Join(t.TempDir(), "copy.db")
	exported := writeFile(t, "export.ndjson", exp.stdout)
	imp := run(t, nil, "apd", "import", "--db", copyDB, exported)
	if imp.code != 0 || !strings.Contains(imp.stderr, "of 1 hosts") {
		t.Fatalf("import: exit %d, %s", imp.code, imp.stderr)
	}
	check("imported", hosts("--db", copyDB))
	if again := run(t, nil, "apd", "export", "--db", copyDB); again.stdout != exp.stdout {
		t.Errorf("export → import → export changed:\n%s\n%s", exp.stdout, again.stdout)
	}

	s := startServe(t)
	s.stop(t)
	if r := run(t, nil, "apd", "import", "--db", filepath.Join(s.data, "apd.db"), exported); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	s = startServeIn(t, s.data)
	srv := "http://" + s.http
	check("server", hosts("--server", srv))
	if r := run(t, nil, "apd", "hosts", "set", "pi-attic", "--server", srv, "--colour", "#0a0"); r.code != 0 {
		t.Fatalf("hosts set through the server: %s", r.stderr)
	}
	if a := hosts("--server", srv)["pi-attic"]; a.Colour != "#0a0" {
		t.Errorf("pi-attic after set: %+v", a)
	}
	if r := run(t, nil, "apd", "hosts", "set", "pi-kitchen", "--server", srv, "--unset"); r.code != 0 {
		t.Fatalf("unset: %s", r.stderr)
	}
	if k := hosts("--server", srv)["pi-kitchen"]; k.Name != "" || k.Colour != "" || k.Location != nil {
		t.Errorf("pi-kitchen after --unset: %+v", k)
	}
}

// svgLines returns the stroke colours of the SVG's data lines (long
// unfilled paths) and its texts.
func svgLines(t *testing.T, svg string) (map[string]int, string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	lines := map[string]int{}
	var texts []string
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			attr := map[string]string{}
			for _, a := range el.Attr {
				attr[a.Name.Local] = a.Value
			}
			if el.Name.Local == "path" && attr["fill"] == "none" && strings.Count(attr["d"], "L") > 50 {
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
	return lines, strings.Join(texts, "|")
}

// pngColours counts the PNG's pixels of each colour.
func pngColours(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	n := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			n[fmt.Sprintf("#%02x%02x%02x", r>>8, g>>8, bl>>8)]++
		}
	}
	return n
}

// TestChartCommand: apd chart writes a PNG and an SVG with a line per host
// in its colour and name (the defaults for a host without), a colour set
// with apd hosts set shows in the next chart, and the HTTP API draws the
// same.
func TestChartCommand(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "apd.db")
	demoDatabase(t, db, 7*24*time.Hour)
	dir := t.TempDir()
	svgPath, pngPath := filepath.Join(dir, "t.svg"), filepath.Join(dir, "t.png")
	for _, out := range []string{svgPath, pngPath} {
		r := run(t, nil, "apd", "chart", "--db", db, "--sensor", "temperature", "--since", "24h", "--out", out, "--width", "1000")
		if r.code != 0 || !strings.Contains(r.stderr, "1 chart, 4 lines") {
			t.Fatalf("apd chart -o %s: exit %d: %s", out, r.code, r.stderr)
		}
	}
	svg, _ := os.ReadFile(svgPath)
	lines, texts := svgLines(t, string(svg))
	for _, h := range demoHosts {
		if h.colour != "" && lines[h.colour] != 1 {
			t.Errorf("%s: %d lines in %s (lines: %v)", h.host, lines[h.colour], h.colour, lines)
		}
		label := h.name
		if label == "" {
			label = h.host
		}
		if !strings.Contains(texts, label) {
			t.Errorf("no legend entry %q in %s", label, texts)
		}
	}
	if len(lines) != 4 {
		t.Errorf("lines %v, want 4 (one per host)", lines)
	}
	colours := pngColours(t, pngPath)
	for _, h := range demoHosts {
		if h.colour != "" && colours[h.colour] < 300 {
			t.Errorf("%s's colour %s covers %d pixels of the PNG", h.host, h.colour, colours[h.colour])
		}
	}

	if r := run(t, nil, "apd", "hosts", "set", "pi-kitchen", "--db", db, "--colour", "#1188ee"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := run(t, nil, "apd", "chart", "--db", db, "--sensor", "temperature", "--out", pngPath); r.code != 0 {
		t.Fatal(r.stderr)
	}
	colours = pngColours(t, pngPath)
	if colours["#1188ee"] < 300 || colours["#cc3300"] > 0 {
		t.Errorf("after hosts set --colour #1188ee: %d pixels of it, %d of the old #cc3300", colours["#1188ee"], colours["#cc3300"])
	}
	if r := run(t, nil, "apd", "hosts", "set", "pi-kitchen", "--db", db, "--colour", "#cc3300"); r.code != 0 {
		t.Fatal(r.stderr)
	}

	// Errors are one line and a usage code.
	for _, bad := range [][]string{{"--out", filepath.Join(dir, "x.gif")}, {"--out", pngPath, "--clean", "nope"}, {"--out", pngPath, "--width", "5"}, {"--out", pngPath, "--tz", "Mars/Base"}} {
		r := run(t, nil, "apd", append([]string{"chart", "--db", db, "--sensor", "temperature"}, bad...)...)
		if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
			t.Errorf("apd chart %v: exit %d, %q", bad, r.code, r.stderr)
		}
	}

	// A GeoJSON overlay is drawn over the map; a bad one is refused.
	overlay := writeFile(t, "park.geojson", `{"type":"Feature","properties":{"name":"park"},"geometry":{"type":"Polygon","coordinates":[[[4.875,52.365],[4.885,52.365],[4.885,52.37],[4.875,52.365]]]}}`)
	mapSVG := filepath.Join(dir, "map.svg")
	if r := run(t, nil, "apd", "chart", "--db", db, "--sensor", "temperature", "--map", "--overlay", overlay, "-o", mapSVG); r.code != 0 {
		t.Fatal(r.stderr)
	}
	withOverlay, _ := os.ReadFile(mapSVG)
	if r := run(t, nil, "apd", "chart", "--db", db, "--sensor", "temperature", "--map", "-o", mapSVG); r.code != 0 || !strings.Contains(r.stderr, "1 chart, 4 lines") {
		t.Fatalf("apd chart --map: exit %d: %s", r.code, r.stderr)
	}
	without, _ := os.ReadFile(mapSVG)
	if n, m := strings.Count(string(withOverlay), "fill-opacity=\"0.157\""), strings.Count(string(without), "fill-opacity=\"0.157\""); n != m+1 {
		t.Errorf("the overlay's polygon: %d translucent shapes with it, %d without", n, m)
	}
	bad := writeFile(t, "bad.geojson", `{"type":"Polygon","coordinates":[[[400,1]]]}`)
	if r := run(t, nil, "apd", "chart", "--db", db, "--sensor", "temperature", "--map", "--overlay", bad, "-o", mapSVG); r.code != 2 || !strings.Contains(r.stderr, "not on Earth") {
		t.Errorf("a bad overlay: exit %d, %s", r.code, r.stderr)
	}

	// Three sensors, the week, and the map (the README's picture is the
	// same command's on apd demo, drawn by TestReadme).
	shots := t.TempDir()
	r := run(t, nil, "apd", "chart", "--db", db, "--sensor", "temperature", "--sensor", "humidity", "--sensor", "cpu_load",
		"--since", "7d", "--map", "--interpolate", "--out", filepath.Join(shots, "chart.png"))
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	t.Logf("apd chart: %s", r.stderr)

	// The same through a running server.
	data := filepath.Dir(db)
	s := startServeIn(t, data)
	resp, err := http.Get("http://" + s.http + "/api/v1/chart.svg?sensor=temperature&since=24h")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "image/svg+xml" {
		t.Fatalf("chart.svg: %s %s: %.200s", resp.Status, ct, body)
	}
	if lines, _ := svgLines(t, string(body)); len(lines) != 4 || lines["#cc3300"] != 1 {
		t.Errorf("chart.svg lines %v", lines)
	}
	resp, err = http.Get("http://" + s.http + "/api/v1/chart.png?sensor=temperature&sensor=humidity&since=24h&map=1&width=800&height=900")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.HasPrefix(body, []byte("\x89PNG")) {
		t.Errorf("chart.png: %s %.200s", resp.Status, body)
	}
	resp, _ = http.Get("http://" + s.http + "/api/v1/chart.png?sensor=temperature&width=99999")
	if resp.StatusCode != 400 {
		t.Errorf("a bad width: %s", resp.Status)
	}
	resp.Body.Close()
}
