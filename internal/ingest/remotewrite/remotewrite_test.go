package remotewrite

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/influxline"
)

// fakeIngester records submissions and calls done at once, as a commit
// would; closed makes it refuse as a closed ingester does.
type fakeIngester struct {
	mu     sync.Mutex
	subs   []ingest.Submission
	closed bool
}

var _ influxline.Ingester = (*fakeIngester)(nil)

func (f *fakeIngester) Submit(s ingest.Submission, done func()) (ingest.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, ingest.ErrClosed
	}
	f.subs = append(f.subs, s)
	if done != nil {
		go done()
	}
	if s.Undecodable != nil {
		return ingest.Rejected, nil
	}
	return ingest.Queued, nil
}

func (f *fakeIngester) lists() (readings, dead []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.subs {
		if r := s.Reading; r != nil {
			readings = append(readings, r.Host+"/"+r.Sensor+"="+string(r.Value)+"@"+r.Time.UTC().Format(time.RFC3339Nano))
		} else {
			dead = append(dead, s.Topic+" "+s.Undecodable.Reason+" "+string(s.Payload))
		}
	}
	return readings, dead
}

func labels(kv ...string) []prompb.Label {
	var ls []prompb.Label
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return ls
}

// t0 is 2025-12-03T12:00:00Z in milliseconds.
const t0 = 1764763200000

func encode(t *testing.T, req *prompb.WriteRequest) []byte {
	t.Helper()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func post(t *testing.T, url string, body []byte, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func newTestServer(t *testing.T, opts Options) (*httptest.Server, *fakeIngester, *Handler) {
	t.Helper()
	in := &fakeIngester{}
	if opts.Ingester == nil {
		opts.Ingester = in
	}
	h := New(opts)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, in, h
}

func TestWrite(t *testing.T) {
	t.Parallel()
	srv, in, h := newTestServer(t, Options{})
	req := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			{Labels: labels("__name__", "node_cpu_seconds_total", "cpu", "0", "instance", "localhost:9100", "job", "node", "mode", "idle"),
				Samples:   []prompb.Sample{{Value: 1234.5, Timestamp: t0}, {Value: 1235, Timestamp: t0 + 15000}},
				Exemplars: []prompb.Exemplar{{Value: 1, Timestamp: t0}}},
			{Labels: labels("__name__", "node_memory_MemAvailable_bytes", "host", "pi-kitchen", "instance", "10.0.0.5:9100", "job", "node"),
				Samples: []prompb.Sample{{Value: 716476416, Timestamp: t0}}},
			{Labels: labels("__name__", "up", "instance", "[::1]:9090", "job", "prometheus"),
				Samples: []prompb.Sample{{Value: 1, Timestamp: t0}, {Value: math.Float64frombits(value.StaleNaN), Timestamp: t0 + 1}}},
			{Labels: labels("__name__", "go_gc_duration_seconds", "instance", "h:1", "quantile", "0.5"),
				Samples: []prompb.Sample{{Value: math.NaN(), Timestamp: t0}, {Value: math.Inf(1), Timestamp: t0}, {Value: 0.25, Timestamp: t0}}},
			{Labels: labels("__name__", "http_request_duration_seconds", "instance", "h:1"),
				Histograms: []prompb.Histogram{{Timestamp: t0}, {Timestamp: t0 + 1}}},
		},
		Metadata: []prompb.MetricMetadata{{MetricFamilyName: "up", Type: prompb.MetricMetadata_GAUGE}},
	}
	if code, body := post(t, srv.URL+"/api/v1/write", encode(t, req), nil); code != http.StatusNoContent {
		t.Fatalf("status %d %q; want 204", code, body)
	}
	readings, dead := in.lists()
	want := []string{
		`localhost/node_cpu_seconds_total.0.idle={"magnitude":1234.5,"unit":"s"}@2025-12-03T12:00:00Z`,
		`localhost/node_cpu_seconds_total.0.idle={"magnitude":1235,"unit":"s"}@2025-12-03T12:00:15Z`,
		`pi-kitchen/node_memory_MemAvailable_bytes={"magnitude":716476416,"unit":"B"}@2025-12-03T12:00:00Z`,
		`1/up=1@2025-12-03T12:00:00Z`,
		`h/go_gc_duration_seconds.0-5={"magnitude":0.25,"unit":"s"}@2025-12-03T12:00:00Z`,
	}
	if strings.Join(readings, "\n") != strings.Join(want, "\n") || len(dead) != 0 {
		t.Errorf("readings:\n%s\nwant:\n%s\ndead letters: %q", strings.Join(readings, "\n"), strings.Join(want, "\n"), dead)
	}
	c := h.Counts()
	for name, got := range map[string]uint64{"stale": c.Stale.Value(), "non_finite": c.NonFinite.Value(), "histogram": c.Histograms.Value(),
		"exemplar": c.Exemplars.Value(), "metadata": c.Metadata.Value()} {
		want := map[string]uint64{"stale": 1, "non_finite": 2, "histogram": 2, "exemplar": 1, "metadata": 1}[name]
		if got != want {
			t.Errorf("%s counted %d; want %d", name, got, want)
		}
	}
}

