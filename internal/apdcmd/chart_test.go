package apdcmd

import (
	"testing"

	"github.com/apd-telemetry/apd/internal/chart"
)

// TestChartSummary: apd chart's last line counts in the right plural.
func TestChartSummary(t *testing.T) {
	t.Parallel()
	panel := func(lines int) chart.Panel { return chart.Panel{Series: make([]chart.Series, lines)} }
	for _, tc := range []struct {
		name string
		fig  chart.Figure
		want string
	}{
		{"one of each", chart.Figure{Width: 1200, Height: 700, Panels: []chart.Panel{panel(1)}, Map: &chart.Map{Hosts: make([]chart.MapHost, 1)}},
			"1200×700, 1 chart, 1 line"},
		{"several", chart.Figure{Width: 800, Height: 600, Panels: []chart.Panel{panel(3), panel(1)}, Map: &chart.Map{Hosts: make([]chart.MapHost, 2)}},
			"800×600, 2 charts, 4 lines"},
		{"none", chart.Figure{Width: 800, Height: 600, Panels: []chart.Panel{panel(0)}}, "800×600, 1 chart, 0 lines"},
		{"a map alone", chart.Figure{Width: 800, Height: 600, Map: &chart.Map{}}, "800×600, 0 charts, 0 lines"},
	} {
		if got := chartSummary(&tc.fig); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
