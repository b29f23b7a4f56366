package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Version is the payload version this package writes and the only one it
// accepts in a payload's "v" field.
const Version = 1

// Decoding errors. [Decode] wraps one of these with the detail; callers use
// errors.Is to tell them apart and the message as a dead-letter reason.
var (
	ErrInvalidJSON        = errors.New("invalid JSON")
	ErrUnsupportedVersion = errors.New("unsupported payload version")
	ErrTopicMismatch      = errors.New("payload disagrees with topic")
	ErrInvalidField       = errors.New("invalid field")
	// ErrSeqOutOfRange marks a seq or first_seq no real device can have
	// reached (beyond MaxSeq, or further ahead of what was acknowledged
	// than any spool holds).
	ErrSeqOutOfRange = errors.New("seq out of range")
)

// ErrorKind classifies a failed sample.
type ErrorKind string

// The kinds of sample errors. Only intermittent errors are worth retrying.
const (
	Intermittent ErrorKind = "intermittent"
	Persistent   ErrorKind = "persistent"
)

// SampleError is the "error" member of a failed reading.
type SampleError struct {
	Kind    ErrorKind `json:"kind"`
	Message string    `json:"message"`
}

// Reading is one sample of one sensor of one host, as it travels on the wire
// and as it is stored.
type Reading struct {
	Host   string
	Sensor string
	Title  string
	// Time is when the device took the sample (or, for a bare third-party
	// payload, when the aggregator received it), at millisecond resolution.
	Time time.Time
	// Seq is the host's reading counter; 0 means the payload had none.
	Seq uint64
	// Value is the compact JSON value; nil exactly when Error is set.
	Value json.RawMessage
	Error *SampleError
	Human string
	// Extra holds members this version does not know, compacted, so that a
	// consumer that round-trips a reading keeps them.
	Extra map[string]json.RawMessage
}

const timeLayout = "2006-01-02T15:04:05.000Z"

// FormatTime writes t as the wire format does: RFC 3339, UTC, milliseconds.
func FormatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// ParseTime parses an RFC 3339 timestamp with any number of fractional
// digits and truncates it to the millisecond.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC().Truncate(time.Millisecond), nil
}

// known lists the members AppendJSON writes itself, in order.
var known = map[string]bool{"v": true, "host": true, "sensor": true, "title": true,
	"ts": true, "seq": true, "value": true, "error": true, "human": true}

// Decode turns a payload received on the topic of host's sensor into a
// Reading. It accepts:
//
//   - a v1 reading object ({"v":1,...}), whose host and sensor, where given,
//     must equal the topic's (the topic is authoritative);
//   - any other JSON value, including an object without "v" (Tasmota's
//     {"Temperature":21.3}): a third-party device's bare value, stamped
//     with received. An object without "v" that has a "value" member is
//     apd's envelope missing its version, refused (ErrUnsupportedVersion).
//
// The value is compacted; unknown members of a v1 object are kept in Extra.
// Errors wrap ErrInvalidJSON, ErrUnsupportedVersion, ErrTopicMismatch or
// ErrInvalidField.
func Decode(host, sensor string, payload []byte, received time.Time) (Reading, error) {
	payload = bytes.TrimSpace(payload)
	if len(payload) == 0 {
		return Reading{}, fmt.Errorf("%w: empty payload", ErrInvalidJSON)
	}
	r := Reading{Host: host, Sensor: sensor}
	if payload[0] == '{' {
		var members [16]member
		obj, err := objectOf(members[:0], payload)
		if err != nil {
			return Reading{}, err
		}
		if v, ok := obj.get("v"); ok {
			if string(v) != "1" {
				return Reading{}, fmt.Errorf("%w: %s (this apd reads %d)", ErrUnsupportedVersion, v, Version)
			}
			if err := r.fromObject(obj); err != nil {
				return Reading{}, err
			}
			return r, nil
		}
		if _, ok := obj.get("value"); ok {
			// apd's envelope without its version: a device or bridge that
			// meant a reading, whose ts, seq and unit would be taken as
			// the value's parts if it were stored as a bare object.
			return Reading{}, fmt.Errorf("%w: an object with \"value\" but no \"v\" (want \"v\":%d)", ErrUnsupportedVersion, Version)
		}
	} else if !json.Valid(payload) {
		return Reading{}, fmt.Errorf("%w: not a JSON value", ErrInvalidJSON)
	}
	r.Time = received.UTC().Truncate(time.Millisecond)
	r.Value = compact(payload)
	if err := checkFinite(r.Value); err != nil {
		return Reading{}, err
	}
	return r, nil
}

