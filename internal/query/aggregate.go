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
