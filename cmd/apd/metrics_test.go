package main_test

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestMetricsExposition: apd serve's /metrics passes Prometheus's own
// linter, holds the Go runtime's and the process's metrics, and every
// count of apd that only grows is a counter named _total (rate() and
// increase() need both; a graph of a count typed gauge never notices a
// restart).
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	s := startServe(t, "--with-publisher", "--interval", "1s", "--host", "me")
	url := "http://" + s.http + "/metrics"
	// The local publisher's spool registers once the broker runs.
	testutil.WaitFor(t, "the local publisher's spool on /metrics", 10*time.Second, func() bool {
		return bytes.Contains(testutil.GetMetrics(t, url), []byte("\napd_spool_dropped_total "))
	})
	body := testutil.GetMetrics(t, url)
	testutil.CheckMetrics(t, body)

	types := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	for _, tc := range []struct{ name, typ string }{
		{"go_goroutines", "gauge"},
		{"go_memstats_alloc_bytes", "gauge"},
		{"go_memstats_heap_inuse_bytes", "gauge"},
		{"go_gc_duration_seconds", "summary"},
		{"process_resident_memory_bytes", "gauge"},
		{"process_cpu_seconds_total", "counter"},
		{"apd_batch_size", "histogram"},
		{"apd_commit_seconds", "histogram"},
		{"apd_received_total", "counter"},
		{"apd_rejected_total", "counter"},
		{"apd_spool_depth", "gauge"},
		// Once gauges named without _total.
		{"apd_dashboard_events_dropped_total", "counter"},
		{"apd_dead_letters_dropped_total", "counter"},
		{"apd_broker_dropped_publishes_total", "counter"},
		{"apd_broker_dropped_inflight_total", "counter"},
		{"apd_broker_dropped_queued_total", "counter"},
		{"apd_spool_dropped_total", "counter"},
	} {
		if got := types[tc.name]; got != tc.typ {
			t.Errorf("%s: got type %q, want %q", tc.name, got, tc.typ)
		}
	}
	for name, typ := range types {
		if !strings.HasPrefix(name, "apd_") {
			continue
		}
		if counter, total := typ == "counter", strings.HasSuffix(name, "_total"); counter != total {
			t.Errorf("%s is typed %s", name, typ)
		}
	}
}
