package chart

import (
	"math"
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/schema"
)

// TestValueAxis: the ticks of a value axis are round in the unit they
// are written in, carry that unit, cover the range, and are never two
// equal labels — for bytes, percentages, durations, large and small
// numbers, negative ranges, a flat series and a single point.
func TestValueAxis(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		lo, hi float64
		n      int
		unit   string
		want   string // the labels, | apart; "" checks only the rules
	}{
		{"RAM in GiB (24.7–24.9 GB)", 24.7e9, 24.9e9, 5, "B", "23.00 GiB|23.05 GiB|23.10 GiB|23.15 GiB|23.20 GiB"},
		{"RAM over half a GiB steps", 24.2e9, 26.1e9, 5, "B", "22.5 GiB|23.0 GiB|23.5 GiB|24.0 GiB|24.5 GiB"},
		{"RAM from zero", 0, 1.5e9, 4, "B", "0.0 GiB|0.5 GiB|1.0 GiB|1.5 GiB"},
		{"a disk in TiB", 1.2e12, 3.9e12, 4, "B", "1.0 TiB|2.0 TiB|3.0 TiB|4.0 TiB"},
		{"whole bytes", 100, 700, 3, "B", "0 B|200 B|400 B|600 B|800 B"},
		{"a few bytes", 3, 4, 5, "B", "3 B|4 B"},
		{"bytes narrow and far from zero", 24.8e9, 24.8e9 + 3000, 4, "B", ""},
		{"a ratio as percent", 12, 12.5, 5, "percent", "12.0%|12.1%|12.2%|12.3%|12.4%|12.5%"},
		{"percent", 4, 96, 5, "percent", "0%|20%|40%|60%|80%|100%"},
		{"a day of seconds", 0, 86400, 4, "s", "0|6h|12h|18h|1d"},
		{"uptime over a day, far from zero", 40 * 86400, 41 * 86400, 4, "s", "40d|40d 6h|40d 12h|40d 18h|41d"},
		{"minutes", 30, 570, 5, "s", "0|2m|4m|6m|8m|10m"},
		{"seconds", 2, 50, 5, "s", "0|10s|20s|30s|40s|50s"},
		{"a month", 0, 30 * 86400, 4, "s", "0|14d|28d|42d"},
		{"milliseconds", 0.0012, 0.0043, 4, "s", "1 ms|2 ms|3 ms|4 ms|5 ms"},
		{"negative durations", -3600, 1800, 4, "s", "-1h|-30m|0|30m"},
		{"large numbers", 2.8e7, 3.2e7, 4, "", "28M|29M|30M|31M|32M"},
		{"thousands stay as they are", 0, 2300, 4, "", "0|1000|2000|3000"},
		{"tens of thousands take k", 12000, 56000, 4, "", "0|20k|40k|60k"},
		{"small numbers", 1e-5, 3e-5, 4, "", "10µ|15µ|20µ|25µ|30µ"},
		{"small currents", 1e-5, 3e-5, 4, "A", "10 µA|15 µA|20 µA|25 µA|30 µA"},
		{"kilowatts", 0, 2300, 4, "W", "0 kW|1 kW|2 kW|3 kW"},
		{"a counter near 10⁹ moving by tens", 1e9, 1e9 + 40, 4, "", "1000000000|1000000010|1000000020|1000000030|1000000040"},
		{"negative", -12, 3, 4, "", "-15|-10|-5|0|5"},
		{"fractions", 0.21, 0.67, 5, "", "0.2|0.3|0.4|0.5|0.6|0.7"},
		{"temperatures", 4.6, 25.3, 5, "degC", "0 °C|5 °C|10 °C|15 °C|20 °C|25 °C|30 °C"},
		{"negative temperatures", -7.2, -1.1, 4, "degF", "-8 °F|-6 °F|-4 °F|-2 °F|0 °F"},
		{"hectopascals keep their unit", 1009, 1021, 4, "hPa", "1005 hPa|1010 hPa|1015 hPa|1020 hPa|1025 hPa"},
		{"flat", 21, 21, 4, "degC", "19 °C|20 °C|21 °C|22 °C|23 °C"},
		{"flat at zero", 0, 0, 4, "percent", "0.0%|0.5%|1.0%"},
		{"a single point of bytes", 24.8e9, 24.8e9, 4, "B", "21.0 GiB|22.0 GiB|23.0 GiB|24.0 GiB|25.0 GiB"},
		{"reversed", 10, 0, 2, "", "0|5|10"},
		{"one tick asked", 0, 1, 1, "", "0|1"},
		{"not a number", math.NaN(), 1, 3, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ax := newValueAxis(tc.lo, tc.hi, tc.n, tc.unit)
			var labels []string
			seen := map[string]bool{}
			for i, tk := range ax.ticks {
				labels = append(labels, tk.label)
				if seen[tk.label] {
					t.Errorf("label %q twice: %v", tk.label, labels)
				}
				seen[tk.label] = true
				if i > 0 && tk.v <= ax.ticks[i-1].v {
					t.Errorf("ticks not increasing: %v", ax.ticks)
				}
			}
			got := strings.Join(labels, "|")
			if tc.want != "" && got != tc.want {
				t.Errorf("labels %s, want %s", got, tc.want)
			}
			if len(ax.ticks) < 2 || len(ax.ticks) > 2*tc.n+3 {
				t.Errorf("%d ticks for about %d: %s", len(ax.ticks), tc.n, got)
			}
			if lo, hi := math.Min(tc.lo, tc.hi), math.Max(tc.lo, tc.hi); !math.IsNaN(lo) && (ax.min > lo || ax.max < hi) {
				t.Errorf("axis %g–%g does not cover %g–%g", ax.min, ax.max, lo, hi)
			}
			if ax.ticks[0].v != ax.min || ax.ticks[len(ax.ticks)-1].v != ax.max {
				t.Errorf("ticks %g…%g, axis %g–%g", ax.ticks[0].v, ax.ticks[len(ax.ticks)-1].v, ax.min, ax.max)
			}
			for _, l := range labels {
				if strings.Contains(l, "e+") || strings.Contains(l, "e-") {
					t.Errorf("scientific notation in %q", l)
				}
			}
		})
	}
}

