package influxline

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/schema"
)

// fakeIngester records submissions and calls each done once release
// (when set) is closed, as a commit would.
type fakeIngester struct {
	mu      sync.Mutex
	subs    []ingest.Submission
	closed  bool
	release chan struct{}
	done    sync.WaitGroup
}

var _ Ingester = (*fakeIngester)(nil)

func (f *fakeIngester) Submit(s ingest.Submission, done func()) (ingest.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, ingest.ErrClosed
	}
	f.subs = append(f.subs, s)
	out := ingest.Queued
	if s.Undecodable != nil || s.Reading != nil && schema.ValidateName(s.Reading.Sensor) != nil {
		out = ingest.Rejected
	}
	if done != nil {
		f.done.Add(1)
		go func() {
			defer f.done.Done()
			if f.release != nil {
				<-f.release
			}
			done()
		}()
	}
	return out, nil
}

func (f *fakeIngester) submissions() []ingest.Submission {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ingest.Submission(nil), f.subs...)
}

// readings returns host/sensor=value@unix-ms of each reading submitted.
func (f *fakeIngester) readings() []string {
	var out []string
	for _, s := range f.submissions() {
		if r := s.Reading; r != nil {
			ts := "-"
			if !r.Time.IsZero() {
				ts = r.Time.UTC().Format(time.RFC3339Nano)
			}
			out = append(out, r.Host+"/"+r.Sensor+"="+string(r.Value)+"@"+ts)
		}
	}
	return out
}

func (f *fakeIngester) deadLetters() []ingest.Submission {
	var out []ingest.Submission
	for _, s := range f.submissions() {
		if s.Undecodable != nil {
			out = append(out, s)
		}
	}
	return out
}

func newTestServer(t *testing.T, opts Options) (*httptest.Server, *fakeIngester) {
	t.Helper()
	in := &fakeIngester{}
	if opts.Ingester == nil {
		opts.Ingester = in
	}
	srv := httptest.NewServer(New(opts))
	t.Cleanup(srv.Close)
	return srv, in
}

func post(t *testing.T, url string, body []byte, header map[string]string) (*http.Response, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]string
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("answer %q is not InfluxDB's error JSON: %v", raw, err)
		}
	}
	return resp, m
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const telegrafLines = `cpu,cpu=cpu-total,host=pi usage_idle=97.5,usage_user=1.25 1764763200000000000
mem,host=pi available=716476416i,used_percent=31.2,total=1024u 1764763200000000000
disk,device=sda1,fstype=ext4,host=pi,mode=rw,path=/ used_percent=42.1 1764763200000000000
status,host=pi ok=true,msg="all \"fine\"" 1764763200000000000
`

var telegrafReadings = []string{
	`pi/cpu.usage_idle.cpu-total=97.5@2025-12-03T12:00:00Z`,
	`pi/cpu.usage_user.cpu-total=1.25@2025-12-03T12:00:00Z`,
	`pi/mem.available=716476416@2025-12-03T12:00:00Z`,
	`pi/mem.used_percent={"magnitude":31.2,"unit":"percent"}@2025-12-03T12:00:00Z`,
	`pi/mem.total=1024@2025-12-03T12:00:00Z`,
	`pi/disk.used_percent.sda1.ext4.rw.-={"magnitude":42.1,"unit":"percent"}@2025-12-03T12:00:00Z`,
	`pi/status.ok=true@2025-12-03T12:00:00Z`,
	`pi/status.msg="all \"fine\""@2025-12-03T12:00:00Z`,
}

func TestWrite(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/write?db=telegraf", "/api/v2/write?org=o&bucket=b"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			srv, in := newTestServer(t, Options{})
			resp, _ := post(t, srv.URL+path, []byte(telegrafLines), nil)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d; want 204", resp.StatusCode)
			}
			if got := in.readings(); strings.Join(got, "\n") != strings.Join(telegrafReadings, "\n") {
				t.Errorf("readings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(telegrafReadings, "\n"))
			}
		})
	}
}

