package clean

import (
	"math"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

func init() {
	register(Kind{Name: "passthrough", Help: "drop failed readings, keep the rest as they are",
		New: func(Options) Cleaner { return stateless(func(r *schema.Reading) *schema.Reading { return r }) }})
	register(Kind{Name: "magnitude", Help: "the number of a value (a quantity's magnitude, a bool as 0/1); others dropped",
		New: func(Options) Cleaner { return stateless(magnitude) }})
	register(Kind{Name: "temperature", Help: "keep -40 < t < 80 °C, drop the middle of three that differs from its neighbours' mean by more than 2.5",
		New: func(Options) Cleaner { return &temperature{} }})
	register(Kind{Name: "fahrenheit", Help: "temperatures in °F; other readings dropped", Unit: schema.UnitFahrenheit,
		New: func(Options) Cleaner { return stateless(fahrenheit) }})
	register(Kind{Name: "watts", Help: "energy counter (Wh, J) to mean power in W between readings; a counter reset starts again", Unit: schema.UnitWatt,
		New: func(Options) Cleaner { return &watts{} }})
	register(Kind{Name: "daily_kwh", Help: "energy counter (Wh, J) to kWh per local day (--tz), stamped at midnight", Unit: UnitKWh, Bars: true,
		New: func(o Options) Cleaner { return &daily{loc: o.Location} }})
}

// UnitKWh is the unit of daily totals. It is a display unit, not one of
// the wire format's (which has Wh).
const UnitKWh = "kWh"

// stateless is a cleaner that maps each valid reading to a point or to
// nothing (nil).
type stateless func(*schema.Reading) *schema.Reading

func (f stateless) Add(r *schema.Reading, emit Emit) error {
	if r.Error != nil {
		return nil
	}
	if p := f(r); p != nil {
		return emit(p)
	}
	return nil
}

func (stateless) Flush(Emit) error { return nil }

func magnitude(r *schema.Reading) *schema.Reading {
	v, ok := schema.Numeric(r.Value)
	if !ok {
		return nil
	}
	return point(r, r.Time, v, "")
}

// celsius returns a temperature reading's value in °C: a quantity in any
// temperature unit, or a bare number, taken as °C.
func celsius(r *schema.Reading) (float64, bool) {
	if r.Error != nil {
		return 0, false
	}
	if q, ok := schema.ParseQuantity(r.Value); ok {
		c, err := schema.ConvertUnit(q.Magnitude, q.Unit, schema.UnitCelsius)
		return c, err == nil
	}
	v, ok := schema.Numeric(r.Value)
	if !ok || r.Value[0] == 't' || r.Value[0] == 'f' {
		return 0, false
	}
	return v, true
}

func fahrenheit(r *schema.Reading) *schema.Reading {
	c, ok := celsius(r)
	if !ok {
		return nil
	}
	return point(r, r.Time, c*9/5+32, schema.UnitFahrenheit)
}

// temperature keeps readings within the range a room or weather sensor can
// read, and drops single-reading spikes: with a window of three valid
// readings, the middle one goes when it is more than maxJump from the mean
// of its neighbours (a DS18B20 that reads 85 °C, or an I²C read that
// returns garbage, once). The first and last reading have one neighbour
// and are kept.
type temperature struct {
	prev, mid *schema.Reading
	prevC     float64
	midC      float64
}

const (
	minCelsius, maxCelsius = -40.0, 80.0
	maxJump                = 2.5
)

func (t *temperature) Add(r *schema.Reading, emit Emit) error {
	c, ok := celsius(r)
	if !ok || !(c > minCelsius && c < maxCelsius) {
		return nil
	}
	switch {
	case t.prev == nil:
		t.prev, t.prevC = r, c
		return emit(r)
	case t.mid == nil:
		t.mid, t.midC = r, c
		return nil
	}
	keep := math.Abs(t.midC-(t.prevC+c)/2) <= maxJump
	mid := t.mid
	t.prev, t.prevC = t.mid, t.midC
	t.mid, t.midC = r, c
	if keep {
		return emit(mid)
	}
	return nil
}

func (t *temperature) Flush(emit Emit) error {
	if t.mid == nil {
		return nil
	}
	mid := t.mid
	t.mid = nil
	return emit(mid)
}

// wattHours returns an energy reading's value in Wh: a quantity in Wh or J,
// or a bare number, taken as Wh.
func wattHours(r *schema.Reading) (float64, bool) {
	if r.Error != nil {
		return 0, false
	}
	if q, ok := schema.ParseQuantity(r.Value); ok {
		wh, err := schema.ConvertUnit(q.Magnitude, q.Unit, schema.UnitWattHour)
		return wh, err == nil
	}
	v, ok := schema.Numeric(r.Value)
	if !ok || r.Value[0] == 't' || r.Value[0] == 'f' {
		return 0, false
	}
	return v, true
}

// counter follows an energy counter and gives each step: the energy since
// the last reading, or false for the first reading and after a reset (a
// step down: the meter restarted, and its new count is not energy since
// the last reading).
type counter struct {
	last   float64
	lastT  time.Time
	primed bool
}

func (c *counter) step(r *schema.Reading) (wh float64, since time.Time, ok bool) {
	v, valid := wattHours(r)
	if !valid {
		return 0, time.Time{}, false
	}
	prev, prevT, primed := c.last, c.lastT, c.primed
	c.last, c.lastT, c.primed = v, r.Time, true
	if !primed || v < prev || !r.Time.After(prevT) {
		return 0, time.Time{}, false
	}
	return v - prev, prevT, true
}

// watts turns an energy counter into the mean power between readings,
// stamped at the later one.
type watts struct{ c counter }

func (w *watts) Add(r *schema.Reading, emit Emit) error {
	wh, since, ok := w.c.step(r)
	if !ok {
		return nil
	}
	return emit(point(r, r.Time, wh/r.Time.Sub(since).Hours(), schema.UnitWatt))
}

func (*watts) Flush(Emit) error { return nil }

// daily sums an energy counter's steps per local day, each step counted
// in the day of the reading that ends it, and gives each day's total in
// kWh stamped at the day's local midnight.
type daily struct {
	loc    *time.Location
	c      counter
	day    time.Time
	total  float64
	steps  int
	sample *schema.Reading
}

func (d *daily) Add(r *schema.Reading, emit Emit) error {
	wh, _, ok := d.c.step(r)
	if !ok {
		return nil
	}
	day := startOfDay(r.Time, d.loc)
	if d.steps > 0 && !day.Equal(d.day) {
		if err := d.Flush(emit); err != nil {
			return err
		}
	}
	d.day, d.sample = day, r
	d.total += wh
	d.steps++
	return nil
}

func (d *daily) Flush(emit Emit) error {
	if d.steps == 0 {
		return nil
	}
	p := point(d.sample, d.day, d.total/1000, UnitKWh)
	d.total, d.steps = 0, 0
	return emit(p)
}

// startOfDay is the local midnight (in loc; UTC when nil) that begins t's
// day, as an instant.
func startOfDay(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc).UTC()
}
