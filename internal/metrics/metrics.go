// Package metrics keeps apd's self-metrics and exposes them, beside the Go
// runtime's and the process's, through the Prometheus client library
// (client_golang): its registry checks every metric's name, type and
// labels when it is registered, and its encoder writes the text
// exposition format.
//
// apd's own values live in the small types here (Counter, Gauge,
// Histogram), usable at their zero value and lock-free on the hot path,
// because apd reads them back itself (the progress log, readiness, tests)
// and client_golang's metric types give their value only as a protobuf.
// A registry collects them at each scrape as client_golang's
// function-backed metrics. A registry is passed to whoever registers: the
// library's default registry is never used.
package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
)

// Counter is a count that only grows. Its name ends in _total.
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

// Registry holds named metrics for exposition, the Go runtime's (go_*)
// and the process's (process_*) included. Register metrics at set-up;
// WritePrometheus may run concurrently with updates.
//
// The registering methods panic on a metric client_golang refuses — an
// invalid name, or a name registered twice with the same labels or with a
// different type, help or label names — as its MustRegister does: each is
// a mistake in apd that any test exposing the metrics finds.
type Registry struct {
	reg *prometheus.Registry
}

// NewRegistry returns a registry holding only the runtime and process
// metrics.
func NewRegistry() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{reg: reg}
}

func (r *Registry) register(name string, c prometheus.Collector) {
	if err := r.reg.Register(c); err != nil {
		panic(fmt.Sprintf("metrics: register %s: %v", name, err))
	}
}

// Labels formats label pairs ("reason", "invalid JSON") for a metric's
// labels argument.
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

// parseLabels reads what Labels wrote back into pairs.
func parseLabels(s string) (prometheus.Labels, error) {
	if s == "" {
		return nil, nil
	}
	out := prometheus.Labels{}
	for rest := s; rest != ""; {
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			return nil, fmt.Errorf("labels %q: no = after %q", s, rest)
		}
		quoted, err := strconv.QuotedPrefix(after)
		if err != nil {
			return nil, fmt.Errorf("labels %q: value of %s: %w", s, name, err)
		}
		v, _ := strconv.Unquote(quoted) // QuotedPrefix vouched for it
		out[name] = v
		rest = after[len(quoted):]
		if rest != "" {
			if rest[0] != ',' {
				return nil, fmt.Errorf("labels %q: %q after the value of %s", s, rest, name)
			}
			rest = rest[1:]
		}
	}
	return out, nil
}

// Counter registers c under name with optional labels (see Labels). The
// same name may be registered again with other label values and the same
// help.
func (r *Registry) Counter(name, help, labels string, c *Counter) {
	l, err := parseLabels(labels)
	if err != nil {
		panic(fmt.Sprintf("metrics: register %s: %v", name, err))
	}
	r.register(name, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: l},
		func() float64 { return float64(c.Value()) }))
}

// Gauge registers g under name with optional labels (see Labels).
func (r *Registry) Gauge(name, help, labels string, g *Gauge) {
	l, err := parseLabels(labels)
	if err != nil {
		panic(fmt.Sprintf("metrics: register %s: %v", name, err))
	}
	r.register(name, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: l},
		func() float64 { return float64(g.Value()) }))
}

// GaugeFunc registers a gauge whose value is computed at exposition.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.register(name, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter whose value is read at exposition (one
// kept elsewhere: the kernel's, a store's, the broker's). f must never
// return less than it did before, but for a restart of what keeps it.
func (r *Registry) CounterFunc(name, help string, f func() uint64) {
	r.register(name, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
		func() float64 { return float64(f()) }))
}

// Histogram registers h under name.
func (r *Registry) Histogram(name, help string, h *Histogram) {
	r.register(name, histogramCollector{desc: prometheus.NewDesc(name, help, nil, nil), h: h})
}

// histogramCollector exposes a Histogram as a client_golang histogram.
type histogramCollector struct {
	desc *prometheus.Desc
	h    *Histogram
}

func (c histogramCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c histogramCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	buckets := make(map[float64]uint64, len(h.bounds))
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		buckets[b] = cum
	}
	// The count is the buckets' total, not h.n, so that an observation
	// landing mid-scrape cannot leave +Inf below the highest bound.
	cum += h.counts[len(h.bounds)].Load()
	ch <- prometheus.MustNewConstHistogram(c.desc, cum, h.Sum(), buckets)
}

// WritePrometheus writes every metric in the text exposition format
// (version 0.0.4), families sorted by name. A metric that fails to
// collect is left out and named in the error; the rest are written.
func (r *Registry) WritePrometheus(w io.Writer) error {
	families, gatherErr := r.reg.Gather()
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return fmt.Errorf("write metric %s: %w", f.GetName(), err)
		}
	}
	if gatherErr != nil {
		return fmt.Errorf("gather metrics: %w", gatherErr)
	}
	return nil
}
