package rules

import (
	"encoding/json"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Outcome is what a rule decided on one reading: a boolean reading of the
// sensor named after the rule, with the host and time of Trigger.
type Outcome struct {
	Rule    string
	Host    string
	Time    time.Time
	Value   bool
	Trigger schema.Reading
}

// Reading returns the outcome as a reading, the form the publish action
// sends and apd rules test prints.
func (o Outcome) Reading() schema.Reading {
	v := json.RawMessage("false")
	if o.Value {
		v = json.RawMessage("true")
	}
	return schema.Reading{Host: o.Host, Sensor: o.Rule, Time: o.Time, Value: v, Human: schema.Format(o.Rule, v)}
}

// Skip reasons: why a reading produced no outcome.
const (
	decided   = ""
	skipOther = "other"   // another sensor or host, or before After
	skipLate  = "late"    // not later than the host's last reading: out of order or a duplicate
	skipValue = "novalue" // a failed reading, or a value with no number
	skipSame  = "same"    // on_change, and the outcome did not change
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
	v, ok := e.number(r)
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
	return Outcome{Rule: e.c.Name, Host: r.Host, Time: r.Time, Value: firing, Trigger: *r}, decided
}

// number is the value the condition sees: the number, the magnitude of a
// quantity (converted to the rule's unit), a boolean as 0 or 1.
func (e *evaluator) number(r *schema.Reading) (float64, bool) {
	if r.Error != nil || r.Value == nil {
		return 0, false
	}
	if e.c.Unit != "" {
		q, ok := schema.ParseQuantity(r.Value)
		if !ok {
			return 0, false
		}
		converted, err := schema.ConvertUnit(q.Magnitude, q.Unit, e.c.Unit)
		if err != nil {
			return 0, false
		}
		return converted, true
	}
	return schema.Numeric(r.Value)
}
