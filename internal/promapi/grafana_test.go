package promapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// grafanaRequests are the requests Grafana's Prometheus data source
// (Grafana 10 and 11) sends, as its source builds them:
//   - Save & test: pkg/promlib/healthcheck.go, an instant query 1+1 at
//     time=4, then status/buildinfo (pkg/promlib/heuristics.go reads
//     data.features: none means Prometheus);
//   - panels: pkg/promlib/client/client.go, form POSTs with keys sorted,
//     times as decimal seconds, step as bare seconds;
//   - the metrics browser, builder and autocomplete:
//     packages/grafana-prometheus/src/language_provider.ts and
//     resource_clients.ts, GETs with start and end snapped to minutes, a
//     series limit of 40000;
//   - when an editor opens: rules (recording rules) and an exemplar
//     probe with times in milliseconds (datasource.ts).
//
// {s}, {e} and {t} stand for the start, end and an instant of the
// fixture's data; check says what Grafana reads of the answer.
var grafanaRequests = []struct {
	name, method, path, body string
	check                    func(t *testing.T, data json.RawMessage)
}{
	{"health 1+1", "POST", "/prometheus/api/v1/query", "query=1%2B1&time=4", wantScalar(2)},
	{"buildinfo", "GET", "/prometheus/api/v1/status/buildinfo", "", func(t *testing.T, data json.RawMessage) {
		var bi map[string]any
		if err := json.Unmarshal(data, &bi); err != nil || bi["version"] == "" || bi["features"] != nil {
			t.Errorf("buildinfo %s: want a version and no features (plain Prometheus)", data)
		}
	}},
	{"panel range", "POST", "/prometheus/api/v1/query_range", "end={e}&query=temperature&start={s}&step=60", wantResult("matrix", 2)},
	{"panel range with timeout", "POST", "/prometheus/api/v1/query_range", "end={e}&query=avg+by+%28host%29+%28avg_over_time%28temperature%5B5m%5D%29%29&start={s}&step=300&timeout=60s", wantResult("matrix", 2)},
	{"panel instant", "POST", "/prometheus/api/v1/query", "query=max_over_time%28energy%5B1h%5D%29&time={t}.345", wantResult("vector", 2)},
	{"metric names", "GET", "/prometheus/api/v1/label/__name__/values?start={s}&end={e}", "", wantStrings("ac_connected", "energy", "humidity", "temperature", "version")},
	{"label values by match", "GET", "/prometheus/api/v1/label/host/values?start={s}&end={e}&match%5B%5D=%7B__name__%3D%22temperature%22%7D", "", wantStrings("a", "b")},
	{"label names", "POST", "/prometheus/api/v1/labels", "end={e}&start={s}", wantStrings("__name__", "host", "unit")},
	{"label names newer", "GET", "/prometheus/api/v1/labels?limit=40000&start={s}&end={e}&match%5B%5D=energy", "", wantStrings("__name__", "host", "unit")},
	{"series", "POST", "/prometheus/api/v1/series", "end={e}&limit=40000&match%5B%5D=%7B__name__%21%3D%22%22%7D&start={s}", func(t *testing.T, data json.RawMessage) {
		var series []map[string]string
		if err := json.Unmarshal(data, &series); err != nil || len(series) != 8 {
			t.Errorf("series %s: want the 8 numeric series", data)
		}
	}},
	{"metadata", "GET", "/prometheus/api/v1/metadata", "", func(t *testing.T, data json.RawMessage) {
		var md map[string][]map[string]string
		if err := json.Unmarshal(data, &md); err != nil || md["temperature"][0]["type"] != "gauge" {
			t.Errorf("metadata %s", data)
		}
	}},
	{"recording rules", "GET", "/prometheus/api/v1/rules", "", func(t *testing.T, data json.RawMessage) {
		if string(data) != `{"groups":[]}` {
			t.Errorf("rules %s", data)
		}
	}},
	{"exemplar probe", "GET", "/prometheus/api/v1/query_exemplars?query=test&start={s}000&end={e}000", "", wantStrings()},
	{"exemplars", "POST", "/prometheus/api/v1/query_exemplars", "end={e}&query=temperature&start={s}", wantStrings()},
}

func wantScalar(v float64) func(*testing.T, json.RawMessage) {
	return func(t *testing.T, data json.RawMessage) {
		t.Helper()
		var d struct {
			ResultType string `json:"resultType"`
			Result     [2]any `json:"result"`
		}
		if err := json.Unmarshal(data, &d); err != nil || d.ResultType != "scalar" || d.Result[1] != strconv.FormatFloat(v, 'f', -1, 64) {
			t.Errorf("%s: want scalar %v", data, v)
		}
	}
}

// wantResult checks the result type and series count, and that every
// value is a string, which Grafana's converter requires.
func wantResult(typ string, series int) func(*testing.T, json.RawMessage) {
	return func(t *testing.T, data json.RawMessage) {
		t.Helper()
		var d queryData
		if err := json.Unmarshal(data, &d); err != nil || d.ResultType != typ || len(d.Result) != series {
			t.Fatalf("%.300s: want %s of %d series", data, typ, series)
		}
		for _, r := range d.Result {
			points := append(r.Values, r.Value)
			if typ == "matrix" {
				points = r.Values
			}
			if len(points) == 0 {
				t.Errorf("%v: no points", r.Metric)
			}
			for _, p := range points {
				if _, ok := p[1].(string); !ok {
					t.Fatalf("value %v is not a string", p[1])
				}
			}
		}
	}
}

func wantStrings(want ...string) func(*testing.T, json.RawMessage) {
	return func(t *testing.T, data json.RawMessage) {
		t.Helper()
		var got []string
		if err := json.Unmarshal(data, &got); err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: want %q", data, want)
		}
	}
}

// TestGrafanaRequests replays what Grafana's Prometheus data source
// sends and checks each answer the way Grafana reads it.
func TestGrafanaRequests(t *testing.T) {
	srv, _, _ := newFixture(t)
	// Grafana snaps the browser's times to minutes.
	s, e := t0.Unix(), t0.Add(2*time.Hour).Unix()
	at := t0.Add(90 * time.Minute).Unix()
	fill := strings.NewReplacer("{s}", fmt.Sprint(s), "{e}", fmt.Sprint(e), "{t}", fmt.Sprint(at))
	for _, rq := range grafanaRequests {
		t.Run(rq.name, func(t *testing.T) {
			var body io.Reader
			if rq.body != "" {
				body = strings.NewReader(fill.Replace(rq.body))
			}
			req, err := http.NewRequest(rq.method, srv.URL+fill.Replace(rq.path), body)
			if err != nil {
				t.Fatal(err)
			}
			if body != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var pr promResponse
			if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || pr.Status != "success" || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s %+v", resp.StatusCode, resp.Header.Get("Content-Type"), pr)
			}
			rq.check(t, pr.Data)
		})
	}
}