// TestValueAxisNeverRepeats sweeps ranges of every kind of unit, wide and
// narrow, near zero and far from it: no axis has two equal labels.
func TestValueAxisNeverRepeats(t *testing.T) {
	t.Parallel()
	for _, unit := range []string{"", "B", "percent", "s", "degC", "W", "hPa"} {
		for _, centre := range []float64{0, 1e-6, 0.3, 21, 950, 1023, 86400, 3.7e6, 24.8e9, 1e12} {
			for _, width := range []float64{1e-9, 1e-4, 0.01, 1, 37, 1000, 5e5, 1e9} {
				for _, n := range []int{1, 3, 7, 15} {
					ax := newValueAxis(centre-width/3, centre+width, n, unit)
					if !distinct(ax.ticks) {
						var labels []string
						for _, tk := range ax.ticks {
							labels = append(labels, tk.label)
						}
						t.Errorf("unit %q, %g ± %g, %d ticks: %v", unit, centre, width, n, labels)
					}
				}
			}
		}
	}
}

// TestFormatValue: a single value (the map's) as the CLI writes it where
// the CLI has a form for it.
func TestFormatValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{24.8e9, "B", schema.FormatBytes(24.8e9)},
		{24.8e9, "B", "23.1 GiB"},
		{27, "percent", "27.0%"},
		{273906, "s", "3d 4h"},
		{3540, "s", "59m 0s"},
		{42, "s", "42s"},
		{0.25, "s", "250 ms"},
		{21.349, "degC", "21.3 °C"},
		{1013.25, "hPa", "1013.2 hPa"},
		{0.27, "", "0.270"},
		{3.05e7, "", "30.5M"},
		{1500, "W", "1.50 kW"},
		{2e-5, "A", "20.0 µA"},
		{-12.5, "", "-12.5"},
		{0, "", "0"},
	} {
		if got := formatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("formatValue(%g, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
	for _, tc := range []struct {
		lo, hi    float64
		unit      string
		low, high string
	}{
		{24.80e9, 24.81e9, "B", "23.10 GiB", "23.11 GiB"},
		{27.01, 27.04, "percent", "27.01%", "27.04%"},
		{14, 25, "degC", "14.0 °C", "25.0 °C"},
		{3600.2, 3600.6, "s", "3600.2 s", "3600.6 s"},
	} {
		if low, high := formatRange(tc.lo, tc.hi, tc.unit); low != tc.low || high != tc.high {
			t.Errorf("formatRange(%g, %g, %q) = %q, %q, want %q, %q", tc.lo, tc.hi, tc.unit, low, high, tc.low, tc.high)
		}
	}
}

func TestPaletteColour(t *testing.T) {
	t.Parallel()
	seen := map[string]int{}
	for i := range 200 {
		c := PaletteColour(i)
		if i < len(Palette) && c != Palette[i] {
			t.Errorf("colour %d is %s, want Palette's %s", i, hex(c), hex(Palette[i]))
		}
		if j, dup := seen[hex(c)]; dup {
			t.Errorf("colours %d and %d are both %s", j, i, hex(c))
		}
		seen[hex(c)] = i
		// Readable on the light and the dark theme alike.
		if l := (0.299*float64(c.R) + 0.587*float64(c.G) + 0.114*float64(c.B)) / 255; l < 0.15 || l > 0.85 {
			t.Errorf("colour %d (%s) has luma %.2f", i, hex(c), l)
		}
	}
}
