package main_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// These tests attack a running apd serve over HTTP the way a hostile
// review did, and measure what it cost the server.

// peakRSS returns the most resident memory the process has had, in MiB
// (VmHWM).
func peakRSS(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// metric reads one value of the server's /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

// TestHostileNestedWhere (hole 7): ten parallel requests each carrying a
// megabyte of nested parentheses in where are refused before they are
// parsed, and cost the server little memory; a where nested too deep in
// a short URL is a 400 naming the bound.
func TestHostileNestedWhere(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	base := "http://" + s.http
	bomb := base + "/api/v1/query?sensor=temperature&since=1h&where=" + strings.Repeat("(", 520000) + "value>1" + strings.Repeat(")", 520000)
	var wg sync.WaitGroup
	statuses := make([]int, 10)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(bomb)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusRequestHeaderFieldsTooLarge && st != http.StatusRequestURITooLong {
			t.Errorf("request %d of a megabyte of parentheses: %d, want 431 or 414", i, st)
		}
	}
	deep := base + "/api/v1/query?sensor=temperature&since=1h&where=" + url.QueryEscape(strings.Repeat("(", 2000)+"value>1"+strings.Repeat(")", 2000))
	resp, err := http.Get(deep)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "nested more than") {
		t.Errorf("a where nested 2,000 deep: %s %.200q, want 400 naming the bound", resp.Status, body)
	}
	if rss := peakRSS(t, s.cmd.Process.Pid); rss > 150 {
		t.Errorf("apd serve peaked at %.0f MiB resident after ten megabyte-long nested wheres", rss)
	} else {
		t.Logf("apd serve peaked at %.0f MiB resident", rss)
	}
}

// silentWatch opens /api/v1/live on a connection that never reads.
func silentWatch(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := fmt.Fprintf(c, "GET /api/v1/live HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
}

// TestHostileLiveWatchers (hole 8): 64 watchers of the live stream that
// never read, during a flood of readings, hold the server's memory to the
// live stream's byte bound (they took it from 30 to 991 MB), and a
// dashboard that comes while they take every place is let in and gets
// readings.
func TestHostileLiveWatchers(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("floods a server with readings")
	}
	s := startServe(t)
	base := "http://" + s.http
	for range 64 {
		silentWatch(t, s.http)
	}
	testutil.WaitFor(t, "64 watchers", 10*time.Second, func() bool { return metric(t, base, "apd_dashboard_watchers") == 64 })

	// The flood: four devices, each publishing as fast as the broker
	// takes it, 300,000 readings in all, many to a commit.
	const devices, each = 4, 75000
	stamp := time.Now().Add(-time.Hour).UTC()
	var wg sync.WaitGroup
	for d := range devices {
		c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + s.mqtt, ClientID: fmt.Sprintf("flood-%d", d)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ts := stamp.Add(time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
				payload := fmt.Sprintf(`{"v":1,"ts":%q,"value":{"magnitude":%d.25,"unit":"degC"}}`, ts, i%40)
				if err := c.Publish(context.Background(), fmt.Sprintf("apd/flood-%d/s%d", d, i%16), []byte(payload), false); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// Midway a dashboard comes, and reads.
	testutil.WaitFor(t, "the flood stored", 60*time.Second, func() bool { return metric(t, base, "apd_stored_total") > devices*each/2 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/live?sensor=s1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a dashboard while 64 silent watchers take every place: %s", resp.Status)
	}
	got := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
		for sc.Scan() {
			if sc.Text() == "event: readings" {
				got <- true
				return
			}
		}
		got <- false
	}()
	wg.Wait()
	testutil.WaitFor(t, "the flood stored", 60*time.Second, func() bool { return metric(t, base, "apd_stored_total") >= devices*each })
	select {
	case ok := <-got:
		if !ok {
			t.Error("the dashboard's stream ended without readings")
		}
	case <-time.After(10 * time.Second):
		t.Error("the dashboard got no readings during the flood")
	}
	rss := peakRSS(t, s.cmd.Process.Pid)
	t.Logf("apd serve peaked at %.0f MiB resident; %v live events dropped", rss, metric(t, base, "apd_dashboard_events_dropped_total"))
	if rss > 200 {
		t.Errorf("apd serve peaked at %.0f MiB resident with 64 silent watchers during a flood", rss)
	}
}

// TestHostileCharts (hole 9): twenty parallel 4000×4000 PNGs are refused
// for their area; twenty parallel charts of the largest area allowed are
// drawn a few at a time (the rest told to come back) and cost the server
// a bounded amount of memory.
func TestHostileCharts(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	demoDatabase(t, filepath.Join(data, "apd.db"), 6*time.Hour)
	s := startServeIn(t, data)
	base := "http://" + s.http + "/api/v1/chart.png?sensor=temperature&sensor=humidity&since=6h"
	parallel := func(u string) map[int]int {
		var mu sync.Mutex
		counts := map[int]int{}
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Get(u)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && !bytes.HasPrefix(b, []byte("\x89PNG")) {
					t.Errorf("a 200 that is no PNG: %.100q", b)
				}
				if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
					t.Error("a 503 without Retry-After")
				}
				mu.Lock()
				counts[resp.StatusCode]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return counts
	}
	if got := parallel(base + "&width=4000&height=4000"); got[400] != 20 {
		t.Errorf("20 parallel 4000×4000 PNGs: statuses %v, want 20 × 400", got)
	}
	got := parallel(base + "&width=2000&height=2000")
	if got[200] == 0 || got[200]+got[503] != 20 {
		t.Errorf("20 parallel 2000×2000 PNGs: statuses %v, want 200s and 503s", got)
	}
	rss := peakRSS(t, s.cmd.Process.Pid)
	t.Logf("2000×2000 charts: %v; apd serve peaked at %.0f MiB resident", got, rss)
	if rss > 300 {
		t.Errorf("apd serve peaked at %.0f MiB resident drawing charts", rss)
	}
}

// TestHostileSessionCookie (hole 10): every login gets its own session
// cookie, which expires; it does not read the backup; after logging out
// a copy of it opens nothing.
func TestHostileSessionCookie(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "api.key")
	const key = "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--api-key-file", keyFile)
	base := "http://" + s.http
	login := func() *http.Cookie {
		t.Helper()
		resp, err := http.Post(base+"/api/v1/session", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == "apd_session" {
				return c
			}
		}
		t.Fatalf("login: %s, no cookie", resp.Status)
		return nil
	}
	with := func(method, path string, c *http.Cookie) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
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
		t.Errorf("two logins, one cookie: %q", a.Value)
	}
	if a.MaxAge <= 0 || a.MaxAge > 12*3600 {
		t.Errorf("the session cookie's Max-Age is %d s, want an expiry of at most 12 h", a.MaxAge)
	}
	if got := with("GET", "/api/v1/hosts", a); got != 200 {
		t.Errorf("GET hosts with the cookie: %d", got)
	}
	if got := with("GET", "/api/v1/backup", a); got != 401 {
		t.Errorf("GET backup with the cookie: %d, want 401", got)
	}
	if got := with("DELETE", "/api/v1/session", a); got != 200 {
		t.Errorf("logout: %d", got)
	}
	if got := with("GET", "/api/v1/hosts", a); got != 401 {
		t.Errorf("GET hosts with the cookie after logging out: %d, want 401", got)
	}
	if got := with("GET", "/api/v1/hosts", b); got != 200 {
		t.Errorf("GET hosts with the other login's cookie: %d", got)
	}
}

