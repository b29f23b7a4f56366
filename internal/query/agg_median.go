package query

import (
	"slices"

	"github.com/apd-telemetry/apd/schema"
)

func init() {
	registerAggregation(Aggregation{Name: "median", Help: "the middle value", New: func() Aggregate { return &median{} }})
}

// median keeps a window's values: the middle one, or the mean of the two
// middle ones, is robust to a sensor's spikes where avg is not.
type median struct{ values []float64 }

func (m *median) Add(_ *schema.Reading, v float64) { m.values = append(m.values, v) }

func (m *median) Result() AggregateResult {
	slices.Sort(m.values)
	n := len(m.values)
	if n%2 == 1 {
		return AggregateResult{Value: m.values[n/2]}
	}
	return AggregateResult{Value: (m.values[n/2-1] + m.values[n/2]) / 2}
}
