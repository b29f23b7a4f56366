package schema

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// Quantity is a physical value: a number and its unit.
type Quantity struct {
	Magnitude float64 `json:"magnitude"`
	Unit      string  `json:"unit"`
}

// Raw returns q as a compact JSON value, as encoding/json writes it.
func (q Quantity) Raw() json.RawMessage {
	// Written by hand where encoding/json's output is plain (a magnitude
	// it writes without an exponent, a unit without escapes): aggregates
	// make one per window, and reflection was most of their cost.
	if a := math.Abs(q.Magnitude); (a == 0 || a >= 1e-6 && a < 1e21) && plainASCII(q.Unit) {
		b := make([]byte, 0, 32+len(q.Unit))
		b = append(b, `{"magnitude":`...)
		b = strconv.AppendFloat(b, q.Magnitude, 'f', -1, 64)
		b = append(b, `,"unit":"`...)
		b = append(b, q.Unit...)
		return append(b, `"}`...)
	}
	b, _ := json.Marshal(q)
	return b
}

// plainASCII reports whether encoding/json writes s as it is, in quotes.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// ParseQuantity reads a {"magnitude":..,"unit":..} value. It reports false
// for anything else, including an object without a numeric magnitude.
func ParseQuantity(raw json.RawMessage) (Quantity, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return Quantity{}, false
	}
	if q, ok := canonicalQuantity(raw); ok {
		return q, true
	}
	var w struct {
		Magnitude *float64 `json:"magnitude"`
		Unit      string   `json:"unit"`
	}
	if json.Unmarshal(raw, &w) != nil || w.Magnitude == nil {
		return Quantity{}, false
	}
	return Quantity{Magnitude: *w.Magnitude, Unit: w.Unit}, true
}

// Numeric returns the number a value stands for in comparisons and
// aggregates: a JSON number itself, a quantity's magnitude, a boolean as 0
// or 1. It reports false for every other value.
func Numeric(raw json.RawMessage) (float64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0, false
	}
	switch raw[0] {
	case 't':
		return 1, string(raw) == "true"
	case 'f':
		return 0, string(raw) == "false"
	case '{':
		q, ok := ParseQuantity(raw)
		return q.Magnitude, ok
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return parseNumber(raw)
	}
	return 0, false
}

// parseNumber reads a JSON number as encoding/json does: the grammar
// checked first (strconv also takes hex, underscores and "Inf"), a
// number beyond float64's range refused.
func parseNumber(raw []byte) (float64, bool) {
	if end, ok := skipNumber(raw, 0); !ok || end != len(raw) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

// canonicalQuantity reads the form Quantity.Raw writes and the store
// gives back, {"magnitude":<number>,"unit":"<text without escapes>"},
// without encoding/json, which cost most of an aggregation's time; any
// other form is left to encoding/json (ok false).
func canonicalQuantity(raw []byte) (Quantity, bool) {
	const head, mid = `{"magnitude":`, `,"unit":"`
	if !bytes.HasPrefix(raw, []byte(head)) {
		return Quantity{}, false
	}
	end, ok := skipNumber(raw, len(head))
	if !ok || !bytes.HasPrefix(raw[end:], []byte(mid)) {
		return Quantity{}, false
	}
	m, ok := parseNumber(raw[len(head):end])
	if !ok {
		return Quantity{}, false
	}
	unit := raw[end+len(mid):]
	if len(unit) < 2 || unit[len(unit)-2] != '"' || unit[len(unit)-1] != '}' {
		return Quantity{}, false
	}
	unit = unit[:len(unit)-2]
	for _, c := range unit {
		if c == '"' || c == '\\' || c < 0x20 {
			return Quantity{}, false
		}
	}
	if !utf8.Valid(unit) {
		return Quantity{}, false
	}
	return Quantity{Magnitude: m, Unit: string(unit)}, true
}
