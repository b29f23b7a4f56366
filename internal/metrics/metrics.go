// Package metrics keeps apd's self-metrics and writes them in the
// Prometheus text exposition format. It is deliberately small: counters,
// gauges and fixed-bucket histograms, all lock-free on the hot path.
package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter is a monotonically increasing count.
type Counter struct{ v atomic.Uint64 }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ v atomic.Int64 }

// Set sets the value.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Value returns the value.
func (g *Gauge) Value() int64 { return g.v.Load() }

// Histogram counts observations into fixed upper bounds.
type Histogram struct {
	bounds []float64
	counts []atomic.Uint64 // len(bounds)+1, the last is +Inf
	sum    atomic.Uint64   // float64 bits
	n      atomic.Uint64
}

// NewHistogram returns a histogram with the given increasing upper bounds.
func NewHistogram(bounds ...float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i].Add(1)
	h.n.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Sum returns the sum of observations.
func (h *Histogram) Sum() float64 { return math.Float64frombits(h.sum.Load()) }

type entry struct {
	name, help, kind string
	labels           string
	write            func(w io.Writer, name, labels string)
}

// Registry holds named metrics for exposition. Register metrics at set-up;
// WritePrometheus may run concurrently with updates.
type Registry struct {
	mu      sync.Mutex
	entries []entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

func (r *Registry) add(e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
}

// Labels formats label pairs ("reason", "invalid JSON") for a metric name.
func Labels(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%s", kv[i], strconv.Quote(kv[i+1]))
	}
	return b.String()
}

func series(name, labels string) string {
	if labels == "" {
		return name
	}
	return name + "{" + labels + "}"
}

// Counter registers c under name with optional labels (see Labels).
func (r *Registry) Counter(name, help, labels string, c *Counter) {
	r.add(entry{name, help, "counter", labels, func(w io.Writer, name, labels string) {
		fmt.Fprintf(w, "%s %d\n", series(name, labels), c.Value())
	}})
}

// Gauge registers g under name.
func (r *Registry) Gauge(name, help, labels string, g *Gauge) {
	r.add(entry{name, help, "gauge", labels, func(w io.Writer, name, labels string) {
		fmt.Fprintf(w, "%s %d\n", series(name, labels), g.Value())
	}})
}

// GaugeFunc registers a gauge whose value is computed at exposition.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.add(entry{name, help, "gauge", "", func(w io.Writer, name, _ string) {
		fmt.Fprintf(w, "%s %s\n", name, formatFloat(f()))
	}})
}

// CounterFunc registers a counter whose value is read at exposition (one
// kept elsewhere: the kernel's, a store's).
func (r *Registry) CounterFunc(name, help string, f func() uint64) {
	r.add(entry{name, help, "counter", "", func(w io.Writer, name, _ string) {
		fmt.Fprintf(w, "%s %d\n", name, f())
	}})
}

// Histogram registers h under name.
func (r *Registry) Histogram(name, help string, h *Histogram) {
	r.add(entry{name, help, "histogram", "", func(w io.Writer, name, _ string) {
		var cum uint64
		for i, b := range h.bounds {
			cum += h.counts[i].Load()
			fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", name, formatFloat(b), cum)
		}
		cum += h.counts[len(h.bounds)].Load()
		fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, cum)
		fmt.Fprintf(w, "%s_sum %s\n", name, formatFloat(h.Sum()))
		fmt.Fprintf(w, "%s_count %d\n", name, cum)
	}})
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// WritePrometheus writes every metric in the text exposition format, one
// HELP and TYPE line per name.
func (r *Registry) WritePrometheus(w io.Writer) {
	r.mu.Lock()
	entries := append([]entry(nil), r.entries...)
	r.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range entries {
		if !seen[e.name] {
			seen[e.name] = true
			fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", e.name, e.help, e.name, e.kind)
		}
		e.write(w, e.name, e.labels)
	}
}
