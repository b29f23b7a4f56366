package chart

import (
	"image/color"
	"math"
	"sort"
)

// PaletteColour is the colour of the i-th host without one of its own:
// Palette's ten, then hues a golden angle (137.5°) apart at three
// lightnesses in turn, so that no two hosts of a large fleet share a
// colour and neighbours in the order differ in hue and lightness alike.
func PaletteColour(i int) color.RGBA {
	if i < 0 {
		i = -i
	}
	if i < len(Palette) {
		return Palette[i]
	}
	k := i - len(Palette)
	hue := math.Mod(20+float64(k)*137.50776405, 360)
	lightness := []float64{0.45, 0.60, 0.33}[k%3]
	return hsl(hue, 0.62, lightness)
}

// hsl converts a hue in degrees, saturation and lightness in [0, 1].
func hsl(h, s, l float64) color.RGBA {
	c := (1 - math.Abs(2*l-1)) * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := l - c/2
	var r, g, b float64
	switch {
	case h < 60:
		r, g = c, x
	case h < 120:
		r, g = x, c
	case h < 180:
		g, b = c, x
	case h < 240:
		g, b = x, c
	case h < 300:
		r, b = x, c
	default:
		r, b = c, x
	}
	to := func(v float64) uint8 { return uint8(math.Round((v + m) * 255)) }
	return color.RGBA{to(r), to(g), to(b), 255}
}

// maxColoured is how many hosts a panel draws in colour. A fleet larger
// than that would be a tangle of lines whose colours nobody can tell
// apart, so a panel with more hosts than maxColoured draws only
// emphasised of them in colour — those whose latest values lie furthest
// from the fleet's median latest value, the ones a reader looks for —
// and the rest thin and grey behind them, with "+N more" in the legend.
const (
	maxColoured = 12
	emphasised  = 10
)

// coloured says which of a panel's series are drawn in colour: all of
// them up to maxColoured, else the emphasised furthest from the median.
func coloured(series []Series) []bool {
	out := make([]bool, len(series))
	if len(series) <= maxColoured {
		for i := range out {
			out[i] = true
		}
		return out
	}
	type latest struct {
		i int
		v float64
	}
	var ls []latest
	for i, s := range series {
		if len(s.Points) > 0 {
			ls = append(ls, latest{i, s.Points[len(s.Points)-1].V})
		}
	}
	if len(ls) == 0 {
		return out
	}
	vs := make([]float64, len(ls))
	for i, l := range ls {
		vs[i] = l.v
	}
	median := medianOf(vs)
	sort.SliceStable(ls, func(a, b int) bool { return math.Abs(ls[a].v-median) > math.Abs(ls[b].v-median) })
	for _, l := range ls[:min(emphasised, len(ls))] {
		out[l.i] = true
	}
	return out
}

// medianOf is the median of vs, which it sorts.
func medianOf(vs []float64) float64 {
	sort.Float64s(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}
