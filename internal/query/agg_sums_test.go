package query

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// TestWhichAggregatesTakeSums: the aggregates that say they can be
// answered from period sums (SumAggregate) take the summarized path
// where the engine keeps sums; the others read every reading. Every
// registered aggregate is in the table, so a new one states which it is.
func TestWhichAggregatesTakeSums(t *testing.T) {
	tests := []struct {
		agg      string
		fromSums bool
	}{
		{"avg", true},
		{"sum", true},
		{"count", true},
		{"min", false},
		{"max", false},
		{"first", false},
		{"last", false},
		{"median", false},
	}
	var listed []string
	for _, tc := range tests {
		listed = append(listed, tc.agg)
		t.Run(tc.agg, func(t *testing.T) {
			a, ok := aggregations[tc.agg]
			if !ok {
				t.Fatalf("%s is not a registered aggregate", tc.agg)
			}
			if got := a.FromSums(); got != tc.fromSums {
				t.Errorf("FromSums() = %v, want %v", got, tc.fromSums)
			}
			src := &countingSummarizer{}
			q := store.Query{Sensor: "temperature", Since: sumsStart, Until: sumsStart.Add(time.Hour)}
			if err := Execute(src, q, Spec{Agg: tc.agg, Every: "15m"}, func(*schema.Reading) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if gotSums := src.summarized > 0; gotSums != tc.fromSums || src.summarized+src.scanned != 1 {
				t.Errorf("--agg %s --every 15m: %d summarized scans, %d reading scans; want the summarized path %v",
					tc.agg, src.summarized, src.scanned, tc.fromSums)
			}
		})
	}
	slices.Sort(listed)
	if registered := AggregateNames(); !slices.Equal(listed, registered) {
		t.Errorf("aggregates in the table %v, registered %v: add the new one to the table", listed, registered)
	}
}

// TestSummarizedPathConditions: even an aggregate that sums answer takes
// the summarized path only over readings as stored, in windows of whole
// periods.
func TestSummarizedPathConditions(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want bool
	}{
		{"whole periods", Spec{Agg: "avg", Every: "1h"}, true},
		{"one period", Spec{Agg: "count", Every: "15m"}, true},
		{"windows not of whole periods", Spec{Agg: "avg", Every: "10m"}, false},
		{"no window", Spec{Agg: "sum"}, false},
		{"a condition", Spec{Agg: "avg", Every: "1h", Where: "value > 3"}, false},
		{"a conversion", Spec{Agg: "avg", Every: "1h", Unit: "degF"}, false},
		{"a cleaner", Spec{Agg: "avg", Every: "1h", Clean: "passthrough"}, false},
		{"no aggregate", Spec{}, false},
		{"an aggregate sums cannot answer", Spec{Agg: "max", Every: "1h"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.spec.Compile(sumsStart)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.summable(); got != tc.want {
				t.Errorf("summable() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSummarizedPathByCapability: the path follows what the aggregate
// makes, not its name: an unregistered aggregate under another name that
// makes SumAggregates takes it, and one that does not, even named avg,
// does not.
func TestSummarizedPathByCapability(t *testing.T) {
	tests := []struct {
		name string
		aggr Aggregation
		want bool
	}{
		{"a SumAggregate under a new name", Aggregation{Name: "mean2", New: func() Aggregate { return &total{mean: true} }}, true},
		{"avg that keeps its values", Aggregation{Name: "avg", New: func() Aggregate { return &median{} }}, false},
		{"no constructor", Aggregation{Name: "none"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pipeline{agg: tc.aggr.Name, aggr: tc.aggr, every: time.Hour}
			if got := p.summable(); got != tc.want {
				t.Errorf("summable() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSumAggregatesAgree: a SumAggregate given some readings one by one
// and the rest as their count and sum gives what it gives when it sees
// them all.
func TestSumAggregatesAgree(t *testing.T) {
	values := []float64{21.5, 19, 22.25, -3, 0, 18}
	for _, a := range Aggregations() {
		if !a.FromSums() {
			continue
		}
		t.Run(a.Name, func(t *testing.T) {
			for split := 0; split <= len(values); split++ {
				each, mixed := a.New(), a.New().(SumAggregate)
				var sum float64
				for i, v := range values {
					r := &schema.Reading{Time: sumsStart.Add(time.Duration(i) * time.Minute), Value: json.RawMessage("0")}
					each.Add(r, v)
					if i < split {
						mixed.Add(r, v)
					} else {
						sum += v
					}
				}
				mixed.AddSum(uint64(len(values)-split), sum)
				if got, want := mixed.Result().Value, each.Result().Value; got != want {
					t.Errorf("first %d one by one, the rest as a sum: %v, want %v", split, got, want)
				}
			}
		})
	}
}

// countingSummarizer is an engine that keeps sums and holds nothing: it
// counts which of its scans the pipeline asked for.
type countingSummarizer struct {
	store.Reader
	scanned, summarized int
}

func (c *countingSummarizer) Scan(store.Query, func(*schema.Reading) error) error {
	c.scanned++
	return nil
}

func (c *countingSummarizer) ScanSummarized(store.Query, func(*store.Part) error) error {
	c.summarized++
	return nil
}

var sumsStart = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
