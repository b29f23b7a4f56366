package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// These tests attack the API the way a hostile review did, over real
// HTTP against the server as apd serves it (Server.HTTPServer).

// serveAPI starts api with the limits apd serve gives it.
func serveAPI(t *testing.T, api *Server) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = api.HTTPServer()
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// commit stores readings of sensors on hosts, one a minute before t0.
func commit(t *testing.T, st store.Store, hosts []string, sensors ...string) {
	t.Helper()
	var b store.Batch
	for _, h := range hosts {
		for i, s := range sensors {
			b.Readings = append(b.Readings, schema.Reading{Host: h, Sensor: s, Time: t0.Add(-time.Duration(i%50+1) * time.Minute),
				Value: json.RawMessage(fmt.Sprint(20 + i%7))})
		}
	}
	if _, err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
}

func getStatus(t *testing.T, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestNestedWhereAndLongURLs (hole 7): a where nested past the parser's
// bound is a 400 naming it, a URL past MaxURLBytes a 414 saying the
// bound, and request lines past MaxHeaderBytes are refused by the server
// before a handler sees them.
func TestNestedWhereAndLongURLs(t *testing.T) {
	st, _ := newStore(t)
	commit(t, st, []string{"pi"}, "temperature")
	srv := serveAPI(t, &Server{Store: st, Now: func() time.Time { return t0 }})
	q := func(where string) string {
		return srv.URL + "/api/v1/query?sensor=temperature&since=2h&where=" + url.QueryEscape(where)
	}
	for _, tc := range []struct {
		name, url string
		status    int
		body      string
	}{
		{"plain", q("value > 1"), 200, `"temperature"`},
		{"nested 2,000 deep", q(strings.Repeat("(", 2000) + "value > 1" + strings.Repeat(")", 2000)), 400, "nested more than 32 levels"},
		{"a where of 5,000 bytes", q("value > 1" + strings.Repeat(" ", 5000)), 400, "at most 4096"},
		{"a URL of 20 KiB", q("value > 1") + "&host=" + strings.Repeat("x", 20<<10), 414, "at most 16384"},
		{"a megabyte of parentheses", srv.URL + "/api/v1/query?sensor=temperature&where=" +
			strings.Repeat("(", 520000) + "value>1" + strings.Repeat(")", 520000), http.StatusRequestHeaderFieldsTooLarge, ""},
	} {
		status, body, _ := getStatus(t, tc.url)
		if status != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %.200q, want %d with %q", tc.name, status, body, tc.status, tc.body)
		}
	}
	// Headers count against the same bound as the request line.
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/hosts", nil)
	req.Header.Set("X-Padding", strings.Repeat("p", MaxHeaderBytes+8192))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("headers of %d bytes: %s", MaxHeaderBytes+8192, resp.Status)
	}
}

// gatedStore holds every scan until gate is closed, telling entered.
type gatedStore struct {
	store.Store
	entered chan struct{}
	gate    chan struct{}
}

func (g gatedStore) Scan(q store.Query, fn func(*schema.Reading) error) error {
	g.entered <- struct{}{}
	<-g.gate
	return g.Store.Scan(q, fn)
}

