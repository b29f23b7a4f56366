package query

import "github.com/apd-telemetry/apd/schema"

// The built-in aggregates that keep running totals or pick a reading.

func init() {
	registerAggregation(Aggregation{Name: "min", Help: "the lowest reading", New: func() Aggregate { return &pick{better: func(v, best float64) bool { return v < best }} }})
	registerAggregation(Aggregation{Name: "max", Help: "the highest reading", New: func() Aggregate { return &pick{better: func(v, best float64) bool { return v > best }} }})
	registerAggregation(Aggregation{Name: "first", Help: "the earliest reading", New: func() Aggregate { return &pick{better: func(float64, float64) bool { return false }} }})
	registerAggregation(Aggregation{Name: "last", Help: "the latest reading", New: func() Aggregate { return &pick{better: func(float64, float64) bool { return true }} }})
	registerAggregation(Aggregation{Name: "avg", Help: "the mean", New: func() Aggregate { return &total{mean: true} }})
	registerAggregation(Aggregation{Name: "sum", Help: "the sum", New: func() Aggregate { return &total{} }})
	registerAggregation(Aggregation{Name: "count", Help: "how many", Unitless: true, New: func() Aggregate { return &total{count: true} }})
}

// pick keeps the reading its better function prefers (the first when none
// is better).
type pick struct {
	better func(v, best float64) bool
	best   float64
	r      schema.Reading
	any    bool
}

func (p *pick) Add(r *schema.Reading, v float64) {
	if !p.any || p.better(v, p.best) {
		p.best, p.r, p.any = v, *r, true
	}
}

func (p *pick) Result() AggregateResult { return AggregateResult{Value: p.best, Reading: &p.r} }

// total sums, counts or averages.
type total struct {
	mean, count bool
	n           int
	sum         float64
}

func (t *total) Add(_ *schema.Reading, v float64) { t.n++; t.sum += v }

// AddSum implements SumAggregate.
func (t *total) AddSum(n uint64, sum float64) { t.n += int(n); t.sum += sum }

func (t *total) Result() AggregateResult {
	switch {
	case t.count:
		return AggregateResult{Value: float64(t.n)}
	case t.mean:
		return AggregateResult{Value: t.sum / float64(t.n)}
	}
	return AggregateResult{Value: t.sum}
}
