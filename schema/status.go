package schema

import (
	"encoding/json"
	"fmt"
	"strconv"
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
	// never arrive. The aggregator moves the host's watermark up to it,
	// once the host has a reading committed at or above first_seq − 1 (a
	// status alone proves no seq was made that high), and counts what it
	// skips as lost.
	FirstSeq uint64 `json:"first_seq,omitempty"`
	// Spool is the id of the device's spool, made when the spool was
	// created. A new id means the device's seqs start again (its storage
	// was wiped): the aggregator starts the host's watermark afresh.
	Spool string `json:"spool,omitempty"`
	// Wear, when the device reports it, is what its storage got from
	// apd-publish since Wear.Since: what wears out a Pi's SD card.
	Wear *Wear `json:"wear,omitempty"`
	// Sensors, when the device reports them, is each of its sensors'
	// condition by name: sampled and well, absent (not sampled), or
	// failing since when and how often. Informative only: a malformed
	// entry is left out, never a reason to refuse the status.
	Sensors map[string]SensorState `json:"sensors,omitempty"`
}

// Wear counts the writes a device's publisher caused to its storage.
type Wear struct {
	// Since is when the counting began (the process started).
	Since time.Time `json:"-"`
	// BytesWritten counts bytes written to storage: the kernel's count
	// for the process where it keeps one, else the spool's own.
	BytesWritten uint64 `json:"bytes_written"`
	// Syncs counts the fsyncs the spool asked for.
	Syncs uint64 `json:"syncs"`
	// BytesPerDay and SyncsPerDay are the same over a day, at the rate
	// since Since.
	BytesPerDay uint64 `json:"bytes_per_day"`
	SyncsPerDay uint64 `json:"syncs_per_day"`
}

// wearWire is Wear with its time as text.
type wearWire struct {
	Since        string `json:"since"`
	BytesWritten uint64 `json:"bytes_written"`
	Syncs        uint64 `json:"syncs"`
	BytesPerDay  uint64 `json:"bytes_per_day"`
	SyncsPerDay  uint64 `json:"syncs_per_day"`
}

// MaxSeq is the highest seq or first_seq a reading or status may carry:
// beyond 2^53 a counter that starts at 1 and counts readings cannot have
// got, and JSON numbers stop being exact.
const MaxSeq = 1 << 53

type statusWire struct {
	State    string    `json:"state"`
	TS       string    `json:"ts,omitempty"`
	Version  string    `json:"version,omitempty"`
	Spool    string    `json:"spool,omitempty"`
	FirstSeq uint64    `json:"first_seq,omitempty"`
	Wear     *wearWire `json:"wear,omitempty"`
	// Sensors is read by decodeSensorStates, leniently.
	Sensors json.RawMessage `json:"sensors,omitempty"`
}

// MarshalJSON writes {"state":..,"ts":..,"version":..}; ts and version are
// left out when zero, as in the last will, which is fixed at connect time.
func (s Status) MarshalJSON() ([]byte, error) {
	w := statusWire{State: s.State, Version: s.Version, FirstSeq: s.FirstSeq, Spool: s.Spool}
	if !s.Time.IsZero() {
		w.TS = FormatTime(s.Time)
	}
	if s.Wear != nil {
		w.Wear = &wearWire{Since: FormatTime(s.Wear.Since), BytesWritten: s.Wear.BytesWritten, Syncs: s.Wear.Syncs,
			BytesPerDay: s.Wear.BytesPerDay, SyncsPerDay: s.Wear.SyncsPerDay}
	}
	if len(s.Sensors) > 0 {
		b, err := json.Marshal(s.Sensors)
		if err != nil {
			return nil, fmt.Errorf("status sensors: %w", err)
		}
		w.Sensors = b
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
	if w.FirstSeq > MaxSeq {
		return fmt.Errorf("%w: first_seq %d is beyond %d", ErrSeqOutOfRange, w.FirstSeq, uint64(MaxSeq))
	}
	if w.Spool != "" && ValidateName(w.Spool) != nil {
		return fmt.Errorf("%w: spool %q", ErrInvalidField, w.Spool)
	}
	*s = Status{State: w.State, Version: w.Version, FirstSeq: w.FirstSeq, Spool: w.Spool, Sensors: decodeSensorStates(w.Sensors)}
	if w.Wear != nil {
		// Informative only: a since that does not read leaves it zero.
		since, _ := ParseTime(w.Wear.Since)
		s.Wear = &Wear{Since: since, BytesWritten: w.Wear.BytesWritten, Syncs: w.Wear.Syncs,
			BytesPerDay: w.Wear.BytesPerDay, SyncsPerDay: w.Wear.SyncsPerDay}
	}
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
	// Spool, when set, is the spool id the seqs belong to: a device with
	// another spool ignores the acknowledgement (it is an earlier
	// spool's, and would remove readings never stored).
	Spool string `json:"spool,omitempty"`
}

type ackWire struct {
	Seq   uint64 `json:"seq"`
	TS    string `json:"ts"`
	Spool string `json:"spool,omitempty"`
}

// MarshalJSON writes {"seq":N,"ts":"...","spool":"..."}.
func (a Ack) MarshalJSON() ([]byte, error) { return a.AppendJSON(nil), nil }

// AppendJSON appends the acknowledgement's JSON form to b: an aggregator
// writes one per host per commit window.
func (a Ack) AppendJSON(b []byte) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, a.Seq, 10)
	b = append(b, `,"ts":"`...)
	b = a.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, '"')
	if a.Spool != "" {
		b = append(b, `,"spool":`...)
		b = appendString(b, a.Spool)
	}
	return append(b, '}')
}

// UnmarshalJSON reads an acknowledgement; ts may be absent.
func (a *Ack) UnmarshalJSON(b []byte) error {
	var w ackWire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	*a = Ack{Seq: w.Seq, Spool: w.Spool}
	if w.TS != "" {
		t, err := ParseTime(w.TS)
		if err != nil {
			return fmt.Errorf("%w: ts %q", ErrInvalidField, w.TS)
		}
		a.Time = t
	}
	return nil
}