func TestWriteGzip(t *testing.T) {
	t.Parallel()
	srv, in := newTestServer(t, Options{})
	resp, _ := post(t, srv.URL+"/api/v2/write?bucket=b", gzipped(t, []byte(telegrafLines)), map[string]string{"Content-Encoding": "gzip"})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d; want 204", resp.StatusCode)
	}
	if got := len(in.readings()); got != len(telegrafReadings) {
		t.Errorf("%d readings; want %d", got, len(telegrafReadings))
	}
	resp, m := post(t, srv.URL+"/write", []byte("not gzip"), map[string]string{"Content-Encoding": "gzip"})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(m["error"], "gzip") {
		t.Errorf("a body that is not gzip: %d %q; want 400 saying gzip", resp.StatusCode, m)
	}
	resp, _ = post(t, srv.URL+"/write", []byte(telegrafLines), map[string]string{"Content-Encoding": "br"})
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("Content-Encoding br: %d; want 415", resp.StatusCode)
	}
}

func TestWritePrecision(t *testing.T) {
	t.Parallel()
	cases := []struct {
		precision, stamp, want string
	}{
		{"", "1764763200123456789", "2025-12-03T12:00:00.123456789Z"},
		{"n", "1764763200123456789", "2025-12-03T12:00:00.123456789Z"},
		{"ns", "1764763200123456789", "2025-12-03T12:00:00.123456789Z"},
		{"u", "1764763200123456", "2025-12-03T12:00:00.123456Z"},
		{"us", "1764763200123456", "2025-12-03T12:00:00.123456Z"},
		{"ms", "1764763200123", "2025-12-03T12:00:00.123Z"},
		{"s", "1764763200", "2025-12-03T12:00:00Z"},
		{"m", "29412720", "2025-12-03T12:00:00Z"},
		{"h", "490212", "2025-12-03T12:00:00Z"},
	}
	for _, c := range cases {
		t.Run("precision="+c.precision, func(t *testing.T) {
			t.Parallel()
			srv, in := newTestServer(t, Options{})
			resp, _ := post(t, srv.URL+"/write?precision="+c.precision, []byte("t,host=h v=1 "+c.stamp), nil)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d; want 204", resp.StatusCode)
			}
			if got, want := in.readings(), "h/t.v=1@"+c.want; len(got) != 1 || got[0] != want {
				t.Errorf("got %q; want %q", got, want)
			}
		})
	}
	srv, _ := newTestServer(t, Options{})
	if resp, m := post(t, srv.URL+"/api/v2/write?precision=d", []byte("t,host=h v=1"), nil); resp.StatusCode != http.StatusBadRequest || m["code"] != "invalid" {
		t.Errorf("precision=d: %d %q; want 400 invalid", resp.StatusCode, m)
	}
	if resp, m := post(t, srv.URL+"/write?precision=h", []byte("t,host=h v=1 9223372036854775"), nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(m["error"], "out of range") {
		t.Errorf("a timestamp beyond int64 ns: %d %q; want 400 out of range", resp.StatusCode, m)
	}
}

func TestWriteWithoutTimestampTakesReceiveTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	srv, in := newTestServer(t, Options{Now: func() time.Time { return now }})
	post(t, srv.URL+"/write", []byte("t,host=h v=1\nt,host=h w=2"), nil)
	subs := in.submissions()
	if len(subs) != 2 {
		t.Fatalf("%d submissions; want 2", len(subs))
	}
	for _, s := range subs {
		if !s.Received.Equal(now) || !s.Reading.Time.IsZero() {
			t.Errorf("received %v, time %v; want received %v and no time of its own (the ingester gives it the received time)", s.Received, s.Reading.Time, now)
		}
	}
}

