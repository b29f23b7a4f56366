package chart

import (
	"math"
	"strconv"
	"strings"

	"github.com/apd-telemetry/apd/schema"
)

// A numberKind is how the numbers of a unit are written on an axis.
type numberKind int

const (
	// plainNumbers have a fixed unit written after them (21 °C, 1013 hPa).
	plainNumbers numberKind = iota
	// siNumbers take a decimal prefix when large or small (1.5 kW, 20M).
	siNumbers
	// byteNumbers take a binary prefix, as the CLI writes bytes (23.5 GiB).
	byteNumbers
	// percentNumbers are written 12% or 12.5%.
	percentNumbers
	// durationNumbers are seconds written as 30s, 5m, 2h, 1d 6h.
	durationNumbers
)

// numberFormat is how one unit's numbers are written: its kind and the
// text after the number.
type numberFormat struct {
	kind   numberKind
	suffix string // after the number (and its prefix): " °C", " W", ""
}

// siUnits take decimal prefixes; other units already carry one (hPa, kWh)
// or would read oddly with one (kppm).
var siUnits = map[string]bool{
	schema.UnitWatt: true, schema.UnitWattHour: true, schema.UnitJoule: true, schema.UnitVolt: true,
	schema.UnitAmpere: true, schema.UnitPascal: true, schema.UnitLux: true, "Hz": true,
}

// formatOf returns how the numbers of unit (canonical, as panels and maps
// hold it) are written. Ratios are drawn as percentages before they get
// here (see displayValues).
func formatOf(unit string) numberFormat {
	switch unit {
	case "":
		return numberFormat{kind: siNumbers}
	case schema.UnitBytes:
		return numberFormat{kind: byteNumbers}
	case schema.UnitPercent, schema.UnitRatio:
		return numberFormat{kind: percentNumbers, suffix: "%"}
	case schema.UnitSecond:
		return numberFormat{kind: durationNumbers}
	case schema.UnitDegree:
		return numberFormat{kind: plainNumbers, suffix: "°"}
	}
	if siUnits[unit] {
		return numberFormat{kind: siNumbers, suffix: " " + unit}
	}
	return numberFormat{kind: plainNumbers, suffix: " " + DisplayUnit(unit)}
}

// displayValues returns the unit values of unit are drawn in and the
// factor that takes them there: a ratio reads better as a percentage
// (15 %, not 0.15), in the charts and on the map alike.
func displayValues(unit string) (shown string, factor float64) {
	if unit == schema.UnitRatio {
		return schema.UnitPercent, 100
	}
	return unit, 1
}

// valueTick is a value on the value axis and its label.
type valueTick struct {
	v     float64
	label string
}

// valueAxis is the extent of a value axis and its ticks, which span it.
type valueAxis struct {
	min, max float64
	ticks    []valueTick
}

// newValueAxis returns round ticks covering [lo, hi], about n of them,
// labelled in unit: a step that is round in the unit the labels are
// written in (0.5 GiB, 6h, 2.5%), and labels that are all different —
// when writing them makes two equal, more decimals or a larger step are
// tried until none are. A flat range (lo == hi) is widened around its
// value.
func newValueAxis(lo, hi float64, n int, unit string) valueAxis {
	if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		lo, hi = 0, 1
	}
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi-lo <= 1e-9*math.Max(math.Abs(lo), math.Abs(hi)) {
		// Flat, or flatter than a float64 can step through.
		hi = lo
	}
	if hi == lo {
		pad := math.Abs(lo) * 0.05
		if pad == 0 {
			pad = 1
		}
		nonNegative := lo >= 0
		lo, hi = lo-pad, hi+pad
		if nonNegative && lo < 0 {
			lo = 0
		}
	}
	f := formatOf(unit)
	n = max(n, 1)
	for ; ; n = (n + 1) / 2 {
		for extra := 0; extra <= 3; extra++ {
			ax := f.axis(lo, hi, n, extra)
			if distinct(ax.ticks) || (n == 1 && extra == 3) {
				return ax
			}
		}
	}
}

func distinct(ticks []valueTick) bool {
	seen := make(map[string]bool, len(ticks))
	for _, t := range ticks {
		if seen[t.label] {
			return false
		}
		seen[t.label] = true
	}
	return true
}

