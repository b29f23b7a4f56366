package schema

import (
	"encoding/json"
	"unicode/utf8"
)

// member is one member of a JSON object: its key and its value's text,
// both within the payload.
type member struct {
	key   []byte
	value json.RawMessage
}

// object is a JSON object's members in order. Repeated keys are kept; get
// returns the last, as encoding/json does.
type object []member

func (o object) get(name string) (json.RawMessage, bool) {
	for i := len(o) - 1; i >= 0; i-- {
		if string(o[i].key) == name {
			return o[i].value, true
		}
	}
	return nil, false
}

// objectMembers splits a JSON object into its members, in order, without
// encoding/json's reflection: a fleet's aggregator decodes every payload,
// and encoding/json spent 16 µs on each. It reports ok false for anything
// it does not fully check — escapes or non-ASCII in keys, a malformed value — and the
// caller then asks encoding/json, which has the last word on what is JSON
// and what its errors say.
func objectMembers(b []byte) ([]member, bool) { return appendMembers(nil, b) }

// appendMembers is objectMembers appending to out (a caller's array, so
// that a payload's members cost no allocation).
func appendMembers(out []member, b []byte) ([]member, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	out, end, ok := scanObject(out, b, i, true, 0)
	return out, ok && skipSpace(b, end) == len(b)
}

// maxScanDepth bounds the objects within objects the scanner follows;
// deeper ones are left to encoding/json.
const maxScanDepth = 16

// scanObject reads the object at b[i] ('{'), appending its members to out
// when collect is set, and returns where it ends.
func scanObject(out []member, b []byte, i int, collect bool, depth int) ([]member, int, bool) {
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return out, i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, 0, false
		}
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if b[j] == '\\' || b[j] < 0x20 || b[j] >= 0x80 {
				return nil, 0, false // escapes and non-ASCII keys: encoding/json's rules
			}
			j++
		}
		if j >= len(b) {
			return nil, 0, false
		}
		key := b[i+1 : j : j]
		i = skipSpace(b, j+1)
		if i >= len(b) || b[i] != ':' {
			return nil, 0, false
		}
		i = skipSpace(b, i+1)
		end, ok := skipValueAt(b, i, depth)
		if !ok {
			return nil, 0, false
		}
		if collect {
			out = append(out, member{key: key, value: b[i:end]})
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, 0, false
		}
		if b[i] == '}' {
			return out, i + 1, true
		}
		if b[i] != ',' {
			return nil, 0, false
		}
		i = skipSpace(b, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValueAt returns where the JSON value at b[i] ends, i being within
// depth objects. Strings, numbers and objects the scanner can read are
// checked here; arrays and the rest by encoding/json's Valid.
func skipValueAt(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{' && depth < maxScanDepth:
		if _, end, ok := scanObject(nil, b, i, false, depth+1); ok {
			return end, true
		}
		fallthrough // escapes, non-ASCII keys, or not JSON: encoding/json decides
	case c == '{' || c == '[':
		depth, j := 0, i
		for j < len(b) {
			switch b[j] {
			case '"':
				end, ok := skipString(b, j)
				if !ok {
					return 0, false
				}
				j = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, json.Valid(b[i : j+1])
				}
			}
			j++
		}
		return 0, false
	case c == '-' || c >= '0' && c <= '9':
		return skipNumber(b, i)
	}
	for _, lit := range []string{"true", "false", "null"} {
		if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
			return i + len(lit), true
		}
	}
	return 0, false
}

// skipString returns the end of the string starting at b[i] == '"',
// refusing control characters and bad escapes.
func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			if j+1 >= len(b) {
				return 0, false
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+5 >= len(b) {
					return 0, false
				}
				for _, h := range b[j+2 : j+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, false
					}
				}
				j += 5
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

// skipNumber returns the end of the JSON number starting at i, checking
// its grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) (int, bool) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	digits := func() bool {
		start := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j > start
	}
	if j < len(b) && b[j] == '0' {
		j++
	} else if !digits() {
		return 0, false
	}
	if j < len(b) && b[j] == '.' {
		j++
		if !digits() {
			return 0, false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if !digits() {
			return 0, false
		}
	}
	return j, true
}

// plainString returns the text of a JSON string without escapes, ok false
// for one with escapes (decode it with encoding/json) or not a string.
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	s := raw[1 : len(raw)-1]
	for _, c := range s {
		if c == '\\' || c == '"' {
			return "", false
		}
	}
	if !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

// decodeString reads a JSON string, the fast way when it has no escapes.
func decodeString(raw json.RawMessage, dst *string) error {
	if s, ok := plainString(raw); ok {
		*dst = s
		return nil
	}
	return json.Unmarshal(raw, dst)
}
