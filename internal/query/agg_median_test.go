package query

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

func TestMedian(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		values []float64
		want   string
	}{
		{[]float64{21}, `{"magnitude":21,"unit":"degC"}`},
		{[]float64{21, 85, 20}, `{"magnitude":21,"unit":"degC"}`}, // a spike does not move it
		{[]float64{20, 22, 21, 23}, `{"magnitude":21.5,"unit":"degC"}`},
	}
	for _, tc := range tests {
		var in []schema.Reading
		for i, v := range tc.values {
			in = append(in, schema.Reading{Host: "pi", Sensor: "temperature", Time: t0.Add(time.Duration(i) * time.Minute),
				Value: json.RawMessage(fmt.Sprintf(`{"magnitude":%g,"unit":"degC"}`, v))})
		}
		p, err := Spec{Agg: "median", Every: "1h"}.Compile(time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var out []schema.Reading
		err = p.Run(func(fn func(*schema.Reading) error) error {
			for i := range in {
				if err := fn(&in[i]); err != nil {
					return err
				}
			}
			return nil
		}, func(r *schema.Reading) error { out = append(out, *r); return nil })
		if err != nil || len(out) != 1 || string(out[0].Value) != tc.want {
			t.Errorf("median of %v: %v %+v; want %s", tc.values, err, out, tc.want)
		}
	}
}
