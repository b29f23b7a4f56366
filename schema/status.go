package schema

import (
	"encoding/json"
	"fmt"
	"time"
)

// Host states carried by the retained $status topic.
const (
	StateOnline  = "online"  // published on connect
	StateOffline = "offline" // published on a clean shutdown
	StateLost    = "lost"    // the MQTT last will: the connection died
)

// Status is the retained payload of <prefix>/<host>/$status.
type Status struct {
	State   string    `json:"state"`
	Time    time.Time `json:"-"`
	Version string    `json:"version,omitempty"`
	// FirstSeq, when not 0, is the lowest seq the device may still send:
	// every lower seq was acknowledged or dropped from a full spool and will
	// never arrive. The aggregator moves the host's watermark up to it and
	// counts what it skips as lost.
	FirstSeq uint64 `json:"first_seq,omitempty"`
}

type statusWire struct {
	State    string `json:"state"`
	TS       string `json:"ts,omitempty"`
	Version  string `json:"version,omitempty"`
	FirstSeq uint64 `json:"first_seq,omitempty"`
}

// MarshalJSON writes {"state":..,"ts":..,"version":..}; ts and version are
// left out when zero, as in the last will, which is fixed at connect time.
func (s Status) MarshalJSON() ([]byte, error) {
	w := statusWire{State: s.State, Version: s.Version, FirstSeq: s.FirstSeq}
	if !s.Time.IsZero() {
		w.TS = FormatTime(s.Time)
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads a status payload; state is required.
func (s *Status) UnmarshalJSON(b []byte) error {
	var w statusWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	if w.State == "" {
		return fmt.Errorf("%w: state missing", ErrInvalidField)
	}
	*s = Status{State: w.State, Version: w.Version, FirstSeq: w.FirstSeq}
	if w.TS != "" {
		t, err := ParseTime(w.TS)
		if err != nil {
			return fmt.Errorf("%w: ts %q", ErrInvalidField, w.TS)
		}
		s.Time = t
	}
	return nil
}

// Ack is the retained payload of <prefix>/<host>/$ack: every reading of the
// host with seq ≤ Seq is committed to storage.
type Ack struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"-"`
}

type ackWire struct {
	Seq uint64 `json:"seq"`
	TS  string `json:"ts"`
}

// MarshalJSON writes {"seq":N,"ts":"..."}.
func (a Ack) MarshalJSON() ([]byte, error) {
	return json.Marshal(ackWire{Seq: a.Seq, TS: FormatTime(a.Time)})
}

// UnmarshalJSON reads an acknowledgement; ts may be absent.
func (a *Ack) UnmarshalJSON(b []byte) error {
	var w ackWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	*a = Ack{Seq: w.Seq}
	if w.TS != "" {
		t, err := ParseTime(w.TS)
		if err != nil {
			return fmt.Errorf("%w: ts %q", ErrInvalidField, w.TS)
		}
		a.Time = t
	}
	return nil
}
