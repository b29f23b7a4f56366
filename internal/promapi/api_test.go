package promapi

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/schema"
)

// t0 is aligned to the summary period, as a device's clock-aligned ticks are.
var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fixture is two hours of readings every 10 s from hosts a and b: a
// temperature (a quantity in degC) that differs every tick, an energy
// counter (Wh) rising 2 Wh a tick on a and 5 on b, a boolean, a text
// value and failed readings, which are not samples.
type fixture struct {
	temps map[string][]float64 // by host, one per tick
	ticks int
}

func temperature(host string, i int) float64 {
	base := 20.0
	if host == "b" {
		base = 5
	}
	return base + float64(i%37)/4 - float64(i%5)
}

func newFixture(t *testing.T) (*httptest.Server, store.Store, fixture) {
	t.Helper()
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := fixture{temps: map[string][]float64{}, ticks: 720}
	var b store.Batch
	for _, host := range []string{"a", "b"} {
		slope := 2.0
		if host == "b" {
			slope = 5
		}
		for i := 0; i < f.ticks; i++ {
			ts := t0.Add(time.Duration(i) * 10 * time.Second)
			v := temperature(host, i)
			f.temps[host] = append(f.temps[host], v)
			b.Readings = append(b.Readings,
				schema.Reading{Host: host, Sensor: "temperature", Title: "Ambient Temperature", Time: ts, Value: schema.Quantity{Magnitude: v, Unit: "degC"}.Raw()},
				schema.Reading{Host: host, Sensor: "energy", Time: ts, Value: schema.Quantity{Magnitude: 1000 + slope*float64(i), Unit: "Wh"}.Raw()},
				schema.Reading{Host: host, Sensor: "ac_connected", Time: ts, Value: json.RawMessage(strconv.FormatBool(i%2 == 0))},
				schema.Reading{Host: host, Sensor: "version", Time: ts, Value: json.RawMessage(`"0.3.0"`)},
			)
			if i%100 == 7 {
				b.Readings = append(b.Readings, schema.Reading{Host: host, Sensor: "humidity", Time: ts,
					Error: &schema.SampleError{Kind: schema.Intermittent, Message: "checksum"}})
			} else {
				b.Readings = append(b.Readings, schema.Reading{Host: host, Sensor: "humidity", Time: ts, Value: json.RawMessage("45.5")})
			}
		}
	}
	if _, err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	api := New(st, Options{Version: "test", Now: func() time.Time { return t0.Add(2 * time.Hour) }})
	t.Cleanup(func() { api.Close() })
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv, st, f
}

type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Infos     []string        `json:"infos"`
	Data      json.RawMessage `json:"data"`
}

type queryData struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
		Values [][2]any          `json:"values"`
	} `json:"result"`
}

func call(t *testing.T, srv *httptest.Server, method, path string, form url.Values) (int, promResponse) {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = http.PostForm(srv.URL+path, form)
	} else {
		resp, err = http.Get(srv.URL + path + "?" + form.Encode())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr promResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, pr
}

