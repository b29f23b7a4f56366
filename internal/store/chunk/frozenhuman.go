package chunk

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// frozenHuman is the human text a reading's value implies under the
// chunk codec's own, frozen rendering of quantities and numbers: what
// schema's formatters gave for them when this codec was written. A
// reading whose human text equals it is stored without the text (most
// readings are quantities), every other text is stored as received.
//
// It is a copy on purpose and must never change: the live formatters
// (schema.Format and the sensors' own) may change or be swapped, and
// stored data must not change with them. A different rendering would be
// a new human kind in the codec, not an edit here.
func frozenHuman(value json.RawMessage) (string, bool) {
	if q, ok := schema.ParseQuantity(value); ok {
		return frozenQuantity(q)
	}
	var f float64
	if err := json.Unmarshal(value, &f); err == nil && !strings.ContainsAny(string(value), `"`) {
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	return "", false
}

func frozenQuantity(q schema.Quantity) (string, bool) {
	m := q.Magnitude
	switch q.Unit {
	case "degC":
		return fmt.Sprintf("%.1f °C (%.1f °F)", m, m*9/5+32), true
	case "degF":
		return fmt.Sprintf("%.1f °F", m), true
	case "K":
		return fmt.Sprintf("%.2f K", m), true
	case "ratio":
		return fmt.Sprintf("%.1f%%", m*100), true
	case "percent":
		return fmt.Sprintf("%.1f%%", m), true
	case "B":
		return frozenBytes(m), true
	case "Wh":
		if math.Abs(m) >= 1000 {
			return fmt.Sprintf("%.3f kWh", m/1000), true
		}
		return fmt.Sprintf("%.3f Wh", m), true
	case "W":
		if math.Abs(m) >= 1000 {
			return fmt.Sprintf("%.3f kW", m/1000), true
		}
		return fmt.Sprintf("%.1f W", m), true
	case "s":
		return frozenSeconds(m), true
	case "":
		return strconv.FormatFloat(m, 'f', -1, 64), true
	}
	return "", false
}

func frozenBytes(n float64) string {
	prefixes := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for math.Abs(n) >= 1024 && i < len(prefixes)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, prefixes[i])
}

func frozenSeconds(sec float64) string {
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	if d < time.Minute {
		return d.String()
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h, m, s := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	var parts []string
	if days > 0 {
		parts = append(parts, fmt.Sprintf("%dd", days))
	}
	if days > 0 || h > 0 {
		parts = append(parts, fmt.Sprintf("%dh", h))
	}
	parts = append(parts, fmt.Sprintf("%dm", m), fmt.Sprintf("%ds", s))
	return strings.Join(parts, " ")
}
