package query

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

var base = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// series returns one reading per 20 minutes from 12:00 for each host, with
// the given degC values, ordered by host then time as a store scan is.
func series(values map[string][]float64) []schema.Reading {
	var out []schema.Reading
	for _, host := range []string{"a", "b"} {
		for i, v := range values[host] {
			out = append(out, schema.Reading{Host: host, Sensor: "temperature", Seq: uint64(i + 1),
				Time: base.Add(time.Duration(i) * 20 * time.Minute), Value: schema.Quantity{Magnitude: v, Unit: "degC"}.Raw()})
		}
	}
	return out
}

func run(t *testing.T, spec Spec, in []schema.Reading) []string {
	t.Helper()
	p, err := spec.Compile(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	scan := func(fn func(*schema.Reading) error) error {
		for i := range in {
			r := in[i]
			if err := fn(&r); err != nil {
				return err
			}
		}
		return nil
	}
	err = p.Run(scan, func(r *schema.Reading) error {
		got = append(got, fmt.Sprintf("%s %s %s", r.Host, r.Time.Format("15:04"), r.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestPipeline(t *testing.T) {
	in := series(map[string][]float64{"a": {20, 22, 27, 30, 10, 11}, "b": {5}})
	in = append(in, schema.Reading{Host: "b", Sensor: "temperature", Time: base.Add(time.Hour),
		Error: &schema.SampleError{Kind: schema.Intermittent, Message: "checksum"}})
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{"pass through", Spec{Limit: 2}, []string{`a 12:00 {"magnitude":20,"unit":"degC"}`, `a 12:20 {"magnitude":22,"unit":"degC"}`}},
		{"where", Spec{Where: "value > 25"}, []string{`a 12:40 {"magnitude":27,"unit":"degC"}`, `a 13:00 {"magnitude":30,"unit":"degC"}`}},
		{"unit then where", Spec{Unit: "degF", Where: "value < 42"}, []string{`b 12:00 {"magnitude":41,"unit":"degF"}`}},
		{"avg every hour", Spec{Agg: "avg", Every: "1h"}, []string{
			`a 12:00 {"magnitude":23,"unit":"degC"}`, `a 13:00 {"magnitude":17,"unit":"degC"}`, `b 12:00 {"magnitude":5,"unit":"degC"}`}},
		{"max tells when", Spec{Agg: "max"}, []string{`a 13:00 {"magnitude":30,"unit":"degC"}`, `b 12:00 {"magnitude":5,"unit":"degC"}`}},
		{"min every hour", Spec{Agg: "min", Every: "1h"}, []string{
			`a 12:00 {"magnitude":20,"unit":"degC"}`, `a 13:00 {"magnitude":10,"unit":"degC"}`, `b 12:00 {"magnitude":5,"unit":"degC"}`}},
		{"count skips errors", Spec{Agg: "count"}, []string{`a 12:00 6`, `b 12:00 1`}},
		{"sum every 40m", Spec{Agg: "sum", Every: "40m"}, []string{
			`a 12:00 {"magnitude":42,"unit":"degC"}`, `a 12:40 {"magnitude":57,"unit":"degC"}`, `a 13:20 {"magnitude":21,"unit":"degC"}`,
			`b 12:00 {"magnitude":5,"unit":"degC"}`}},
		{"first and last", Spec{Agg: "last"}, []string{`a 13:40 {"magnitude":11,"unit":"degC"}`, `b 12:00 {"magnitude":5,"unit":"degC"}`}},
		{"where then agg", Spec{Where: "value >= 20", Agg: "avg"}, []string{`a 12:00 {"magnitude":24.75,"unit":"degC"}`}},
		{"limit on aggregates", Spec{Agg: "avg", Every: "1h", Limit: 1}, []string{`a 12:00 {"magnitude":23,"unit":"degC"}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, tc.spec, in)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestConvertVectors(t *testing.T) {
	for _, tc := range []struct {
		c    float64
		want string
	}{{21, "69.8"}, {-40, "-40"}, {21.2, "70.16"}} {
		r := schema.Reading{Sensor: "temperature", Value: schema.Quantity{Magnitude: tc.c, Unit: "degC"}.Raw()}
		convert(&r, "degF")
		if want := `{"magnitude":` + tc.want + `,"unit":"degF"}`; string(r.Value) != want {
			t.Errorf("%v °C → %s, want %s", tc.c, r.Value, want)
		}
	}
}

func TestSpecErrors(t *testing.T) {
	for _, s := range []Spec{{Unit: "furlong"}, {Where: "value >"}, {Agg: "no_such_aggregate"}, {Every: "1h"}, {Agg: "avg", Every: "soon"}} {
		if _, err := s.Compile(time.Time{}); err == nil {
			t.Errorf("%+v compiled", s)
		}
	}
}