// TestChartBounds (hole 9): a chart larger than MaxChartPixels is a 400
// naming the bound; while MaxConcurrentCharts charts are being drawn,
// another waits ChartWait and is answered 503 with Retry-After, and the
// ones drawing finish.
func TestChartBounds(t *testing.T) {
	st, _ := newStore(t)
	commit(t, st, []string{"pi"}, "temperature")
	gs := gatedStore{Store: st, entered: make(chan struct{}, 16), gate: make(chan struct{})}
	srv := serveAPI(t, &Server{Store: gs, Now: func() time.Time { return t0 }, ChartWait: 200 * time.Millisecond})
	chartURL := srv.URL + "/api/v1/chart.png?sensor=temperature&since=2h"

	status, body, _ := getStatus(t, chartURL+"&width=4000&height=4000")
	if status != 400 || !strings.Contains(body, "at most 4000000") {
		t.Errorf("a 4000×4000 chart: %d %q", status, body)
	}
	status, body, _ = getStatus(t, chartURL+"&width=4000&height=1001")
	if status != 400 || !strings.Contains(body, "pixels") {
		t.Errorf("a 4000×1001 chart: %d %q", status, body)
	}

	var wg sync.WaitGroup
	var ok atomic.Int32
	for range MaxConcurrentCharts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(chartURL + "&width=2000&height=2000")
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && bytes.HasPrefix(b, []byte("\x89PNG")) {
				ok.Add(1)
			}
		}()
	}
	for range MaxConcurrentCharts {
		select {
		case <-gs.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the charts did not start")
		}
	}
	start := time.Now()
	status, body, h := getStatus(t, chartURL)
	if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(body, "at most 2 at once") {
		t.Errorf("a chart while %d are drawn: %d %q (Retry-After %q), want 503 with Retry-After", MaxConcurrentCharts, status, body, h.Get("Retry-After"))
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("answered 503 after %s, without waiting for a turn", waited)
	}
	close(gs.gate)
	wg.Wait()
	if ok.Load() != MaxConcurrentCharts {
		t.Errorf("%d of the %d charts drawing were answered with a PNG", ok.Load(), MaxConcurrentCharts)
	}
	// A turn is free again.
	if status, body, _ := getStatus(t, chartURL); status != 200 {
		t.Errorf("a chart after the others: %d %.200q", status, body)
	}
}

// TestSessions (hole 10): every login makes its own session cookie, with
// an expiry; the cookie reads the API but not the backup; logging out
// ends the session on the server (a copy of the cookie opens nothing);
// a session ends after its TTL; the sessions kept are bounded.
func TestSessions(t *testing.T) {
	st, _ := newStore(t)
	commit(t, st, []string{"pi"}, "temperature")
	const key = "0123456789abcdef"
	var now atomic.Int64
	now.Store(t0.UnixNano())
	srv := serveAPI(t, &Server{Store: st, APIKey: []byte(key), MaxSessions: 3,
		Now: func() time.Time { return time.Unix(0, now.Load()) }})

	login := func() *http.Cookie {
		t.Helper()
		resp, err := http.Post(srv.URL+"/api/v1/session", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == SessionCookie {
				return c
			}
		}
		t.Fatalf("login: %s, no session cookie", resp.Status)
		return nil
	}
	with := func(method, path string, c *http.Cookie) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.AddCookie(c)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	a, b := login(), login()
	if a.Value == b.Value {
		t.Errorf("two logins got the same session cookie %q", a.Value)
	}
	if a.MaxAge != int(DefaultSessionTTL/time.Second) || !a.HttpOnly || a.SameSite != http.SameSiteStrictMode || strings.Contains(a.Value, key) {
		t.Errorf("session cookie %+v: want Max-Age %d, HttpOnly, SameSite=Strict, no key", a, int(DefaultSessionTTL/time.Second))
	}
	if got := with("GET", "/api/v1/hosts", a); got != 200 {
		t.Errorf("GET hosts with the cookie: %d", got)
	}
	if got := with("GET", "/api/v1/backup", a); got != http.StatusUnauthorized {
		t.Errorf("GET backup with the cookie: %d, want 401 (the backup needs the key itself)", got)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/backup", nil)
	req.Header.Set(APIKeyHeader, key)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET backup with the key: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}

	// Logging out ends a's session; b's goes on.
	if got := with("DELETE", "/api/v1/session", a); got != 200 {
		t.Errorf("logout: %d", got)
	}
	if got := with("GET", "/api/v1/hosts", a); got != http.StatusUnauthorized {
		t.Errorf("GET with the cookie after logging out: %d, want 401", got)
	}
	if got := with("GET", "/api/v1/hosts", b); got != 200 {
		t.Errorf("GET with another session's cookie after a logout: %d", got)
	}

	// A session ends after its TTL.
	now.Add(int64(DefaultSessionTTL - time.Second))
	if got := with("GET", "/api/v1/hosts", b); got != 200 {
		t.Errorf("GET a second before the session expires: %d", got)
	}
	now.Add(int64(2 * time.Second))
	if got := with("GET", "/api/v1/hosts", b); got != http.StatusUnauthorized {
		t.Errorf("GET after the session expired: %d, want 401", got)
	}

	// At most MaxSessions: a fourth login ends the oldest.
	s1 := login()
	now.Add(int64(time.Second))
	s2, s3 := login(), login()
	now.Add(int64(time.Second))
	s4 := login()
	for _, tc := range []struct {
		name string
		c    *http.Cookie
		want int
	}{{"first", s1, 401}, {"second", s2, 200}, {"third", s3, 200}, {"fourth", s4, 200}} {
		if got := with("GET", "/api/v1/hosts", tc.c); got != tc.want {
			t.Errorf("the %s of four sessions (at most 3 kept): %d, want %d", tc.name, got, tc.want)
		}
	}
}