// checkFinite rejects a number or quantity magnitude too large for a
// float64: JSON has no Inf, and such a value would poison every aggregate.
func checkFinite(v json.RawMessage) error {
	if len(v) == 0 {
		return nil
	}
	var raw json.RawMessage = v
	if v[0] == '{' {
		var members [8]member
		ms, ok := appendMembers(members[:0], v)
		if ok {
			raw, _ = object(ms).get("magnitude")
		} else {
			var q struct {
				Magnitude json.RawMessage `json:"magnitude"`
			}
			if json.Unmarshal(v, &q) != nil {
				return nil
			}
			raw = q.Magnitude
		}
		if raw == nil {
			return nil
		}
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return nil
	}
	if _, err := strconv.ParseFloat(string(raw), 64); err != nil {
		return fmt.Errorf("%w: number %.40s is out of range", ErrInvalidField, raw)
	}
	return nil
}

// DecodeSelfDescribing decodes a v1 reading that names its own host and
// sensor, as apd export writes one per line: "v", "host", "sensor" and "ts"
// are required. Errors wrap the same sentinels as Decode, and
// ErrInvalidName for a bad host or sensor.
func DecodeSelfDescribing(payload []byte) (Reading, error) {
	var members [16]member
	obj, err := objectOf(members[:0], payload)
	if err != nil {
		return Reading{}, err
	}
	if v, ok := obj.get("v"); !ok || string(v) != "1" {
		return Reading{}, fmt.Errorf("%w: want \"v\":%d", ErrUnsupportedVersion, Version)
	}
	var r Reading
	for _, f := range [...]struct {
		name string
		dst  *string
	}{{"host", &r.Host}, {"sensor", &r.Sensor}} {
		raw, ok := obj.get(f.name)
		if !ok || decodeString(raw, f.dst) != nil {
			return Reading{}, fmt.Errorf("%w: %s missing or not a string", ErrInvalidField, f.name)
		}
		if err := ValidateName(*f.dst); err != nil {
			return Reading{}, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if err := r.fromObject(obj); err != nil {
		return Reading{}, err
	}
	return r, nil
}

func (r *Reading) fromObject(obj object) error {
	for _, m := range [...]struct {
		name, want string
	}{{"host", r.Host}, {"sensor", r.Sensor}} {
		raw, ok := obj.get(m.name)
		if !ok {
			continue
		}
		var got string
		if err := decodeString(raw, &got); err != nil {
			return fmt.Errorf("%w: %s is not a string", ErrInvalidField, m.name)
		}
		if got != m.want {
			return fmt.Errorf("%w: %s %q in payload, %q in topic", ErrTopicMismatch, m.name, got, m.want)
		}
	}
	rawTS, ok := obj.get("ts")
	if !ok {
		return fmt.Errorf("%w: ts missing", ErrInvalidField)
	}
	var ts string
	if err := decodeString(rawTS, &ts); err != nil {
		return fmt.Errorf("%w: ts is not a string", ErrInvalidField)
	}
	t, err := ParseTime(ts)
	if err != nil {
		return fmt.Errorf("%w: ts %q is not RFC 3339", ErrInvalidField, ts)
	}
	r.Time = t
	if raw, ok := obj.get("seq"); ok {
		if r.Seq, err = strconv.ParseUint(string(raw), 10, 64); err != nil {
			return fmt.Errorf("%w: seq %s is not a whole number", ErrInvalidField, raw)
		}
		if r.Seq > MaxSeq {
			return fmt.Errorf("%w: seq %d is beyond %d", ErrSeqOutOfRange, r.Seq, uint64(MaxSeq))
		}
	}
	for _, f := range [...]struct {
		name string
		dst  *string
	}{{"title", &r.Title}, {"human", &r.Human}} {
		if raw, ok := obj.get(f.name); ok {
			if err := decodeString(raw, f.dst); err != nil {
				return fmt.Errorf("%w: %s is not a string", ErrInvalidField, f.name)
			}
		}
	}
	if raw, ok := obj.get("error"); ok && string(raw) != "null" {
		var se SampleError
		if err := json.Unmarshal(raw, &se); err != nil {
			return fmt.Errorf("%w: error is not {\"kind\",\"message\"}", ErrInvalidField)
		}
		if se.Kind != Intermittent && se.Kind != Persistent {
			return fmt.Errorf("%w: error kind %q (want %q or %q)", ErrInvalidField, se.Kind, Intermittent, Persistent)
		}
		r.Error = &se
	} else if raw, ok := obj.get("value"); ok {
		r.Value = compact(raw)
		if err := checkFinite(r.Value); err != nil {
			return err
		}
	} else {
		return fmt.Errorf("%w: neither value nor error", ErrInvalidField)
	}
	for _, m := range obj {
		if !known[string(m.key)] {
			if r.Extra == nil {
				r.Extra = make(map[string]json.RawMessage)
			}
			r.Extra[string(m.key)] = compact(m.value) // in order: the last of repeated keys wins
		}
	}
	return nil
}

func compact(raw []byte) json.RawMessage {
	if !bytes.ContainsAny(raw, " \t\n\r") {
		return append(json.RawMessage(nil), raw...) // compact already
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return append(json.RawMessage(nil), raw...)
	}
	return b.Bytes()
}

// objectOf returns the members of a JSON object by key (the last of
// repeated keys wins, as with encoding/json), or an error wrapping
// ErrInvalidJSON.
func objectOf(buf []member, payload []byte) (object, error) {
	if ms, ok := appendMembers(buf, payload); ok {
		return ms, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	return objectFromMap(buf, m), nil
}

// objectFromMap turns encoding/json's decoding of an object into one
// (keys unique, so order does not matter).
func objectFromMap(buf []member, m map[string]json.RawMessage) object {
	obj := buf[:0]
	for k, v := range m {
		obj = append(obj, member{key: []byte(k), value: v})
	}
	return obj
}

// Fields selects which identifying members AppendJSON writes.
type Fields uint8

// Field sets for AppendJSON.
const (
	// WithIdentity writes v, host, sensor and ts: the full wire form.
	WithIdentity Fields = 1 << iota
)

// AppendJSON appends the canonical JSON form of r to buf: members in the
// order v, host, sensor, title, ts, seq, value|error, human, then unknown
// members sorted by name. Empty title, human and zero seq are left out.
// Without WithIdentity it leaves out v, host, sensor and ts, which a store
// keeps in its keys.
func (r *Reading) AppendJSON(buf []byte, f Fields) []byte {
	buf = append(buf, '{')
	first := true
	member := func(name string) {
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = appendString(buf, name)
		buf = append(buf, ':')
	}
	if f&WithIdentity != 0 {
		member("v")
		buf = strconv.AppendInt(buf, Version, 10)
		member("host")
		buf = appendString(buf, r.Host)
		member("sensor")
		buf = appendString(buf, r.Sensor)
	}
	if r.Title != "" {
		member("title")
		buf = appendString(buf, r.Title)
	}
	if f&WithIdentity != 0 {
		member("ts")
		buf = append(buf, '"')
		buf = r.Time.UTC().AppendFormat(buf, timeLayout)
		buf = append(buf, '"')
	}
	if r.Seq != 0 {
		member("seq")
		buf = strconv.AppendUint(buf, r.Seq, 10)
	}
	if r.Error != nil {
		member("error")
		buf = append(buf, `{"kind":`...)
		buf = appendString(buf, string(r.Error.Kind))
		buf = append(buf, `,"message":`...)
		buf = appendString(buf, r.Error.Message)
		buf = append(buf, '}')
	} else {
		member("value")
		if len(r.Value) == 0 {
			buf = append(buf, "null"...)
		} else {
			buf = append(buf, r.Value...)
		}
	}
	if r.Human != "" {
		member("human")
		buf = appendString(buf, r.Human)
	}
	if len(r.Extra) > 0 {
		keys := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if known[k] {
				continue
			}
			member(k)
			buf = append(buf, r.Extra[k]...)
		}
	}
	return append(buf, '}')
}

// MarshalJSON returns the canonical wire form (see AppendJSON).
func (r Reading) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil, WithIdentity), nil }

// DecodeStored is the inverse of AppendJSON without WithIdentity: it rebuilds
// a reading from a store's record and the host, sensor and time kept in its
// keys.
func DecodeStored(host, sensor string, t time.Time, record []byte) (Reading, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(record, &m); err != nil {
		return Reading{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	m["ts"] = json.RawMessage(strconv.Quote(FormatTime(t)))
	obj := objectFromMap(nil, m)
	r := Reading{Host: host, Sensor: sensor}
	if err := r.fromObject(obj); err != nil {
		return Reading{}, err
	}
	return r, nil
}

func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}