// axis lays out ticks of [lo, hi] about n apart with extra decimals.
func (f numberFormat) axis(lo, hi float64, n, extra int) valueAxis {
	if f.kind == durationNumbers && math.Max(math.Abs(lo), math.Abs(hi)) >= 1 {
		return durationAxis(lo, hi, n)
	}
	g := f
	if f.kind == durationNumbers {
		// Under a second: milliseconds and less, as SI.
		g = numberFormat{kind: siNumbers, suffix: " s"}
	}
	big := math.Max(math.Abs(lo), math.Abs(hi))
	scale := g.scale(big)
	lowered := false
	for {
		step := niceStep((hi - lo) / scale / float64(n))
		if g.kind == byteNumbers && scale == 1 {
			step = math.Max(step, 1) // whole bytes
		}
		first, last := math.Floor(lo/scale/step+1e-9), math.Ceil(hi/scale/step-1e-9)
		if up := g.scale(math.Max(math.Abs(first), math.Abs(last)) * step * scale); up > scale && !lowered {
			// Rounding out reached the next prefix (1000k → 1M).
			scale = up
			continue
		}
		decimals := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
		if decimals > 3 && scale > 1 {
			// A narrow range far from zero (a counter near 10⁹ moving by
			// tens) reads better without the prefix than as 1.0000002G.
			scale, lowered = g.lower(scale), true
			continue
		}
		decimals += extra
		at := func(i float64) float64 {
			if i == 0 {
				return 0 // never -0
			}
			if scale < 1 {
				// 10 / 1e6 is 1e-5; 10 × 1e-6 is a hair under it.
				return i * step / math.Round(1/scale)
			}
			return i * step * scale
		}
		ax := valueAxis{min: at(first), max: at(last)}
		for k := 0; k <= int(last-first); k++ {
			v := at(first + float64(k))
			ax.ticks = append(ax.ticks, valueTick{v, g.label(v, scale, decimals)})
		}
		return ax
	}
}

// scale is the factor the prefix of numbers about as large as big stands
// for: 1024ⁿ for bytes, 1000ⁿ for SI (k from 10 000 and m under 0.01
// for bare numbers, where 1500 and 0.05 read better as they are; at 1000
// and under 1 for units, like 1.5 kW and 500 mA), else 1.
func (f numberFormat) scale(big float64) float64 {
	switch f.kind {
	case byteNumbers:
		s := 1.0
		for big >= 1024*s && s < math.Pow(1024, 6) {
			s *= 1024
		}
		return s
	case siNumbers:
		upFrom, downFrom := 1e3, 1.0
		if f.suffix == "" {
			upFrom, downFrom = 1e4, 1e-2
		}
		if big == 0 || (big >= downFrom && big < upFrom) {
			return 1
		}
		e := math.Floor(math.Log10(big)/3+1e-9) * 3
		if big >= upFrom && e == 0 {
			e = 3
		}
		return math.Pow(10, math.Max(-12, math.Min(18, e)))
	}
	return 1
}

// lower is the scale of the prefix below scale: a binary prefix down
// for bytes, none at all for SI.
func (f numberFormat) lower(scale float64) float64 {
	if f.kind == byteNumbers {
		return scale / 1024
	}
	return 1
}

var siPrefixes = map[int]string{-12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}

// label writes v in the unit scale stands for, with decimals.
func (f numberFormat) label(v, scale float64, decimals int) string {
	switch f.kind {
	case byteNumbers:
		if scale > 1 {
			decimals = max(decimals, 1) // as the CLI: 23.0 GiB
		}
		return schema.FormatBytesIn(v, scale, decimals)
	case siNumbers:
		prefix := siPrefixes[int(math.Round(math.Log10(scale)))]
		s := strconv.FormatFloat(v/scale, 'f', decimals, 64)
		if f.suffix == "" {
			if v == 0 {
				return s // 0, not 0k
			}
			return s + prefix
		}
		return s + " " + prefix + strings.TrimPrefix(f.suffix, " ")
	}
	return strconv.FormatFloat(v, 'f', decimals, 64) + f.suffix
}

