package dashboard

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// formatPage serves the dashboard's assets and a blank page to run them
// in (the dashboard's own page would start loading data).
func formatPage(t *testing.T) (*testutil.Browser, string) {
	t.Helper()
	b := testutil.StartBrowser(t, 800, 600)
	mux := http.NewServeMux()
	mux.Handle("/ui/", Handler())
	mux.HandleFunc("/blank", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>format</title>")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b.Open(srv.URL + "/blank")
	return b, srv.URL
}

// jsNumber writes f so that JavaScript's Number() reads the same double.
func jsNumber(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// TestFormatLikeCLI runs format.js, the page's port of schema's
// formatters, in Chromium over a table of values and units and compares
// every string with what the Go formatters (and so the CLI) print.
func TestFormatLikeCLI(t *testing.T) {
	t.Parallel()
	values := []float64{0, math.Copysign(0, -1), 0.25, 0.35, 2.5, 0.5, 1.5, 0.05, 1.005, 21.45, 21.55, -3.25, -0.04,
		0.1 + 0.2, 1.0 / 3, 2.0 / 3, 0.098, 0.27, 99.95, 999.95, 1000, 1023, 1023.5, 1024, 1048575.95, 12345.6789,
		716476416, 24.8e9, 23 * (1 << 30), 1 << 62, 1e15 + 0.3, 1e21, 1.5e-7, 5e-324, 1e300,
		59.4, 59.5, 60, -90, -59.5, 0.4, 39234, 39180, 273906, 86399.5, 9e6, 3e7, 123456.789,
		math.NaN(), math.Inf(1), math.Inf(-1)}
	units := []string{"", "degC", "degF", "K", "percent", "ratio", "B", "W", "Wh", "s", "deg", "V", "hPa", "lx",
		"°C", "celsius", "%", "bytes", "seconds", "furlongs"}

	type fcase struct {
		Fn    string `json:"fn"`
		V     string `json:"v"`
		Unit  string `json:"unit"`
		Want  string `json:"-"`
		Label string `json:"-"`
	}
	var cases []fcase
	add := func(fn string, v float64, unit, want string) {
		cases = append(cases, fcase{Fn: fn, V: jsNumber(v), Unit: unit, Want: want, Label: fmt.Sprintf("%s(%v, %q)", fn, v, unit)})
	}
	// Go turns a float beyond int64's nanoseconds into a Duration in a
	// way of its platform's: such durations are no case.
	duration := func(v float64) bool { return !math.IsNaN(v) && math.Abs(v*1e9) < 1<<62 }
	for _, v := range values {
		for _, u := range units {
			if c, _ := schema.CanonicalUnit(u); c == schema.UnitSecond && !duration(v) {
				continue
			}
			add("formatQuantity", v, u, schema.FormatQuantity(schema.Quantity{Magnitude: v, Unit: u}))
		}
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			add("formatNumber", v, "", schema.FormatValue(json.RawMessage(strconv.FormatFloat(v, 'g', -1, 64))))
			add("formatRatio", v, "", schema.FormatRatio(json.RawMessage(strconv.FormatFloat(v, 'g', -1, 64))))
		}
		add("formatBytes", v, "", schema.FormatBytes(v))
		add("formatCelsius", v, "", schema.FormatCelsius(v))
		if duration(v) {
			add("formatDuration", v, "", schema.FormatDuration(v))
		}
	}

	b, _ := formatPage(t)
	var got []string
	if err := b.Eval(&got, `const cases = arguments[0];
		return import('/ui/format.js').then(m => cases.map(c => {
			try { return m[c.fn](Number(c.v), c.unit); } catch (e) { return 'threw ' + e; }
		}))`, cases); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(cases) {
		t.Fatalf("%d answers to %d cases", len(got), len(cases))
	}
	bad := 0
	for i, c := range cases {
		if got[i] != c.Want {
			if bad++; bad <= 40 {
				t.Errorf("%s: page %q, CLI %q", c.Label, got[i], c.Want)
			}
		}
	}
	t.Logf("%d cases, %d differ", len(cases), bad)
}

// TestTickLabels: an axis's labels are in its unit, distinct, and as
// short as that allows.
func TestTickLabels(t *testing.T) {
	t.Parallel()
	gib := float64(1 << 30)
	cases := []struct {
		name   string
		values []float64
		unit   string
		want   string
	}{
		{"bytes in GiB", []float64{23 * gib, 23.05 * gib, 23.1 * gib}, "B", "23.00 GiB|23.05 GiB|23.10 GiB"},
		{"whole GiB", []float64{0, 8 * gib, 16 * gib}, "B", "0 GiB|8 GiB|16 GiB"},
		{"percent", []float64{10, 12.5, 15}, "%", "10.0%|12.5%|15.0%"},
		{"percent whole", []float64{0, 20, 40}, "%", "0%|20%|40%"},
		{"hours", []float64{0, 3600, 7200, 10800}, "s", "0s|1h|2h|3h"},
		{"days", []float64{86400, 172800, 259200}, "s", "1d|2d|3d"},
		{"mixed", []float64{36000, 39600, 41400}, "s", "10h|11h|11h 30m"},
		{"seconds", []float64{0, 10, 20}, "s", "0 s|10 s|20 s"},
		{"temperature", []float64{20, 20.5, 21}, "°C", "20.0|20.5|21.0"},
		{"around zero", []float64{-0.1, 0, 0.1}, "", "-0.1|0.0|0.1"},
		{"millions", []float64{1e6, 1.5e6, 2e6}, "", "1.0 M|1.5 M|2.0 M"},
		{"large counters", []float64{2.47e10, 2.48e10, 2.49e10}, "", "24.7 G|24.8 G|24.9 G"},
		{"small", []float64{0.001, 0.002, 0.003}, "", "0.001|0.002|0.003"},
	}
	b, _ := formatPage(t)
	for _, tc := range cases {
		var got []string
		if err := b.Eval(&got, `const [vals, unit] = arguments;
			return import('/ui/format.js').then(m => m.tickLabels(vals, unit))`, tc.values, tc.unit); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, "|") != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, strings.Join(got, "|"), tc.want)
		}
	}
}
