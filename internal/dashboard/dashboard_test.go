package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

func reading(host, sensor string, v string) schema.Reading {
	return schema.Reading{Host: host, Sensor: sensor, Time: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), Value: json.RawMessage(v)}
}

// events reads server-sent events (name and data) from r into a channel.
func events(r io.Reader) <-chan [2]string {
	ch := make(chan [2]string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), 8<<20) // an event of MaxPerEvent readings is one long line
		var name, data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if name != "" {
					ch <- [2]string{name, data}
				}
				name, data = "", ""
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

func watch(t *testing.T, srv *httptest.Server, query string) (<-chan [2]string, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/live"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return events(resp.Body), resp
}

// waitWatchers waits until n watchers are registered.
func waitWatchers(t *testing.T, hub *Hub, n int) {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf("%d watchers", n), 5*time.Second, func() bool { return hub.Watchers() >= n })
}

func next(t *testing.T, ch <-chan [2]string) [2]string {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return [2]string{}
}

// TestHub: watchers get the readings of their sensors, numbers as
// numbers and others as null; a watcher past the limit takes the place
// of the one watching longest (none is behind), which is told to resync
// and let go.
func TestHub(t *testing.T) {
	t.Parallel()
	hub := NewHub(2)
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close) // after the watchers' cleanups end their streams
	first, _ := watch(t, srv, "")
	waitWatchers(t, hub, 1)
	temps, resp := watch(t, srv, "?sensor=temperature")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	waitWatchers(t, hub, 2)
	all, third := watch(t, srv, "")
	if third.StatusCode != http.StatusOK {
		t.Errorf("a third watcher of two: %s", third.Status)
	}
	if e := next(t, first); e[0] != "resync" {
		t.Errorf("the watcher let go got %v, want a resync", e)
	}
	if e, open := <-first; open {
		t.Errorf("the stream of the watcher let go goes on: %v", e)
	}
	if hub.Watchers() != 2 || hub.Evicted() != 1 {
		t.Errorf("%d watchers, %d let go; want 2 and 1", hub.Watchers(), hub.Evicted())
	}
	hub.Publish([]schema.Reading{reading("pi", "temperature", `{"magnitude":21.5,"unit":"degC"}`), reading("pi", "version", `"1.2"`)})
	e := next(t, temps)
	var got []LiveReading
	if err := json.Unmarshal([]byte(e[1]), &got); err != nil || e[0] != "readings" {
		t.Fatalf("event %v: %v", e, err)
	}
	if len(got) != 1 || got[0].V == nil || *got[0].V != 21.5 || got[0].Human != "21.5 °C (70.7 °F)" || got[0].T != 1796126400 {
		t.Errorf("temperature watcher got %+v", got)
	}
	e = next(t, all)
	got = nil
	_ = json.Unmarshal([]byte(e[1]), &got)
	if len(got) != 2 || got[1].V != nil || got[1].Sensor != "version" {
		t.Errorf("watcher of all got %s", e[1])
	}
}

// TestHubSlowWatcher: a watcher that does not read loses events, never
// blocks Publish, and is told to fetch again. Not parallel: it times
// Publish, which others running beside it would slow.
func TestHubSlowWatcher(t *testing.T) {
	hub := NewHub(4)
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close) // after the watchers' cleanups end their streams
	// A watcher that reads nothing until the publishing is done.
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET /api/v1/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitWatchers(t, hub, 1)
	big := make([]schema.Reading, 200)
	for i := range big {
		big[i] = reading("pi", "cpu_load", "0.5")
	}
	// About 7 MB: more than the watcher's bound and the sockets hold.
	start := time.Now()
	for range 500 {
		hub.Publish(big)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("publishing to a watcher that does not read took %s", d)
	}
	if hub.Dropped() == 0 {
		t.Fatal("nothing dropped for a watcher that does not read")
	}
	// It reads at last: what was kept, then the resync.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	sawResync := false
	for e := range events(resp.Body) {
		if e[0] == "resync" {
			sawResync = true
			break
		}
	}
	if !sawResync {
		t.Error("no resync after dropped events")
	}
}

// TestHandlerCSP: the page and its assets come with the policy, and no
// directory is listed.
func TestHandlerCSP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, path := range []string{"/", "/ui/app.js", "/ui/vendor/uplot/uPlot.iife.min.js", "/ui/style.css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) == 0 || resp.Header.Get("Content-Security-Policy") != CSP {
			t.Errorf("%s: %s, %d bytes, CSP %q", path, resp.Status, len(b), resp.Header.Get("Content-Security-Policy"))
		}
	}
	for _, path := range []string{"/ui/", "/ui/vendor/", "/nope"} {
		resp, _ := http.Get(srv.URL + path)
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s: %s", path, resp.Status)
		}
	}
	if !strings.Contains(CSP, "default-src 'none'") || strings.Contains(CSP, "http") || strings.Contains(CSP, "unsafe") {
		t.Errorf("the policy allows more than the server: %s", CSP)
	}
}
