package schema

import (
	"bytes"
	"encoding/json"
)

// Quantity is a physical value: a number and its unit.
type Quantity struct {
	Magnitude float64 `json:"magnitude"`
	Unit      string  `json:"unit"`
}

// Raw returns q as a compact JSON value.
func (q Quantity) Raw() json.RawMessage {
	b, _ := json.Marshal(q)
	return b
}

// ParseQuantity reads a {"magnitude":..,"unit":..} value. It reports false
// for anything else, including an object without a numeric magnitude.
func ParseQuantity(raw json.RawMessage) (Quantity, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return Quantity{}, false
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
		var f float64
		if json.Unmarshal(raw, &f) != nil {
			return 0, false
		}
		return f, true
	}
	return 0, false
}
