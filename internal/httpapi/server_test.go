package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store/engine"

	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// newServer serves nine readings: two hosts, two sensors, a minute apart,
// with readings exactly on the ends of [12:01, 12:03).
func newServer(t *testing.T) (*httptest.Server, *Client) {
	t.Helper()
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var b store.Batch
	for _, f := range []struct {
		host, sensor string
		minute       int
	}{{"a", "temperature", 0}, {"a", "temperature", 1}, {"a", "temperature", 2}, {"a", "temperature", 3},
		{"b", "temperature", 1}, {"b", "temperature", 2}, {"a", "humidity", 0}, {"a", "humidity", 2}, {"b", "humidity", 3}} {
		b.Readings = append(b.Readings, schema.Reading{Host: f.host, Sensor: f.sensor,
			Time: t0.Add(time.Duration(f.minute) * time.Minute), Value: json.RawMessage(fmt.Sprint(f.minute))})
	}
	if _, err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&Server{Store: st, Metrics: metrics.NewRegistry(), Now: func() time.Time { return t0.Add(time.Hour) }}).Handler())
	t.Cleanup(srv.Close)
	return srv, NewClient(srv.URL)
}

func TestQueryBoundaries(t *testing.T) {
	_, c := newServer(t)
	since, until := t0.Add(time.Minute), t0.Add(3*time.Minute)
	tests := []struct {
		name string
		q    store.Query
		want int
	}{
		{"no filter", store.Query{}, 9},
		{"by sensor", store.Query{Sensor: "temperature"}, 6},
		{"by host", store.Query{Hosts: []string{"b"}}, 3},
		{"by since", store.Query{Since: since}, 7},
		{"by until", store.Query{Until: until}, 7},
		{"by both", store.Query{Since: since, Until: until}, 5},
		{"limit", store.Query{Limit: 2}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			if err := c.Scan(tc.q, func(*schema.Reading) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			if n != tc.want {
				t.Errorf("got %d, want %d", n, tc.want)
			}
		})
	}
}

func TestRelativeTimesAndErrors(t *testing.T) {
	srv, _ := newServer(t)
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no security headers", path)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// now is 13:00: since=58m → 12:02.
	code, body := get("/api/v1/query?sensor=temperature&since=58m")
	if code != 200 || strings.Count(body, "\n") != 3 {
		t.Errorf("since=58m: %d %q", code, body)
	}
	for _, bad := range []string{"since=yesterday&sensor=t", "limit=-1&sensor=t", "sensor=a/b", "host=%24x&sensor=t", "format=xml&sensor=t"} {
		code, body := get("/api/v1/query?" + bad)
		if code != 400 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}
	// Without a sensor the answer is a hint, not every reading: Grafana's
	// health check asks Prometheus' /api/v1/query for 1+1.
	for params, hint := range map[string]string{"": "sensor is required", "query=1%2B1": "/prometheus/api/v1/query", "since=1h": "all=1"} {
		code, body := get("/api/v1/query?" + params)
		if code != 400 || !strings.Contains(body, hint) {
			t.Errorf("query?%s: %d %s, want 400 with %q", params, code, body, hint)
		}
	}
	if code, body := get("/api/v1/query?all=1"); code != 200 || strings.Count(body, "\n") != 9 {
		t.Errorf("all=1: %d %q", code, body)
	}
	if code, body := get("/api/v1/hosts"); code != 200 || !strings.Contains(body, `"host":"a"`) {
		t.Errorf("hosts: %d %s", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Errorf("unknown path %d", code)
	}
}

func TestQueryProcessing(t *testing.T) {
	_, c := newServer(t)
	var got []string
	err := c.Query(store.Query{Sensor: "temperature"}, query.Spec{Agg: "count"}, func(r *schema.Reading) error {
		got = append(got, r.Host+" "+string(r.Value))
		return nil
	})
	if err != nil || strings.Join(got, ",") != "a 4,b 2" {
		t.Errorf("count per host = %v, %v", got, err)
	}
	got = nil
	err = c.Query(store.Query{Sensor: "temperature"}, query.Spec{Where: "value >= 2"}, func(r *schema.Reading) error {
		got = append(got, r.Host+" "+string(r.Value))
		return nil
	})
	if err != nil || strings.Join(got, ",") != "a 2,a 3,b 2" {
		t.Errorf("where = %v, %v", got, err)
	}
	err = c.Query(store.Query{Sensor: "temperature"}, query.Spec{Agg: "no_such_aggregate"}, func(*schema.Reading) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "no_such_aggregate") {
		t.Errorf("bad agg: %v", err)
	}
}

// TestKeyForms checks every form a client of another tool's protocol
// sends the key in, and that each is refused with the wrong key.
func TestKeyForms(t *testing.T) {
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewServer((&Server{Store: st, APIKey: []byte("s3cret"), InfluxWrite: ok, RemoteWrite: ok}).Handler())
	t.Cleanup(srv.Close)
	tests := []struct {
		name, method, path string
		header             http.Header
		basic              [2]string
		want               int
	}{
		{"header", "POST", "/api/v1/write", http.Header{"X-Api-Key": {"s3cret"}}, [2]string{}, 204},
		{"bearer", "POST", "/api/v1/write", http.Header{"Authorization": {"Bearer s3cret"}}, [2]string{}, 204},
		{"token", "POST", "/api/v2/write", http.Header{"Authorization": {"Token s3cret"}}, [2]string{}, 204},
		{"basic", "POST", "/write", nil, [2]string{"telegraf", "s3cret"}, 204},
		{"influx p", "POST", "/write?u=x&p=s3cret", nil, [2]string{}, 204},
		{"p elsewhere", "POST", "/api/v1/write?p=s3cret", nil, [2]string{}, 401},
		{"influx query p", "POST", "/query?p=s3cret", nil, [2]string{}, 204},
		{"influx query none", "GET", "/query?q=SHOW+DATABASES", nil, [2]string{}, 401},
		{"wrong bearer", "POST", "/api/v1/write", http.Header{"Authorization": {"Bearer nope"}}, [2]string{}, 401},
		{"wrong basic", "POST", "/write", nil, [2]string{"s3cret", "nope"}, 401},
		{"none", "POST", "/api/v2/write", nil, [2]string{}, 401},
		{"ping needs none", "GET", "/ping", nil, [2]string{}, 204},
		{"health needs none", "GET", "/health", nil, [2]string{}, 204},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header[k] = v
			}
			if tc.basic[0] != "" {
				req.SetBasicAuth(tc.basic[0], tc.basic[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}