// TestHostileFullDisk (hole 12): on a disk that takes no more (the
// running server's files may not grow: its RLIMIT_FSIZE lowered below
// the database's size), /readyz answers 503 naming the failing commits,
// a backup is an error status rather than 200 with no bytes, and naming
// a host never seen is a 404. When the disk takes writes again, so does
// the server, and it is ready again.
func TestHostileFullDisk(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	db := filepath.Join(data, "apd.db")
	demoDatabase(t, db, 7*24*time.Hour)
	const limit = 64 << 10
	if fi, err := os.Stat(db); err != nil || fi.Size() <= limit {
		t.Fatalf("the database (%v, %v) must be larger than %d bytes", fi, err, limit)
	}
	s := startServeIn(t, data)
	pid := s.cmd.Process.Pid
	var was unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, nil, &was); err != nil {
		t.Skipf("cannot read apd serve's file size limit: %v", err)
	}
	// Only the soft limit: raising it back needs no privilege.
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: was.Max}, nil); err != nil {
		t.Skipf("cannot set apd serve's file size limit: %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &was, nil); err != nil {
				t.Errorf("restore the file size limit: %v", err)
			}
		}
	}
	defer restore()
	httpAddr, mqttAddr := s.http, s.mqtt
	base := "http://" + httpAddr
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + mqttAddr, ClientID: "filler"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 200 {
		payload := fmt.Sprintf(`{"v":1,"ts":%q,"value":%d}`, time.Now().UTC().Add(time.Duration(i)*time.Millisecond).Format("2006-01-02T15:04:05.000Z"), i)
		if err := c.Publish(context.Background(), fmt.Sprintf("apd/pi-new/s%d", i), []byte(payload), false); err != nil {
			t.Fatal(err)
		}
	}
	// Not ready within the commit retry's backoff (checked without
	// failing at once, so that the other checks run too).
	readyStatus, readyBody := 0, ""
	testutil.Eventually(15*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		readyStatus, readyBody = resp.StatusCode, string(b)
		return readyStatus == 503
	})
	if readyStatus != 503 || !strings.Contains(readyBody, "commits are failing") {
		t.Errorf("/readyz while commits fail: %d %q, want 503 naming the reason", readyStatus, readyBody)
	}

	resp, err := http.Get(base + "/api/v1/backup")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Errorf("a backup on a full disk: %s with %d bytes, want a 5xx", resp.Status, len(body))
	} else {
		t.Logf("backup on a full disk: %s %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if r := run(t, nil, "apd", "backup", "--server", base, filepath.Join(t.TempDir(), "b.db")); r.code == 0 {
		t.Errorf("apd backup on a full disk succeeded: %s", r.stdout)
	}

	req, _ := http.NewRequest("PUT", base+"/api/v1/hosts/ghost", strings.NewReader(`{"name":"Ghost"}`))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("PUT a host never seen: %s, want 404", resp.Status)
	}

	// Room again: the held readings are committed and the server is ready.
	restore()
	if err := testutil.Ready(httpAddr, 20*time.Second); err != nil {
		t.Errorf("after the disk took writes again: %v", err)
	}
}

