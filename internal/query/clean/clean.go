// Package clean holds the cleaners: each turns one host's readings of one
// sensor, in time order, into the points a chart or a table shows —
// dropping failed readings and sensor glitches, turning energy counters
// into power, summing days. Readings are stored as received (SPEC §5);
// cleaning happens when reading, so a bad cleaner can be fixed and the
// data read again. The CLI (apd query --clean, apd chart --clean), the HTTP
// API and the dashboard all take their cleaners from this one registry.
package clean

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Emit receives a cleaner's points; an error from it ends the cleaning.
type Emit func(*schema.Reading) error

// Cleaner cleans one series: Add takes its readings in time order, Flush
// ends it. Either may emit points; a point never comes before one already
// emitted.
type Cleaner interface {
	Add(r *schema.Reading, emit Emit) error
	Flush(emit Emit) error
}

// Options are what a cleaner may need besides the readings.
type Options struct {
	// Location is the time zone that days are counted in (daily totals);
	// nil means UTC.
	Location *time.Location
}

// Kind is a registered cleaner.
type Kind struct {
	Name string
	Help string
	// Unit is the unit of the points, when the cleaner fixes it ("W").
	Unit string
	// Bars says the points are totals of periods, which charts draw as
	// bars, not lines.
	Bars bool
	New  func(Options) Cleaner
}

var kinds []Kind

func register(k Kind) { kinds = append(kinds, k) }

// Kinds returns the cleaners, passthrough first.
func Kinds() []Kind { return slices.Clone(kinds) }

// Names returns the cleaners' names, passthrough first.
func Names() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	return names
}

// Lookup returns the cleaner called name.
func Lookup(name string) (Kind, error) {
	for _, k := range kinds {
		if k.Name == name {
			return k, nil
		}
	}
	return Kind{}, fmt.Errorf("unknown cleaner %q (want %s)", name, strings.Join(Names(), ", "))
}

// Run cleans readings, a whole series or several one after another (a new
// host or sensor starts a new series), into emit.
type Run struct {
	kind         Kind
	opts         Options
	cur          Cleaner
	host, sensor string
}

// NewRun returns a run of cleaner kind over consecutive series.
func NewRun(kind Kind, opts Options) *Run { return &Run{kind: kind, opts: opts} }

// Add takes the next reading.
func (r *Run) Add(rd *schema.Reading, emit Emit) error {
	if r.cur != nil && (rd.Host != r.host || rd.Sensor != r.sensor) {
		if err := r.cur.Flush(emit); err != nil {
			return err
		}
		r.cur = nil
	}
	if r.cur == nil {
		r.cur, r.host, r.sensor = r.kind.New(r.opts), rd.Host, rd.Sensor
	}
	return r.cur.Add(rd, emit)
}

// Flush ends the last series.
func (r *Run) Flush(emit Emit) error {
	if r.cur == nil {
		return nil
	}
	c := r.cur
	r.cur = nil
	return c.Flush(emit)
}

// point returns a reading of r's series at t with a quantity value.
func point(r *schema.Reading, t time.Time, v float64, unit string) *schema.Reading {
	q := schema.Quantity{Magnitude: v, Unit: unit}
	p := &schema.Reading{Host: r.Host, Sensor: r.Sensor, Title: r.Title, Time: t, Value: q.Raw()}
	p.Human = schema.FormatQuantity(q)
	return p
}
