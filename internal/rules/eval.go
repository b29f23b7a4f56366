package rules

import (
	"encoding/json"
	"math"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Outcome is what a rule decided on one reading: a reading of the sensor
// named after the rule, with the host and time of Trigger, whose value is
// true or false (a condition rule) or the computed number (a derived rule).
type Outcome struct {
	Rule    string
	Host    string
	Time    time.Time
	Value   json.RawMessage
	Trigger schema.Reading
}

// boolValue is the JSON of a condition's outcome.
func boolValue(b bool) json.RawMessage {
	if b {
		return json.RawMessage("true")
	}
	return json.RawMessage("false")
}

// Reading returns the outcome as a reading, the form the publish action
// sends and apd rules test prints.
func (o Outcome) Reading() schema.Reading {
	return schema.Reading{Host: o.Host, Sensor: o.Rule, Time: o.Time, Value: o.Value, Human: schema.Format(o.Rule, o.Value)}
}

// judge applies one rule to readings in time order.
type judge interface {
	// matches reports whether the rule looks at r at all.
	matches(r *schema.Reading) bool
	// eval returns the outcome of r, or why there is none.
	eval(r *schema.Reading) (Outcome, string)
}

func newJudge(c Config) judge {
	if c.Derived() {
		return newDeriver(c)
	}
	return newEvaluator(c)
}

// Skip reasons: why a reading produced no outcome.
const (
	decided     = ""
	skipOther   = "other"   // another sensor or host, or before After
	skipLate    = "late"    // not later than the host's last reading: out of order or a duplicate
	skipValue   = "novalue" // a failed reading, or a value with no number
	skipSame    = "same"    // on_change, and the outcome did not change
	skipPending = "pending" // a derived rule waits for its other inputs
)

// hostState is what a rule remembers of one host.
type hostState struct {
	last      time.Time // time of the last reading evaluated
	since     time.Time // when the condition started to hold; zero if it does not
	emitted   bool
	lastValue bool
}

// evaluator applies one rule to readings in time order, per host. It is
// pure: the same readings give the same outcomes, live or in a replay.
type evaluator struct {
	c     Config
	hosts map[string]*hostState
}

func newEvaluator(c Config) *evaluator { return &evaluator{c: c, hosts: map[string]*hostState{}} }

// matches reports whether the rule looks at r at all.
func (e *evaluator) matches(r *schema.Reading) bool {
	if r.Sensor != e.c.Sensor {
		return false
	}
	if len(e.c.Hosts) == 0 {
		return true
	}
	for _, h := range e.c.Hosts {
		if h == r.Host {
			return true
		}
	}
	return false
}

// eval returns the outcome of r, or why there is none.
func (e *evaluator) eval(r *schema.Reading) (Outcome, string) {
	if !e.matches(r) || r.Time.Before(e.c.After) {
		return Outcome{}, skipOther
	}
	st := e.hosts[r.Host]
	if st == nil {
		st = &hostState{}
		e.hosts[r.Host] = st
	}
	if !st.last.IsZero() && !r.Time.After(st.last) {
		return Outcome{}, skipLate
	}
	v, ok := number(r, e.c.Unit)
	if !ok {
		return Outcome{}, skipValue
	}
	st.last = r.Time
	holds := e.c.Cond(v)
	switch {
	case !holds:
		st.since = time.Time{}
	case st.since.IsZero():
		st.since = r.Time
	}
	firing := holds && r.Time.Sub(st.since) >= e.c.For
	if e.c.OnChange && st.emitted && firing == st.lastValue {
		return Outcome{}, skipSame
	}
	st.emitted, st.lastValue = true, firing
	return Outcome{Rule: e.c.Name, Host: r.Host, Time: r.Time, Value: boolValue(firing), Trigger: *r}, decided
}

// number is the value a rule sees: the number, the magnitude of a
// quantity (converted to unit, when set), a boolean as 0 or 1.
func number(r *schema.Reading, unit string) (float64, bool) {
	if r.Error != nil || r.Value == nil {
		return 0, false
	}
	if unit != "" {
		q, ok := schema.ParseQuantity(r.Value)
		if !ok {
			return 0, false
		}
		converted, err := schema.ConvertUnit(q.Magnitude, q.Unit, unit)
		if err != nil {
			return 0, false
		}
		return converted, true
	}
	return schema.Numeric(r.Value)
}

// deriver computes a derived rule's readings. Each derived reading takes a
// reading from every input newer than the ones the last derived reading
// used, so inputs sampled on the same tick give one derived reading with
// all of them, stamped at the newest.
type deriver struct {
	c      Config
	latest map[string]sample // by input name
	used   map[string]time.Time
	last   time.Time // of the last derived reading
	prev   json.RawMessage
}

type sample struct {
	t time.Time
	v float64
}

func newDeriver(c Config) *deriver {
	return &deriver{c: c, latest: map[string]sample{}, used: map[string]time.Time{}}
}

func (d *deriver) input(r *schema.Reading) (string, bool) {
	for name, in := range d.c.Inputs {
		if in.Host == r.Host && in.Sensor == r.Sensor {
			return name, true
		}
	}
	return "", false
}

func (d *deriver) matches(r *schema.Reading) bool {
	_, ok := d.input(r)
	return ok
}

func (d *deriver) eval(r *schema.Reading) (Outcome, string) {
	name, ok := d.input(r)
	if !ok || r.Time.Before(d.c.After) {
		return Outcome{}, skipOther
	}
	if s, seen := d.latest[name]; seen && !r.Time.After(s.t) {
		return Outcome{}, skipLate
	}
	v, ok := number(r, d.c.Unit)
	if !ok {
		return Outcome{}, skipValue
	}
	d.latest[name] = sample{r.Time, v}
	vars := make(map[string]float64, len(d.c.Inputs))
	var oldest, newest time.Time
	for in := range d.c.Inputs {
		s, seen := d.latest[in]
		if !seen || !s.t.After(d.used[in]) {
			return Outcome{}, skipPending // an input has nothing new yet
		}
		vars[in] = s.v
		if oldest.IsZero() || s.t.Before(oldest) {
			oldest = s.t
		}
		if s.t.After(newest) {
			newest = s.t
		}
	}
	if newest.Sub(oldest) > d.c.MaxSkew || !newest.After(d.last) {
		return Outcome{}, skipPending
	}
	for in := range d.c.Inputs {
		d.used[in] = d.latest[in].t
	}
	d.last = newest
	x := d.c.Calc(vars)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return Outcome{}, skipValue // a division by zero
	}
	var value json.RawMessage
	if d.c.Unit != "" {
		value = schema.Quantity{Magnitude: x, Unit: d.c.Unit}.Raw()
	} else {
		value, _ = json.Marshal(x)
	}
	if d.c.OnChange && d.prev != nil && string(d.prev) == string(value) {
		return Outcome{}, skipSame
	}
	d.prev = value
	return Outcome{Rule: d.c.Name, Host: d.c.Host, Time: newest, Value: value, Trigger: *r}, decided
}
