package demo

import (
	"math"
	"time"
)

// The model is a pure function of (seed, host, sensor, time): the same
// timestamp gives the same value whenever it is asked for, so history
// and live readings are one continuous series and a run with the same
// seed reproduces every value a README example or screenshot shows.

// mix is splitmix64's finaliser: a well-spread hash of x.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// key names one stream of randomness: a seed, a host and what varies.
func key(seed uint64, parts ...string) uint64 {
	h := mix(seed)
	for _, p := range parts {
		for i := range len(p) {
			h = mix(h ^ uint64(p[i]))
		}
		h = mix(h ^ 0xff)
	}
	return h
}

// unit is a uniform number in [0, 1) for key k at step n.
func unit(k uint64, n int64) float64 {
	return float64(mix(k^mix(uint64(n)))>>11) / (1 << 53)
}

// gauss is a standard normal number for key k at step n (Box–Muller).
func gauss(k uint64, n int64) float64 {
	u1 := max(unit(k, n), 1e-12)
	u2 := unit(mix(k), n)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// wander is smooth noise in [-1, 1] with knots every period: weather
// from day to day, slow drift within an hour.
func wander(k uint64, t time.Time, period time.Duration) float64 {
	x := float64(t.UnixMilli()) / float64(period.Milliseconds())
	n := math.Floor(x)
	u := x - n
	u = u * u * (3 - 2*u) // smoothstep: no kinks at the knots
	a, b := 2*unit(k, int64(n))-1, 2*unit(k, int64(n)+1)-1
	return a + (b-a)*u
}

// solarHour is the hour of day in [0, 24) by the sun at longitude lon:
// what drives a daily cycle, and needs no time-zone database.
func solarHour(t time.Time, lon float64) float64 {
	s := float64(t.UnixMilli())/3.6e6 + lon/15
	return math.Mod(math.Mod(s, 24)+24, 24)
}

// solarDay numbers the days by the sun at longitude lon (0 = 1970-01-01).
func solarDay(t time.Time, lon float64) int64 {
	return int64(math.Floor((float64(t.UnixMilli())/3.6e6 + lon/15) / 24))
}

// weekday is the day of the week by the sun (time.Sunday = 0).
func weekday(t time.Time, lon float64) time.Weekday {
	return time.Weekday((solarDay(t, lon) + 4) % 7) // 1970-01-01 was a Thursday
}

// diurnal is the daily cycle of the air: 1 at 15:00, −1 at 03:00.
func diurnal(h float64) float64 { return math.Cos(2 * math.Pi * (h - 15) / 24) }

// sun is the sunshine on a clear day: 0 at night, 1 at 13:00.
func sun(h float64) float64 { return max(0, math.Sin(math.Pi*(h-7)/12)) }

// bump is a bell of height 1 around hour at, width w hours.
func bump(h, at, w float64) float64 {
	d := math.Abs(h - at)
	d = min(d, 24-d)
	return math.Exp(-d * d / (2 * w * w))
}

// between is 1 from hour on to hour off and 0 otherwise, with ramps of
// about half an hour (a heating schedule, office hours).
func between(h, on, off float64) float64 {
	s := func(x float64) float64 { return 1 / (1 + math.Exp(-x*6)) }
	return s(h-on) * s(off-h)
}

func round(x, step float64) float64 {
	if step < 1 {
		// Dividing by the whole 1/step gives the double nearest the
		// decimal (0.043), where multiplying by step would not
		// (0.043000000000000003), which payloads would then show.
		inv := math.Round(1 / step)
		return math.Round(x*inv) / inv
	}
	return math.Round(x/step) * step
}

func clamp(x, lo, hi float64) float64 { return max(lo, min(hi, x)) }