// TestWriteBadLines: the valid lines of a body are stored, each bad one
// is a dead letter naming the endpoint and its line number, and the
// answer is 400 naming the lines.
func TestWriteBadLines(t *testing.T) {
	t.Parallel()
	srv, in := newTestServer(t, Options{})
	body := "t,host=h a=1\n" + // 1
		"\n" + // 2 blank
		"# a comment\n" + // 3
		"t,host=h b=\n" + // 4 bad
		"t,host=h c=3 12x\n" + // 5 bad timestamp
		"t d=4\n" + // 6 no host
		"t,host=h,tag=" + strings.Repeat("x", 70) + " e=5\n" + // 7 name too long
		"t,host=h f=\"\xff\"\n" + // 8 not UTF-8
		"t,host=h g=7\r\n" // 9, CRLF
	resp, m := post(t, srv.URL+"/write", []byte(body), nil)
	if resp.StatusCode != http.StatusBadRequest || m["code"] != "invalid" {
		t.Fatalf("status %d %q; want 400 invalid", resp.StatusCode, m)
	}
	msg := m["error"]
	for _, want := range []string{"partial write", "line 4:", "line 5:", "line 6:", "line 7:", "line 8:", "5 of 7 lines not stored, the others were"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if got, want := in.readings(), []string{"h/t.a=1@-", "h/t.g=7@-"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("stored %q; want %q", got, want)
	}
	dead := in.deadLetters()
	wantDead := []struct{ topic, reason, payload string }{
		{"/write line 4", ingest.ReasonInvalid, "t,host=h b="},
		{"/write line 5", ingest.ReasonInvalid, "t,host=h c=3 12x"},
		{"/write line 6", ingest.ReasonInvalidName, "t d=4"},
		{"/write line 7", ingest.ReasonInvalidName, "t,host=h,tag=" + strings.Repeat("x", 70) + " e=5"},
		{"/write line 8", ingest.ReasonInvalidUTF8, "t,host=h f=\"\xff\""},
	}
	if len(dead) != len(wantDead) {
		t.Fatalf("%d dead letters; want %d", len(dead), len(wantDead))
	}
	for i, w := range wantDead {
		d := dead[i]
		if d.Topic != w.topic || d.Undecodable.Reason != w.reason || string(d.Payload) != w.payload {
			t.Errorf("dead letter %d: %q %q %q (%v); want %q %q %q", i, d.Topic, d.Undecodable.Reason, d.Payload, d.Undecodable.Err, w.topic, w.reason, w.payload)
		}
	}
	// 2.x's shape on its endpoint.
	resp, m = post(t, srv.URL+"/api/v2/write?bucket=b", []byte("oops"), nil)
	if resp.StatusCode != http.StatusBadRequest || m["code"] != "invalid" || !strings.Contains(m["message"], "line 1:") || !strings.Contains(m["message"], "1 of 1 lines not stored;") {
		t.Errorf("v2: %d %q; want 400 invalid naming line 1", resp.StatusCode, m)
	}
}

func TestWriteHostTagAndDefaultHost(t *testing.T) {
	t.Parallel()
	srv, in := newTestServer(t, Options{HostTag: "node", DefaultHost: "fallback"})
	resp, _ := post(t, srv.URL+"/write", []byte("t,node=web\\ 01,host=x v=1 1764763200000000000\nt v=2 1764763200000000000"), nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d; want 204", resp.StatusCode)
	}
	// host is then an ordinary tag, folded into the sensor.
	want := []string{"web-01/t.v.x=1@2025-12-03T12:00:00Z", "fallback/t.v=2@2025-12-03T12:00:00Z"}
	if got := in.readings(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %q; want %q", got, want)
	}
}

// TestWriteAnswersAfterCommit: no answer before every done.
func TestWriteAnswersAfterCommit(t *testing.T) {
	t.Parallel()
	in := &fakeIngester{release: make(chan struct{})}
	srv, _ := newTestServer(t, Options{Ingester: in})
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/write", "text/plain", strings.NewReader(telegrafLines))
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	// Wait until everything is submitted, then make sure nothing was
	// answered while the commits are held.
	deadline := time.Now().Add(10 * time.Second)
	for len(in.submissions()) < len(telegrafReadings) {
		if time.Now().After(deadline) {
			t.Fatalf("%d submissions; want %d", len(in.submissions()), len(telegrafReadings))
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case code := <-answered:
		t.Fatalf("answered %d before the commit", code)
	case <-time.After(100 * time.Millisecond):
	}
	close(in.release)
	if code := <-answered; code != http.StatusNoContent {
		t.Errorf("status %d after the commit; want 204", code)
	}
}

func TestWriteClosed(t *testing.T) {
	t.Parallel()
	in := &fakeIngester{closed: true}
	srv, _ := newTestServer(t, Options{Ingester: in})
	if resp, m := post(t, srv.URL+"/write", []byte(telegrafLines), nil); resp.StatusCode != http.StatusServiceUnavailable || m["code"] != "unavailable" {
		t.Errorf("closed ingester: %d %q; want 503 unavailable", resp.StatusCode, m)
	}
}

func TestWriteBounds(t *testing.T) {
	t.Parallel()
	const max = 1000
	srv, in := newTestServer(t, Options{MaxBytes: max})
	line := []byte("t,host=h v=1\n")
	fits := bytes.Repeat(line, max/len(line))
	over := bytes.Repeat(line, max/len(line)+1)
	cases := []struct {
		name   string
		body   []byte
		header map[string]string
		want   int
	}{
		{"plain within", fits, nil, http.StatusNoContent},
		{"plain over", over, nil, http.StatusRequestEntityTooLarge},
		{"gzip within", gzipped(t, fits), map[string]string{"Content-Encoding": "gzip"}, http.StatusNoContent},
		// Small compressed, too large once decompressed: a gzip bomb.
		{"gzip decompresses over", gzipped(t, over), map[string]string{"Content-Encoding": "gzip"}, http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		resp, m := post(t, srv.URL+"/api/v2/write", c.body, c.header)
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d %q; want %d", c.name, resp.StatusCode, m, c.want)
		}
		if c.want == http.StatusRequestEntityTooLarge && m["code"] != "request too large" {
			t.Errorf("%s: code %q; want request too large", c.name, m["code"])
		}
	}
	if got, want := len(in.readings()), 2*(max/len(line)); got != want {
		t.Errorf("%d readings; want %d (none from a refused body)", got, want)
	}
}

func TestPingAndHealth(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t, Options{})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, srv.URL+"/ping", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Influxdb-Version") != DefaultVersion || resp.Header.Get("X-Influxdb-Build") == "" {
			t.Errorf("%s /ping: %d %v; want 204 with X-Influxdb-Version and X-Influxdb-Build", method, resp.StatusCode, resp.Header)
		}
	}
	resp, err := http.Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || h["name"] != "influxdb" || h["status"] != "pass" || h["message"] != "ready for queries and writes" ||
		h["version"] != DefaultVersion || h["checks"] == nil {
		t.Errorf("/health: %d %v", resp.StatusCode, h)
	}
}