func TestWriteUnnamableSeries(t *testing.T) {
	t.Parallel()
	srv, in, _ := newTestServer(t, Options{})
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: labels("__name__", "no_host"), Samples: []prompb.Sample{{Value: 1, Timestamp: t0}}},
		{Labels: labels("instance", "h:1", "x", "y"), Samples: []prompb.Sample{{Value: 1, Timestamp: t0}}},
		{Labels: labels("__name__", "node_uname_info", "instance", "h:1", "release", strings.Repeat("6", 60)), Samples: []prompb.Sample{{Value: 1, Timestamp: t0}}},
		{Labels: labels("__name__", "fine", "instance", "h:1"), Samples: []prompb.Sample{{Value: 2, Timestamp: t0}}},
	}}
	// Series that cannot be named are dead letters; the write succeeds
	// (Prometheus would drop the whole batch on a 4xx).
	if code, body := post(t, srv.URL+"/prometheus/api/v1/write", encode(t, req), nil); code != http.StatusNoContent {
		t.Fatalf("status %d %q; want 204", code, body)
	}
	readings, dead := in.lists()
	if want := []string{"h/fine=2@2025-12-03T12:00:00Z"}; strings.Join(readings, " ") != strings.Join(want, " ") {
		t.Errorf("readings %q; want %q", readings, want)
	}
	wantDead := []string{
		`/prometheus/api/v1/write invalid_name no_host{}`,
		`/prometheus/api/v1/write invalid_name {instance="h:1",x="y"}`,
		`/prometheus/api/v1/write invalid_name node_uname_info{instance="h:1",release="` + strings.Repeat("6", 60) + `"}`,
	}
	if strings.Join(dead, "\n") != strings.Join(wantDead, "\n") {
		t.Errorf("dead letters:\n%s\nwant:\n%s", strings.Join(dead, "\n"), strings.Join(wantDead, "\n"))
	}
}

func TestWriteHostLabelAndDefaultHost(t *testing.T) {
	t.Parallel()
	srv, in, _ := newTestServer(t, Options{HostLabel: "node", DefaultHost: "prom"})
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		// Unsorted labels fold as if sorted.
		{Labels: labels("node", "edge-1", "__name__", "temp_celsius", "zone", "b", "room", "a"), Samples: []prompb.Sample{{Value: 21, Timestamp: t0}}},
		{Labels: labels("__name__", "up"), Samples: []prompb.Sample{{Value: 1, Timestamp: t0}}},
	}}
	if code, body := post(t, srv.URL+"/api/v1/write", encode(t, req), nil); code != http.StatusNoContent {
		t.Fatalf("status %d %q; want 204", code, body)
	}
	readings, _ := in.lists()
	want := []string{`edge-1/temp_celsius.a.b={"magnitude":21,"unit":"degC"}@2025-12-03T12:00:00Z`, `prom/up=1@2025-12-03T12:00:00Z`}
	if strings.Join(readings, "\n") != strings.Join(want, "\n") {
		t.Errorf("readings:\n%s\nwant:\n%s", strings.Join(readings, "\n"), strings.Join(want, "\n"))
	}
}

func TestWriteRefuses(t *testing.T) {
	t.Parallel()
	const max = 4096
	srv, in, _ := newTestServer(t, Options{MaxBytes: max})
	big := &prompb.WriteRequest{}
	for i := 0; i < 200; i++ {
		big.Timeseries = append(big.Timeseries, prompb.TimeSeries{Labels: labels("__name__", "m", "instance", "h:1", "i", strings.Repeat("x", 20)),
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: t0}}})
	}
	raw, _ := big.Marshal()
	incompressible := make([]byte, 2*max)
	for i := range incompressible {
		incompressible[i] = byte(i * 7919 >> 3)
	}
	cases := []struct {
		name   string
		body   []byte
		header map[string]string
		want   int
	}{
		{"not snappy", []byte("hello"), nil, http.StatusBadRequest},
		{"snappy, not protobuf", snappy.Encode(nil, []byte("\xff\xff\xff")), nil, http.StatusBadRequest},
		{"decodes beyond the bound", encode(t, big), nil, http.StatusRequestEntityTooLarge},
		{"compressed beyond the bound", snappy.Encode(nil, incompressible), nil, http.StatusRequestEntityTooLarge},
		{"remote_write 2.0", snappy.Encode(nil, raw[:10]), map[string]string{"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}, http.StatusUnsupportedMediaType},
		{"gzip", raw, map[string]string{"Content-Encoding": "gzip"}, http.StatusUnsupportedMediaType},
	}
	if len(raw) <= max {
		t.Fatalf("the big request is %d bytes, not beyond %d", len(raw), max)
	}
	for _, c := range cases {
		if code, body := post(t, srv.URL+"/api/v1/write", c.body, c.header); code != c.want {
			t.Errorf("%s: status %d %q; want %d", c.name, code, body, c.want)
		}
	}
	readings, dead := in.lists()
	if len(readings) != 0 || len(dead) != 2 {
		t.Errorf("readings %q, dead letters %q; want none and one per undecodable body", readings, dead)
	}
}

func TestWriteClosed(t *testing.T) {
	t.Parallel()
	srv, _, _ := newTestServer(t, Options{Ingester: &fakeIngester{closed: true}})
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: labels("__name__", "up", "instance", "h:1"), Samples: []prompb.Sample{{Value: 1, Timestamp: t0}}}}}
	if code, _ := post(t, srv.URL+"/api/v1/write", encode(t, req), nil); code != http.StatusServiceUnavailable {
		t.Errorf("status %d; want 503 (Prometheus retries)", code)
	}
}