// failingBackup fails after writing written bytes of a backup of size
// bytes (before its first byte when written is 0).
type failingBackup struct {
	store.Store
	size, written int
	err           error
}

func (f failingBackup) WriteBackup(w io.Writer, begin func(int64)) (int64, error) {
	if f.written == 0 {
		return 0, fmt.Errorf("backup: copy: %w", f.err)
	}
	begin(int64(f.size))
	n, err := w.Write(bytes.Repeat([]byte("p"), f.written))
	if err != nil {
		return int64(n), err
	}
	if fl, ok := w.(interface{ Flush() }); ok {
		fl.Flush()
	}
	return int64(n), fmt.Errorf("backup: read copy: %w", f.err)
}

// TestBackupFailures (hole 12): a backup that fails before its first byte
// (a full disk) is answered 507, not 200 with nothing; one that fails
// later cuts the connection, so a plain HTTP client sees an error rather
// than a clean end.
func TestBackupFailures(t *testing.T) {
	st, _ := newStore(t)
	before := serveAPI(t, &Server{Store: failingBackup{Store: st, err: syscall.ENOSPC}})
	status, body, h := getStatus(t, before.URL+"/api/v1/backup")
	if status != http.StatusInsufficientStorage || !strings.Contains(body, "no space left") || h.Get(BackupSizeHeader) != "" {
		t.Errorf("a backup failing before its first byte: %d %q (size header %q), want 507 naming the cause", status, body, h.Get(BackupSizeHeader))
	}
	if _, err := NewClient(before.URL).Backup(io.Discard); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("apd backup of a backup failing at once: %v", err)
	}

	mid := serveAPI(t, &Server{Store: failingBackup{Store: st, size: 1 << 20, written: 64 << 10, err: syscall.EIO}})
	resp, err := http.Get(mid.URL + "/api/v1/backup")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || err == nil {
		t.Errorf("a backup failing after %d bytes: %s, read %d bytes, error %v; want the body to end in an error", 64<<10, resp.Status, n, err)
	}
}