// TestQueryStatements checks the InfluxQL writers send before writing:
// what creates a database succeeds, SHOW DATABASES lists apd's one, any
// other statement is an error of its own, in InfluxDB's shape.
func TestQueryStatements(t *testing.T) {
	t.Parallel()
	srv, _ := newTestServer(t, Options{})
	tests := []struct {
		q, want string
	}{
		{`CREATE DATABASE "telegraf"`, `{"results":[{"statement_id":0}]}`},
		{"create  retention policy rp on db duration 1d replication 1; SHOW DATABASES",
			`{"results":[{"statement_id":0},{"statement_id":1,"series":[{"columns":["name"],"name":"databases","values":[["apd"]]}]}]}`},
		{`SELECT * FROM "a;b"`, `{"results":[{"statement_id":0,"error":"apd takes writes here and answers no InfluxQL: read with PromQL at /prometheus/api/v1/query or with apd query"}]}`},
	}
	for _, tc := range tests {
		resp, err := http.PostForm(srv.URL+"/query", url.Values{"q": {tc.q}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != tc.want {
			t.Errorf("%q: %d %s\nwant %s", tc.q, resp.StatusCode, b, tc.want)
		}
	}
	resp, err := http.Get(srv.URL + "/query")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no q: %d, want 400", resp.StatusCode)
	}
}
