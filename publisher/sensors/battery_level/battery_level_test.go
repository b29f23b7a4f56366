package battery_level

import (
	"context"
	"testing"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func TestFixtures(t *testing.T) {
	tests := []struct {
		tree, supply string
		want         float64
		kind         schema.ErrorKind
	}{
		{"laptop-on-mains", "", 87, ""},
		{"laptop-on-battery", "", 42, ""},
		{"laptop-on-battery", "BAT0", 42, ""},
		{"laptop-on-battery", "BAT1", 0, schema.Persistent},
		{"ups-hat", "", 100, ""},
		{"desktop", "", 0, schema.Persistent},
	}
	for _, tc := range tests {
		t.Run(tc.tree+"/"+tc.supply, func(t *testing.T) {
			s, _ := New(publisher.Env{Root: "../testdata/power_supply/" + tc.tree, Params: map[string]any{"supply": tc.supply}})
			v, err := s.Read(context.Background())
			if tc.kind != "" {
				if publisher.KindOf(err) != tc.kind {
					t.Fatalf("err = %v, want %s", err, tc.kind)
				}
				return
			}
			if err != nil || v != (schema.Quantity{Magnitude: tc.want, Unit: "percent"}) {
				t.Fatalf("got %v, %v; want %v%%", v, err, tc.want)
			}
		})
	}
}