func value(t *testing.T, p [2]any) (time.Time, float64) {
	t.Helper()
	sec, ok := p[0].(float64)
	s, ok2 := p[1].(string)
	if !ok || !ok2 {
		t.Fatalf("sample %v is not [time, \"value\"]", p)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.UnixMilli(int64(math.Round(sec * 1000))).UTC(), v
}

// window is the readings of host's temperature in (at-d, at], Prometheus'
// left-open range.
func (f fixture) window(host string, at time.Time, d time.Duration) []float64 {
	var out []float64
	for i, v := range f.temps[host] {
		ts := t0.Add(time.Duration(i) * 10 * time.Second)
		if ts.After(at.Add(-d)) && !ts.After(at) {
			out = append(out, v)
		}
	}
	return out
}

func mean(vs []float64) float64 {
	s := 0.0
	for _, v := range vs {
		s += v
	}
	return s / float64(len(vs))
}

// TestFunctionsByHand compares what the Prometheus engine computes over
// the store with the same figures computed here from the readings.
func TestFunctionsByHand(t *testing.T) {
	srv, _, f := newFixture(t)
	at := t0.Add(47*time.Minute + 30*time.Second)
	tests := []struct {
		query string
		want  map[string]float64 // by host ("" for a result without one)
	}{
		{"temperature", map[string]float64{"a": f.window("a", at, 10*time.Second)[0], "b": f.window("b", at, 10*time.Second)[0]}},
		{"avg_over_time(temperature[5m])", map[string]float64{"a": mean(f.window("a", at, 5*time.Minute)), "b": mean(f.window("b", at, 5*time.Minute))}},
		{"max_over_time(temperature[10m])", map[string]float64{"a": slices.Max(f.window("a", at, 10*time.Minute)), "b": slices.Max(f.window("b", at, 10*time.Minute))}},
		{"min_over_time(temperature{host=\"b\"}[90s])", map[string]float64{"b": slices.Min(f.window("b", at, 90*time.Second))}},
		// A counter rising linearly: rate is its slope per second, 2 Wh
		// and 5 Wh every 10 s.
		{"sum by (host) (rate(energy[5m]))", map[string]float64{"a": 0.2, "b": 0.5}},
		{"sum(rate(energy[5m]))", map[string]float64{"": 0.7}},
		{"count_over_time(temperature{host=\"a\"}[1m])", map[string]float64{"a": 6}},
		// Booleans are 0 and 1; tick 285 (at) is odd, so false.
		{"ac_connected{host=\"a\"}", map[string]float64{"a": 0}},
		{"ac_connected{host=\"a\"} offset 10s", map[string]float64{"a": 1}},
		{"sum_over_time(ac_connected{host=\"a\"}[100s])", map[string]float64{"a": 5}},
		// Failed readings are no samples: 45.5 every minute around them.
		{"avg_over_time(humidity{host=\"a\"}[2h])", map[string]float64{"a": 45.5}},
		// Text is no sample at all.
		{"version", map[string]float64{}},
		{"1+1", map[string]float64{"": 2}},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			code, pr := call(t, srv, http.MethodPost, "/prometheus/api/v1/query", url.Values{"query": {tc.query}, "time": {strconv.FormatInt(at.Unix(), 10)}})
			if code != 200 || pr.Status != "success" {
				t.Fatalf("%d %+v", code, pr)
			}
			var scalar struct {
				ResultType string `json:"resultType"`
				Result     [2]any `json:"result"`
			}
			if json.Unmarshal(pr.Data, &scalar) == nil && scalar.ResultType == "scalar" {
				if _, v := value(t, scalar.Result); v != tc.want[""] {
					t.Errorf("got %v, want %v", v, tc.want[""])
				}
				return
			}
			var d queryData
			if err := json.Unmarshal(pr.Data, &d); err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, r := range d.Result {
				ts, v := value(t, r.Value)
				if !ts.Equal(at) {
					t.Errorf("sample at %s, want %s", ts, at)
				}
				got[r.Metric["host"]] = v
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for h, w := range tc.want {
				if g, ok := got[h]; !ok || math.Abs(g-w) > 1e-9 {
					t.Errorf("host %q: got %v, want %v", h, g, w)
				}
			}
		})
	}
}