// niceStep is the round step (1, 2 or 5 × 10ⁿ) at or above raw.
func niceStep(raw float64) float64 {
	if !(raw > 0) || math.IsInf(raw, 0) {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if raw <= m*mag*(1+1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

// durationSteps are the steps, in seconds, of a duration axis: round on a
// clock and a calendar. Longer spans step by 1, 2 or 5 × 10ⁿ days.
var durationSteps = []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
	3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400}

func durationAxis(lo, hi float64, n int) valueAxis {
	raw := (hi - lo) / float64(n)
	step := 0.0
	for _, s := range durationSteps {
		if raw <= s {
			step = s
			break
		}
	}
	if step == 0 {
		step = niceStep(raw/86400) * 86400
		if step < 30*86400 {
			step = 30 * 86400 // past a fortnight: whole months of days
		}
	}
	first, last := math.Floor(lo/step+1e-9), math.Ceil(hi/step-1e-9)
	ax := valueAxis{min: first * step, max: last * step}
	for i := first; i <= last; i++ {
		v := i * step
		ax.ticks = append(ax.ticks, valueTick{v, durationLabel(v, step)})
	}
	return ax
}

// durationLabel writes sec in days, hours, minutes and seconds down to
// the largest of them step is a whole number of: 30s, 5m, 1d 6h.
func durationLabel(sec, step float64) string {
	if sec == 0 {
		return "0"
	}
	sign := ""
	if sec < 0 {
		sign, sec = "-", -sec
	}
	units := []struct {
		name string
		sec  float64
	}{{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}}
	var parts []string
	left := math.Round(sec)
	for _, u := range units {
		n := math.Floor(left/u.sec + 1e-9)
		left -= n * u.sec
		if n > 0 {
			parts = append(parts, strconv.FormatFloat(n, 'f', 0, 64)+u.name)
		}
		if math.Mod(step, u.sec) == 0 {
			break
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return sign + strings.Join(parts, " ")
}

// formatValue writes one value of unit as the CLI writes it where the CLI
// has a form for it (bytes on the binary scale with one decimal,
// percentages with one decimal, durations in days, hours, minutes and
// seconds, though only the two largest of them, to fit on a map), and
// otherwise with three significant digits and an SI prefix: the map's
// labels.
func formatValue(v float64, unit string) string {
	f := formatOf(unit)
	switch f.kind {
	case byteNumbers:
		return schema.FormatBytes(v)
	case durationNumbers:
		if math.Abs(v) >= 60 {
			return shortDuration(v)
		}
		if math.Abs(v) >= 1 {
			return schema.FormatDuration(v)
		}
		f = numberFormat{kind: siNumbers, suffix: " s"}
	case percentNumbers:
		return schema.FormatQuantity(schema.Quantity{Magnitude: v, Unit: schema.UnitPercent})
	case plainNumbers:
		return strconv.FormatFloat(v, 'f', 1, 64) + f.suffix
	}
	scale := f.scale(math.Abs(v))
	decimals := 0
	if m := math.Abs(v / scale); m > 0 && m < 100 {
		decimals = 2 - int(math.Floor(math.Log10(m)))
	}
	return f.label(v, scale, min(decimals, 6))
}

// formatRange writes the ends of a range of values of unit, with as many
// decimals as keep them apart: the map's colour scale.
func formatRange(lo, hi float64, unit string) (string, string) {
	a, b := formatValue(lo, unit), formatValue(hi, unit)
	if a != b || lo == hi {
		return a, b
	}
	f := formatOf(unit)
	scale := 1.0
	switch f.kind {
	case durationNumbers:
		f = numberFormat{kind: siNumbers, suffix: " s"}
	case siNumbers, byteNumbers:
		scale = f.scale(math.Max(math.Abs(lo), math.Abs(hi)))
	}
	for d := 1; d <= 12 && a == b; d++ {
		a, b = f.label(lo, scale, d), f.label(hi, scale, d)
	}
	return a, b
}

// shortDuration writes seconds as their two largest parts of the CLI's
// days, hours, minutes and seconds: 40d 23h, 2h 5m.
func shortDuration(sec float64) string {
	parts := strings.Fields(schema.FormatDuration(sec))
	return strings.Join(parts[:min(2, len(parts))], " ")
}
