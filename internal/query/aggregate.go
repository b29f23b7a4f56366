package query

import (
	"slices"
	"strings"

	"github.com/apd-telemetry/apd/schema"
)

// Aggregate accumulates the numeric readings of one series in one window
// (--agg NAME [--every D]) and gives the window's result.
type Aggregate interface {
	// Add takes a reading and its numeric value (a quantity's magnitude,
	// a bool as 0/1), in time order.
	Add(r *schema.Reading, v float64)
	// Result is the window's aggregate: a value, or one of the readings
	// themselves (min, max, first, last), which without --every keep
	// their own time: `--agg max` tells when it was hottest.
	Result() AggregateResult
}

// AggregateResult is an aggregate's outcome: Reading when the aggregate
// picks one, else Value in the readings' unit (none when Unitless).
type AggregateResult struct {
	Value   float64
	Reading *schema.Reading
}

// SumAggregate is an Aggregate whose result follows from the count and
// the sum of the readings alone (a mean, a sum, a count): it can also take
// readings it never sees one by one, as the sums of periods an engine
// keeps (store.Summarizer), and give the same result as if it had. The
// pipeline answers such an aggregate from those sums where it can.
type SumAggregate interface {
	Aggregate
	// AddSum takes count readings whose values sum to sum.
	AddSum(count uint64, sum float64)
}

// Aggregation describes an aggregate for --agg: its name, a line of help
// and how to start one window of it.
type Aggregation struct {
	Name string
	Help string
	// Unitless results are plain numbers (a count), not quantities in the
	// readings' unit.
	Unitless bool
	New      func() Aggregate
}

// FromSums reports whether the aggregate's windows can be answered from
// the sums of periods: whether it makes SumAggregates.
func (a Aggregation) FromSums() bool {
	if a.New == nil {
		return false
	}
	_, ok := a.New().(SumAggregate)
	return ok
}

// aggregations holds the aggregates by name, filled once by the init
// functions of this package's files (one file per aggregate) and only
// read after.
var aggregations = map[string]Aggregation{}

func registerAggregation(a Aggregation) {
	if _, dup := aggregations[a.Name]; dup {
		panic("query: aggregate " + a.Name + " registered twice")
	}
	aggregations[a.Name] = a
}

// Aggregations returns every aggregate, by name.
func Aggregations() []Aggregation {
	out := make([]Aggregation, 0, len(aggregations))
	for _, a := range aggregations {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Aggregation) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// AggregateNames returns the names of every aggregate, sorted.
func AggregateNames() []string {
	var names []string
	for _, a := range Aggregations() {
		names = append(names, a.Name)
	}
	return names
}
