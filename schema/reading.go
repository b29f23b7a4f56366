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
//   - any other JSON value, including an object without "v": a third-party
//     device's bare value, stamped with received.
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
		obj, err := objectOf(payload)
		if err != nil {
			return Reading{}, err
		}
		if v, ok := obj["v"]; ok {
			if string(v) != "1" {
				return Reading{}, fmt.Errorf("%w: %s (this apd reads %d)", ErrUnsupportedVersion, v, Version)
			}
			if err := r.fromObject(obj); err != nil {
				return Reading{}, err
			}
			return r, nil
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
		ms, ok := objectMembers(v)
		if !ok {
			var q struct {
				Magnitude json.RawMessage `json:"magnitude"`
			}
			if json.Unmarshal(v, &q) != nil || q.Magnitude == nil {
				return nil
			}
			ms = []member{{key: "magnitude", value: q.Magnitude}}
		}
		raw = nil
		for _, m := range ms {
			if m.key == "magnitude" {
				raw = m.value
			}
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
	obj, err := objectOf(payload)
	if err != nil {
		return Reading{}, err
	}
	if v, ok := obj["v"]; !ok || string(v) != "1" {
		return Reading{}, fmt.Errorf("%w: want \"v\":%d", ErrUnsupportedVersion, Version)
	}
	var r Reading
	for name, dst := range map[string]*string{"host": &r.Host, "sensor": &r.Sensor} {
		raw, ok := obj[name]
		if !ok || decodeString(raw, dst) != nil {
			return Reading{}, fmt.Errorf("%w: %s missing or not a string", ErrInvalidField, name)
		}
		if err := ValidateName(*dst); err != nil {
			return Reading{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := r.fromObject(obj); err != nil {
		return Reading{}, err
	}
	return r, nil
}

func (r *Reading) fromObject(obj map[string]json.RawMessage) error {
	for _, m := range []struct {
		name, want string
	}{{"host", r.Host}, {"sensor", r.Sensor}} {
		raw, ok := obj[m.name]
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
	rawTS, ok := obj["ts"]
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
	if raw, ok := obj["seq"]; ok {
		if r.Seq, err = strconv.ParseUint(string(raw), 10, 64); err != nil {
			return fmt.Errorf("%w: seq %s is not a whole number", ErrInvalidField, raw)
		}
		if r.Seq > MaxSeq {
			return fmt.Errorf("%w: seq %d is beyond %d", ErrSeqOutOfRange, r.Seq, uint64(MaxSeq))
		}
	}
	for name, dst := range map[string]*string{"title": &r.Title, "human": &r.Human} {
		if raw, ok := obj[name]; ok {
			if err := decodeString(raw, dst); err != nil {
				return fmt.Errorf("%w: %s is not a string", ErrInvalidField, name)
			}
		}
	}
	if raw, ok := obj["error"]; ok && string(raw) != "null" {
		var se SampleError
		if err := json.Unmarshal(raw, &se); err != nil {
			return fmt.Errorf("%w: error is not {\"kind\",\"message\"}", ErrInvalidField)
		}
		if se.Kind != Intermittent && se.Kind != Persistent {
			return fmt.Errorf("%w: error kind %q (want %q or %q)", ErrInvalidField, se.Kind, Intermittent, Persistent)
		}
		r.Error = &se
	} else if raw, ok := obj["value"]; ok {
		r.Value = compact(raw)
		if err := checkFinite(r.Value); err != nil {
			return err
		}
	} else {
		return fmt.Errorf("%w: neither value nor error", ErrInvalidField)
	}
	for k, v := range obj {
		if !known[k] {
			if r.Extra == nil {
				r.Extra = make(map[string]json.RawMessage)
			}
			r.Extra[k] = compact(v)
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
func objectOf(payload []byte) (map[string]json.RawMessage, error) {
	if ms, ok := objectMembers(payload); ok {
		obj := make(map[string]json.RawMessage, len(ms))
		for _, m := range ms {
			obj[m.key] = m.value
		}
		return obj, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(payload, &obj); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	return obj, nil
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
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(record, &obj); err != nil {
		return Reading{}, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	obj["ts"] = json.RawMessage(strconv.Quote(FormatTime(t)))
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
