package schema

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// A sensor that keeps failing is not stored as a failed reading every
// tick: its device stores the error once when the failure starts and the
// first good reading after it, and counts the failed samples in between.
// The count travels in two optional members of a reading, which consumers
// that round-trip readings keep like any unknown member (a store keeps
// them in Reading.Extra) and the rest ignore:
//
//	"failing":   {"since":"2026-11-23T10:15:00.000Z","failed_samples":1}    on an error reading
//	"recovered": {"since":"2026-11-23T10:15:00.000Z","failed_samples":60}   on the first good reading after errors
const (
	// MemberFailing is on an error reading: since when the sensor has
	// been failing and how many of its samples failed up to this one.
	MemberFailing = "failing"
	// MemberRecovered is on the first good reading after failed
	// samples: when the failure started and how many samples failed.
	MemberRecovered = "recovered"
)

// FailureRun is the value of the failing and recovered members: a run of
// failed samples of one sensor.
type FailureRun struct {
	// Since is the time of the run's first failed sample.
	Since time.Time
	// FailedSamples counts the run's failed samples, the first included.
	FailedSamples uint64
}

type failureRunWire struct {
	Since         string `json:"since"`
	FailedSamples uint64 `json:"failed_samples"`
}

// MarshalJSON writes {"since":"...","failed_samples":N}.
func (f FailureRun) MarshalJSON() ([]byte, error) {
	b := append([]byte(`{"since":"`), FormatTime(f.Since)...)
	b = append(b, `","failed_samples":`...)
	b = strconv.AppendUint(b, f.FailedSamples, 10)
	return append(b, '}'), nil
}

// UnmarshalJSON reads {"since":"...","failed_samples":N}; both are required
// and a run has at least one failed sample.
func (f *FailureRun) UnmarshalJSON(b []byte) error {
	var w failureRunWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	since, err := ParseTime(w.Since)
	if err != nil {
		return fmt.Errorf("%w: since %q", ErrInvalidField, w.Since)
	}
	if w.FailedSamples == 0 {
		return fmt.Errorf("%w: failed_samples missing or 0", ErrInvalidField)
	}
	*f = FailureRun{Since: since, FailedSamples: w.FailedSamples}
	return nil
}

// FailureRunOf returns the failure run a reading carries in member
// (MemberFailing or MemberRecovered), and whether it carries a valid one.
func FailureRunOf(r *Reading, member string) (FailureRun, bool) {
	raw, ok := r.Extra[member]
	if !ok {
		return FailureRun{}, false
	}
	var f FailureRun
	if err := json.Unmarshal(raw, &f); err != nil {
		return FailureRun{}, false
	}
	return f, true
}

// SetFailureRun puts f into r as member (MemberFailing or MemberRecovered).
func SetFailureRun(r *Reading, member string, f FailureRun) {
	if r.Extra == nil {
		r.Extra = make(map[string]json.RawMessage, 1)
	}
	r.Extra[member], _ = f.MarshalJSON()
}

// The states of a sensor in a $status.
const (
	// SensorOK: sampled, and its last sample (if any yet) succeeded.
	SensorOK = "ok"
	// SensorAbsent: its hardware is not on the device; not sampled.
	SensorAbsent = "absent"
	// SensorFailing: sampled, and its samples fail since Since.
	SensorFailing = "failing"
)

// SensorState is one sensor's condition in a $status, as of the status's
// ts.
type SensorState struct {
	// State is SensorOK, SensorAbsent or SensorFailing; a consumer keeps
	// a state it does not know as text.
	State string
	// Reason says why an absent sensor is absent ("no DHT11/DHT22 IIO
	// device under /sys/bus/iio/devices").
	Reason string
	// Failing is the run of failed samples of a failing sensor.
	Failing FailureRun
	// Error is the latest error of a failing sensor.
	Error *SampleError
}

type sensorStateWire struct {
	State         string       `json:"state"`
	Reason        string       `json:"reason,omitempty"`
	Since         string       `json:"since,omitempty"`
	FailedSamples uint64       `json:"failed_samples,omitempty"`
	Error         *SampleError `json:"error,omitempty"`
}

// MarshalJSON writes {"state":"ok"}, {"state":"absent","reason":"..."} or
// {"state":"failing","since":"...","failed_samples":N,"error":{"kind":..,"message":..}}.
func (s SensorState) MarshalJSON() ([]byte, error) {
	w := sensorStateWire{State: s.State, Reason: s.Reason, Error: s.Error}
	if s.State == SensorFailing {
		w.Since, w.FailedSamples = FormatTime(s.Failing.Since), s.Failing.FailedSamples
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads a sensor's state; only state is required. The
// state is informative: parts that do not read are left zero.
func (s *SensorState) UnmarshalJSON(b []byte) error {
	var w sensorStateWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	if w.State == "" {
		return fmt.Errorf("%w: sensor state missing", ErrInvalidField)
	}
	*s = SensorState{State: w.State, Reason: w.Reason, Error: w.Error}
	if w.State == SensorFailing {
		s.Failing.Since, _ = ParseTime(w.Since)
		s.Failing.FailedSamples = w.FailedSamples
	}
	return nil
}

// decodeSensorStates reads a status's sensors member leniently: a
// malformed one, or one sensor's, never costs the status, whose state
// and seqs the aggregator needs.
func decodeSensorStates(raw json.RawMessage) map[string]SensorState {
	if len(raw) == 0 {
		return nil
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &members) != nil || len(members) == 0 {
		return nil
	}
	out := make(map[string]SensorState, len(members))
	for name, m := range members {
		if ValidateName(name) != nil {
			continue
		}
		var st SensorState
		if st.UnmarshalJSON(m) == nil {
			out[name] = st
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
