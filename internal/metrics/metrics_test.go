package metrics

import (
	"runtime"
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// exposition returns what r writes, failing t on an error.
func exposition(t *testing.T, r *Registry) string {
	t.Helper()
	var b strings.Builder
	if err := r.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// apdLines keeps the lines of apd's own metrics.
func apdLines(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "apd_") || strings.HasPrefix(l, "# HELP apd_") || strings.HasPrefix(l, "# TYPE apd_") {
			b.WriteString(l)
		}
	}
	return b.String()
}

func TestWritePrometheus(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	var c Counter
	c.Add(3)
	var rej, other Counter
	rej.Inc()
	var g Gauge
	g.Set(-2)
	h := NewHistogram(1, 10)
	h.Observe(0.5)
	h.Observe(5)
	h.Observe(50)
	r.Counter("apd_received_total", "Messages received.", "", &c)
	r.Counter("apd_rejected_total", "Rejected.", Labels("reason", `bad "json"`), &rej)
	r.Counter("apd_rejected_total", "Rejected.", Labels("reason", "other"), &other)
	r.Gauge("apd_depth", "Depth.", "", &g)
	r.Histogram("apd_batch_size", "Batch sizes.", h)
	r.GaugeFunc("apd_held", "Held.", func() float64 { return 0.25 })
	r.CounterFunc("apd_dropped_total", "Dropped.", func() uint64 { return 12345678 })
	got := exposition(t, r)
	// Families sorted by name, series by labels.
	want := `# HELP apd_batch_size Batch sizes.
# TYPE apd_batch_size histogram
apd_batch_size_bucket{le="1"} 1
apd_batch_size_bucket{le="10"} 2
apd_batch_size_bucket{le="+Inf"} 3
apd_batch_size_sum 55.5
apd_batch_size_count 3
# HELP apd_depth Depth.
# TYPE apd_depth gauge
apd_depth -2
# HELP apd_dropped_total Dropped.
# TYPE apd_dropped_total counter
apd_dropped_total 1.2345678e+07
# HELP apd_held Held.
# TYPE apd_held gauge
apd_held 0.25
# HELP apd_received_total Messages received.
# TYPE apd_received_total counter
apd_received_total 3
# HELP apd_rejected_total Rejected.
# TYPE apd_rejected_total counter
apd_rejected_total{reason="bad \"json\""} 1
apd_rejected_total{reason="other"} 0
`
	if g := apdLines(got); g != want {
		t.Errorf("got\n%s\nwant\n%s", g, want)
	}
	testutil.CheckMetrics(t, []byte(got))
}

// TestRuntimeAndProcessMetrics: a new registry already holds the Go
// runtime's metrics and, where the kernel tells, the process's.
func TestRuntimeAndProcessMetrics(t *testing.T) {
	t.Parallel()
	got := exposition(t, NewRegistry())
	want := []string{"# TYPE go_goroutines gauge", "# TYPE go_memstats_alloc_bytes gauge", "# TYPE go_gc_duration_seconds summary"}
	if runtime.GOOS == "linux" {
		want = append(want, "# TYPE process_resident_memory_bytes gauge", "# TYPE process_cpu_seconds_total counter")
	}
	for _, w := range want {
		if !strings.Contains(got, w+"\n") {
			t.Errorf("no %q in\n%s", w, got)
		}
	}
	if strings.Contains(got, "apd_") {
		t.Errorf("a new registry holds apd metrics:\n%s", got)
	}
}

func TestLabelsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		kv   []string
	}{
		{"none", nil},
		{"one", []string{"reason", "invalid_json"}},
		{"two", []string{"reason", "x", "kind", "y"}},
		{"quotes and commas", []string{"reason", `a "b", c=d`}},
		{"newline and backslash", []string{"reason", "a\nb\\"}},
		{"empty value", []string{"reason", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := parseLabels(Labels(tc.kv...))
			if err != nil {
				t.Fatal(err)
			}
			if len(l) != len(tc.kv)/2 {
				t.Fatalf("got %v, want %q", l, tc.kv)
			}
			for i := 0; i+1 < len(tc.kv); i += 2 {
				if got, want := l[tc.kv[i]], tc.kv[i+1]; got != want {
					t.Errorf("%s: got %q, want %q", tc.kv[i], got, want)
				}
			}
		})
	}
}

// TestRegisterRefuses: what client_golang refuses is a mistake in apd,
// found at registration and not at a scrape.
func TestRegisterRefuses(t *testing.T) {
	t.Parallel()
	var c Counter
	for _, tc := range []struct {
		name     string
		register func(r *Registry)
	}{
		{"same name twice", func(r *Registry) {
			r.Counter("apd_x_total", "X.", "", &c)
			r.Counter("apd_x_total", "X.", "", &c)
		}},
		{"same name, other type", func(r *Registry) {
			r.Counter("apd_x_total", "X.", "", &c)
			r.GaugeFunc("apd_x_total", "X.", func() float64 { return 0 })
		}},
		{"same name, other help", func(r *Registry) {
			r.Counter("apd_x_total", "X.", Labels("reason", "a"), &c)
			r.Counter("apd_x_total", "Y.", Labels("reason", "b"), &c)
		}},
		{"a runtime metric's name", func(r *Registry) {
			r.GaugeFunc("go_goroutines", "Mine.", func() float64 { return 0 })
		}},
		{"invalid name", func(r *Registry) { r.GaugeFunc("", "X.", func() float64 { return 0 }) }},
		{"malformed labels", func(r *Registry) { r.Counter("apd_x_total", "X.", `reason=unquoted`, &c) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("registered")
				}
			}()
			tc.register(NewRegistry())
		})
	}
}