// TestRangeQueryLabels checks a range query's steps against the readings
// and the labels of the series it gives.
func TestRangeQueryLabels(t *testing.T) {
	srv, _, f := newFixture(t)
	start, end := t0.Add(10*time.Minute), t0.Add(20*time.Minute)
	code, pr := call(t, srv, http.MethodGet, "/prometheus/api/v1/query_range", url.Values{"query": {`temperature{host="a"}`},
		"start": {start.Format(time.RFC3339)}, "end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"30s"}})
	if code != 200 {
		t.Fatalf("%d %+v", code, pr)
	}
	var d queryData
	if err := json.Unmarshal(pr.Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.ResultType != "matrix" || len(d.Result) != 1 {
		t.Fatalf("%s with %d series", d.ResultType, len(d.Result))
	}
	want := map[string]string{"__name__": "temperature", "host": "a", "unit": "degC"}
	if fmt.Sprint(d.Result[0].Metric) != fmt.Sprint(want) {
		t.Errorf("labels %v, want %v", d.Result[0].Metric, want)
	}
	if len(d.Result[0].Values) != 21 {
		t.Fatalf("%d steps, want 21", len(d.Result[0].Values))
	}
	for _, p := range d.Result[0].Values {
		ts, v := value(t, p)
		i := int(ts.Sub(t0) / (10 * time.Second))
		if v != f.temps["a"][i] {
			t.Errorf("%s: %v, want %v", ts, v, f.temps["a"][i])
		}
	}
}

// TestLongRangeReadsSums checks that a plain selector at a step of a
// summary period or more gives each period's mean, and says so.
func TestLongRangeReadsSums(t *testing.T) {
	srv, st, f := newFixture(t)
	if _, ok := st.(store.Summarizer); !ok {
		t.Skip("the engine keeps no sums")
	}
	start, end := t0.Add(15*time.Minute), t0.Add(2*time.Hour)
	code, pr := call(t, srv, http.MethodPost, "/prometheus/api/v1/query_range", url.Values{"query": {`temperature{host="b"}`},
		"start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"15m"}})
	if code != 200 {
		t.Fatalf("%d %+v", code, pr)
	}
	if len(pr.Infos) == 0 || !strings.Contains(pr.Infos[0], "mean") {
		t.Errorf("no info that the steps are means: %q", pr.Infos)
	}
	var d queryData
	if err := json.Unmarshal(pr.Data, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Result) != 1 || len(d.Result[0].Values) != 8 {
		t.Fatalf("%+v", d.Result)
	}
	for _, p := range d.Result[0].Values {
		ts, v := value(t, p)
		// The mean of [ts-15m, ts): the readings of (ts-15m-10s, ts-10s].
		want := mean(f.window("b", ts.Add(-10*time.Second), 15*time.Minute))
		if math.Abs(v-want) > 1e-9 {
			t.Errorf("%s: %v, want the period's mean %v", ts, v, want)
		}
	}
}

// TestLabelsSeriesMetadata checks the label browser's calls.
func TestLabelsSeriesMetadata(t *testing.T) {
	srv, _, _ := newFixture(t)
	check := func(path string, form url.Values, want string) {
		t.Helper()
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			code, pr := call(t, srv, m, path, form)
			if code != 200 || pr.Status != "success" {
				t.Errorf("%s %s: %d %+v", m, path, code, pr)
				continue
			}
			if got := string(pr.Data); got != want {
				t.Errorf("%s %s %v:\n got %s\nwant %s", m, path, form, got, want)
			}
		}
	}
	check("/prometheus/api/v1/labels", nil, `["__name__","host","unit"]`)
	check("/prometheus/api/v1/labels", url.Values{"match[]": {"humidity"}}, `["__name__","host"]`)
	check("/prometheus/api/v1/label/__name__/values", nil, `["ac_connected","energy","humidity","temperature","version"]`)
	check("/prometheus/api/v1/label/host/values", url.Values{"match[]": {`energy{host="b"}`}}, `["b"]`)
	check("/prometheus/api/v1/label/unit/values", nil, `["Wh","degC"]`)
	check("/prometheus/api/v1/series", url.Values{"match[]": {`{__name__=~"temp.*|energy", host="a"}`}},
		`[{"__name__":"energy","host":"a","unit":"Wh"},{"__name__":"temperature","host":"a","unit":"degC"}]`)
	check("/prometheus/api/v1/series", url.Values{"match[]": {`temperature`}, "start": {strconv.FormatInt(t0.Add(3*time.Hour).Unix(), 10)}}, `[]`)
	check("/prometheus/api/v1/metadata", url.Values{"metric": {"temperature"}}, `{"temperature":[{"type":"gauge","help":"Ambient Temperature","unit":""}]}`)
}

// TestErrors checks Prometheus' error shape for what clients get wrong.
func TestErrors(t *testing.T) {
	srv, _, _ := newFixture(t)
	tests := []struct {
		path string
		form url.Values
		code int
		typ  string
	}{
		{"/prometheus/api/v1/query", url.Values{"query": {"sum(("}}, 400, "bad_data"},
		{"/prometheus/api/v1/query", url.Values{"query": {"1"}, "time": {"yesterday"}}, 400, "bad_data"},
		{"/prometheus/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {"100"}}, 400, "bad_data"},
		{"/prometheus/api/v1/query_range", url.Values{"query": {"1"}, "start": {"100"}, "end": {"0"}, "step": {"1"}}, 400, "bad_data"},
		{"/prometheus/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {"100000"}, "step": {"1"}}, 400, "bad_data"},
		{"/prometheus/api/v1/series", nil, 400, "bad_data"},
		{"/prometheus/api/v1/series", url.Values{"match[]": {"{"}}, 400, "bad_data"},
		{"/prometheus/api/v1/nope", nil, 404, "not_found"},
	}
	for _, tc := range tests {
		code, pr := call(t, srv, http.MethodGet, tc.path, tc.form)
		if code != tc.code || pr.Status != "error" || pr.ErrorType != tc.typ || pr.Error == "" {
			t.Errorf("%s %v: %d %+v, want %d %s", tc.path, tc.form, code, pr, tc.code, tc.typ)
		}
	}
}

// TestSampleBound checks that a query loading more samples than its
// bound fails with a clear error instead of taking the memory.
func TestSampleBound(t *testing.T) {
	_, st, _ := newFixture(t)
	api := New(st, Options{MaxSamples: 1000})
	defer api.Close()
	srv := httptest.NewServer(api)
	defer srv.Close()
	code, pr := call(t, srv, http.MethodGet, "/prometheus/api/v1/query", url.Values{"query": {"max_over_time(temperature[3h])"},
		"time": {strconv.FormatInt(t0.Add(2*time.Hour).Unix(), 10)}})
	if code != 422 || !strings.Contains(pr.Error, "more than 1000 samples") {
		t.Errorf("%d %+v", code, pr)
	}
	// Listing labels and series reads no samples to speak of: the same
	// bound leaves them whole.
	for _, path := range []string{"/prometheus/api/v1/labels", "/prometheus/api/v1/label/unit/values"} {
		if code, pr := call(t, srv, http.MethodGet, path, nil); code != 200 || pr.Status != "success" {
			t.Errorf("%s: %d %+v", path, code, pr)
		}
	}
	if code, pr := call(t, srv, http.MethodGet, "/prometheus/api/v1/series", url.Values{"match[]": {`{__name__=~".+"}`}}); code != 200 || strings.Count(string(pr.Data), "__name__") != 8 {
		t.Errorf("series: %d %s", code, pr.Data)
	}
}

// TestWriteMatrixAsPrometheus checks the hand-written matrix encoding
// against the one Prometheus' own types marshal to.
func TestWriteMatrixAsPrometheus(t *testing.T) {
	m := promql.Matrix{
		{Metric: labels.FromStrings("__name__", "temperature", "host", "a", "unit", "degC"),
			Floats: []promql.FPoint{{T: 1795435800000, F: 21.5}, {T: 1795435800001, F: -0.000001}, {T: 1795435800120, F: 1e21},
				{T: 1795435800999, F: math.NaN()}, {T: -1500, F: math.Inf(1)}, {T: 0, F: math.Inf(-1)}, {T: 10, F: 3}}},
		{Metric: labels.FromStrings("host", "b \"quoted\""), Floats: []promql.FPoint{{T: 5, F: 0}}},
	}
	rec := httptest.NewRecorder()
	writeMatrix(rec, m, []string{"w"}, nil)
	want, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got := rec.Body.String()
	prefix := `{"status":"success","data":{"resultType":"matrix","result":`
	if !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, `},"warnings":["w"]}`+"\n") {
		t.Fatalf("envelope: %s", got)
	}
	if body := strings.TrimSuffix(strings.TrimPrefix(got, prefix), `},"warnings":["w"]}`+"\n"); body != string(want) {
		t.Errorf("got  %s\nwant %s", body, want)
	}
}
