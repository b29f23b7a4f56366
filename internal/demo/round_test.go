package demo

import (
	"strconv"
	"testing"
)

// TestRoundPrintsShort: rounded values print as the decimals they are
// rounded to, as a payload shows them.
func TestRoundPrintsShort(t *testing.T) {
	tests := []struct {
		x, step float64
		want    string
	}{
		{0.0430001, 0.001, "0.043"},
		{21.349, 0.1, "21.3"},
		{0.7, 0.1, "0.7"},
		{5942437000, 4096, "5942435840"},
		{-3.25, 0.1, "-3.3"},
	}
	for _, tc := range tests {
		if got := strconv.FormatFloat(round(tc.x, tc.step), 'f', -1, 64); got != tc.want {
			t.Errorf("round(%v, %v) = %s, want %s", tc.x, tc.step, got, tc.want)
		}
	}
}
