package dashboard

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// flood returns a commit of n readings of many hosts, about 110 bytes
// each once encoded for a watcher.
func flood(n int) []schema.Reading {
	rs := make([]schema.Reading, n)
	for i := range rs {
		rs[i] = reading(fmt.Sprintf("pi-%05d", i), "temperature", fmt.Sprintf(`{"magnitude":%d.5,"unit":"degC"}`, i%40))
	}
	return rs
}

// silentWatcher opens /api/v1/live on a connection that never reads (its
// receive buffer as small as the kernel allows), the way a hostile
// client holds a stream open.
func silentWatcher(t *testing.T, srv *httptest.Server) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := fmt.Fprintf(c, "GET /api/v1/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestHubMemoryBounded: watchers that never read, during a flood of
// large commits, hold no more than the hub's byte bound (they used to
// hold 64 events each, whatever their size), and a dashboard that comes
// while every place is taken by them is let in, not refused, and gets
// the readings. Not parallel: it measures the heap, which others running
// beside it would grow.
func TestHubMemoryBounded(t *testing.T) {
	const silent = 16
	hub := NewHub(silent)
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close)
	for range silent {
		silentWatcher(t, srv)
	}
	waitWatchers(t, hub, silent)
	before := heapInUse()
	big := flood(2000)
	for range 120 {
		hub.Publish(big)
	}
	grew := int64(heapInUse()) - int64(before)
	t.Logf("heap grew %.1f MiB with %d silent watchers after 120 events of 2,000 readings", float64(grew)/(1<<20), silent)
	if limit := int64(DefaultLiveBytes + 16<<20); grew > limit {
		t.Errorf("heap grew %.1f MiB, want at most %.0f MiB (DefaultLiveBytes and slack)", float64(grew)/(1<<20), float64(limit)/(1<<20))
	}

	// A dashboard that reads comes while every place is taken.
	ch, resp := watch(t, srv, "?sensor=temperature")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a dashboard while silent watchers take every place: %s", resp.Status)
	}
	hub.Publish([]schema.Reading{reading("pi-kitchen", "temperature", "21.5")})
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatal("the dashboard's stream ended")
			}
			if e[0] == "readings" {
				return
			}
		case <-deadline:
			t.Fatal("the dashboard got no readings")
		}
	}
}

// TestHubDropsFurthestBehind: with the total bound full, the events of
// the watchers that stalled are dropped (and they are told to resync),
// never those of a dashboard that keeps up; the bytes waiting never pass
// the bounds.
func TestHubDropsFurthestBehind(t *testing.T) {
	t.Parallel()
	hub := NewHub(8)
	hub.TotalBytes = 2 << 20
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close)
	for range 3 {
		silentWatcher(t, srv)
	}
	waitWatchers(t, hub, 3)
	reader, _ := watch(t, srv, "")
	waitWatchers(t, hub, 4)
	big := flood(2000)
	const events = 80
	for i := range events {
		hub.Publish(big)
		if p := hub.Pending(); p > hub.TotalBytes {
			t.Fatalf("after event %d: %d bytes waiting, bound %d", i, p, hub.TotalBytes)
		}
		// The reader keeps up: it has this event before the next.
		select {
		case e, ok := <-reader:
			if !ok {
				t.Fatalf("event %d: the reader's stream ended", i)
			}
			if e[0] != "readings" {
				t.Fatalf("event %d: the reader, which keeps up, got %q", i, e[0])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d: the reader got nothing", i)
		}
	}
	if hub.Dropped() == 0 {
		t.Error("nothing dropped for three watchers that never read")
	}
	t.Logf("%d events dropped for the silent watchers; %d bytes waiting", hub.Dropped(), hub.Pending())
}