// TestDashboardManySensors (hole 1): one host with 1,024 sensors of its
// own beside the demo fleet: the dashboard draws the fleet's charts,
// with a line per demo host, pages the rest, and never puts more than a
// page of sensors into a URL.
func TestDashboardManySensors(t *testing.T) {
	t.Parallel()
	browser := testutil.StartBrowser(t, 1400, 1300)
	data := t.TempDir()
	db := filepath.Join(data, "apd.db")
	demoDatabase(t, db, 6*time.Hour)
	var b strings.Builder
	now := time.Now().UTC()
	for i := range 1024 {
		for k := range 3 {
			fmt.Fprintf(&b, `{"v":1,"host":"rack-sensors","sensor":"probe_channel_%04d","ts":%q,"value":%d.5}`+"\n",
				i, now.Add(-time.Duration(k*20+5)*time.Minute).Format("2006-01-02T15:04:05.000Z"), (i+k)%50)
		}
	}
	if r := run(t, nil, "apd", "import", "--db", db, writeFile(t, "many.ndjson", b.String())); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	s := startServeIn(t, data)
	base := "http://" + s.http

	browser.Open(base + "/")
	browser.WaitTrue("the fleet's charts", 30*time.Second, `return window.apd && ['temperature', 'humidity', 'cpu_load'].every(s => window.apd.plots.has(s))`)
	var labels map[string][]string
	if err := browser.Eval(&labels, `return Object.fromEntries(['temperature', 'humidity', 'cpu_load'].map(s => [s, window.apd.plots.get(s).series.slice(1).map(x => x.label).sort()]))`); err != nil {
		t.Fatal(err)
	}
	for sensor, l := range labels {
		if got := strings.Join(l, ","); got != "Attic,Garden,Kitchen,pi-cellar" {
			t.Errorf("the %s chart has lines %s, want one per demo host", sensor, got)
		}
	}
	var shown struct {
		Plots int
		Info  string
	}
	_ = browser.Eval(&shown, `return {plots: window.apd.plots.size, info: document.querySelector('#pages').hidden ? '' : document.querySelector('#page-info').textContent}`)
	if shown.Plots > 24 || !strings.HasSuffix(shown.Info, "of 1027") {
		t.Errorf("first page: %d charts, pager %q; want at most 24 and the total of 1027", shown.Plots, shown.Info)
	}
	browser.FitWindow()
	browser.Screenshot(filepath.Join(screenshotDir(t), "dashboard-many-sensors.png"))

	// The next page charts the big host's own sensors.
	_ = browser.Eval(nil, `document.querySelector('#next').click()`)
	browser.WaitTrue("the second page's charts", 30*time.Second, `return window.apd.state.page === 1 && window.apd.plots.size > 0 &&
		[...window.apd.plots.keys()].every(s => s.startsWith('probe_channel_'))`)

	longest := ""
	for _, u := range browser.Requests(base + "/") {
		if len(u) > len(longest) {
			longest = u
		}
	}
	if len(longest) > 4096 {
		t.Errorf("the page requested a URL of %d bytes: %.300s…", len(longest), longest)
	}
	t.Logf("the longest URL the page requested: %d bytes", len(longest))
	for _, line := range browser.Console() {
		if strings.Contains(line, "SEVERE") {
			t.Errorf("browser console: %s", line)
		}
	}
}