// TestGhostHost (hole 12): naming a host that never sent anything is a
// 404 and makes no host appear; a host that did can be named.
func TestGhostHost(t *testing.T) {
	st, _ := newStore(t)
	commit(t, st, []string{"pi-kitchen"}, "temperature")
	srv := serveAPI(t, &Server{Store: st})
	put := func(host string) (int, string) {
		req, _ := http.NewRequest("PUT", srv.URL+"/api/v1/hosts/"+host, strings.NewReader(`{"name":"Somewhere"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := put("ghost"); status != 404 || !strings.Contains(body, `ghost`) {
		t.Errorf("PUT a host never seen: %d %q, want 404 naming it", status, body)
	}
	if status, body := put("pi-kitchen"); status != 200 {
		t.Errorf("PUT a host seen: %d %q", status, body)
	}
	hosts, err := st.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].Name != "pi-kitchen" || hosts[0].Display != "Somewhere" {
		t.Errorf("hosts after the PUTs: %+v", hosts)
	}
}

// TestDashboardPages (hole 1): with one host of 1,024 sensors beside
// hosts sharing three, the dashboard's sensors come a page at a time,
// the shared ones first; its host list carries counts, not the
// sensors; and no chart or live request may name more than
// MaxChartSensors sensors.
func TestDashboardPages(t *testing.T) {
	st, _ := newStore(t)
	many := make([]string, 1024)
	for i := range many {
		many[i] = fmt.Sprintf("probe_channel_%04d", i)
	}
	commit(t, st, []string{"big"}, many...)
	commit(t, st, []string{"pi-a", "pi-b", "pi-c"}, "temperature", "humidity", "cpu_load")
	srv := serveAPI(t, &Server{Store: st, Now: func() time.Time { return t0 }})

	var page DashboardSensors
	status, body, _ := getStatus(t, srv.URL+"/api/v1/dashboard/sensors")
	if err := json.Unmarshal([]byte(body), &page); status != 200 || err != nil {
		t.Fatalf("sensors: %d %v %.200q", status, err, body)
	}
	if page.Total != 1027 || len(page.Sensors) != DashboardPageSize || page.Offset != 0 {
		t.Errorf("first page: total %d, %d sensors from %d; want 1027, %d from 0", page.Total, len(page.Sensors), page.Offset, DashboardPageSize)
	}
	var first []string
	for _, s := range page.Sensors[:4] {
		first = append(first, fmt.Sprintf("%s:%d", s.Sensor, s.Hosts))
	}
	if got, want := strings.Join(first, ","), "cpu_load:3,humidity:3,temperature:3,probe_channel_0000:1"; got != want {
		t.Errorf("first page starts %s, want %s (most hosts first, then by name)", got, want)
	}
	status, body, _ = getStatus(t, srv.URL+"/api/v1/dashboard/sensors?offset=1020&limit=24")
	_ = json.Unmarshal([]byte(body), &page)
	if status != 200 || len(page.Sensors) != 7 || page.Sensors[6].Sensor != "probe_channel_1023" {
		t.Errorf("last page: %d, %d sensors, %+v", status, len(page.Sensors), page.Sensors)
	}
	if status, _, _ := getStatus(t, srv.URL+"/api/v1/dashboard/sensors?limit=65"); status != 400 {
		t.Errorf("a page of 65: %d, want 400", status)
	}

	status, body, _ = getStatus(t, srv.URL+"/api/v1/dashboard/hosts")
	var hosts []map[string]any
	if err := json.Unmarshal([]byte(body), &hosts); status != 200 || err != nil || len(hosts) != 4 {
		t.Fatalf("dashboard hosts: %d %v, %d hosts", status, err, len(hosts))
	}
	if _, listed := hosts[0]["sensors"]; listed || hosts[0]["sensor_count"] != float64(1024) || len(body) > 4096 {
		t.Errorf("dashboard hosts list sensors: %d bytes, host %v", len(body), hosts[0]["host"])
	}

	series := srv.URL + "/api/v1/series?since=2h"
	for _, s := range many[:MaxChartSensors+1] {
		series += "&sensor=" + s
	}
	if status, body, _ := getStatus(t, series); status != 400 || !strings.Contains(body, "at most 64") {
		t.Errorf("series of 65 sensors: %d %.200q", status, body)
	}
	if status, body, _ := getStatus(t, strings.Replace(series, "/series?", "/chart.png?", 1)); status != 400 {
		t.Errorf("a chart of 65 sensors: %d %.200q", status, body)
	}
	ok := srv.URL + "/api/v1/series?since=2h&sensor=temperature&sensor=probe_channel_0001"
	if status, body, _ := getStatus(t, ok); status != 200 || !strings.Contains(body, `"pi-a"`) {
		t.Errorf("series of two sensors: %d %.200q", status, body)
	}
}

// TestCookieJarLogout: a browser-like client (a cookie jar) is logged out
// by DELETE /api/v1/session and asked for the key again.
func TestCookieJarLogout(t *testing.T) {
	st, _ := newStore(t)
	const key = "0123456789abcdef"
	srv := serveAPI(t, &Server{Store: st, APIKey: []byte(key)})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Post(srv.URL+"/api/v1/session", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, step := range []struct {
		method, path string
		want         int
	}{{"GET", "/api/v1/hosts", 200}, {"DELETE", "/api/v1/session", 200}, {"GET", "/api/v1/hosts", 401}} {
		req, _ := http.NewRequest(step.method, srv.URL+step.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != step.want {
			t.Errorf("%s %s: %d, want %d", step.method, step.path, resp.StatusCode, step.want)
		}
	}
}
