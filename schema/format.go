package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Formatter turns a stored value into the text people read. It needs the
// value alone, no hardware, so the aggregator can format any host's
// readings.
type Formatter func(value json.RawMessage) string

// formatters holds the formats sensors registered for their values (see
// RegisterFormat). It is written only by init functions, read after.
var formatters = map[string]Formatter{}

// RegisterFormat gives the sensor called name a format of its own, for
// values whose shape says too little (true → "Connected"). A sensor
// package calls it from init, beside publisher.Register; the aggregator
// links the sensor packages, so it formats any host's readings the same
// way. It panics if the name has a format already.
func RegisterFormat(sensor string, f Formatter) {
	if _, dup := formatters[sensor]; dup {
		panic("schema: format of " + sensor + " registered twice")
	}
	formatters[sensor] = f
}

// Format returns the human form of a value of the named sensor: the
// sensor's registered format, otherwise a format chosen by the value's
// shape (see [FormatValue]).
func Format(sensor string, value json.RawMessage) string {
	if f, ok := formatters[sensor]; ok {
		return f(value)
	}
	return FormatValue(value)
}

// FormatValue formats a value by its shape: a quantity by its unit, a
// boolean as true/false, a string as itself, a list one item per line, any
// other JSON as compact JSON.
func FormatValue(value json.RawMessage) string {
	if q, ok := ParseQuantity(value); ok {
		return FormatQuantity(q)
	}
	if t := bytes.TrimSpace(value); len(t) > 0 && (t[0] == '-' || t[0] >= '0' && t[0] <= '9') {
		if f, ok := parseNumber(t); ok {
			return formatNumber(f)
		}
	}
	var v any
	if err := json.Unmarshal(value, &v); err != nil {
		return string(value)
	}
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return formatNumber(x)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		lines := make([]string, len(x))
		for i, e := range x {
			b, _ := json.Marshal(e)
			lines[i] = FormatValue(b)
		}
		return strings.Join(lines, "\n")
	}
	return string(value)
}

func formatNumber(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// FormatQuantity formats a quantity by its unit: temperatures with one
// decimal and the Fahrenheit equivalent, bytes on a binary scale, energy in
// kWh from 1000 Wh, ratios and percentages as percent.
func FormatQuantity(q Quantity) string {
	unit, _ := CanonicalUnit(q.Unit)
	m := q.Magnitude
	switch unit {
	case UnitCelsius:
		return FormatCelsius(m)
	case UnitFahrenheit:
		return fmt.Sprintf("%.1f °F", m)
	case UnitKelvin:
		return fmt.Sprintf("%.2f K", m)
	case UnitRatio:
		return formatPercent(m * 100)
	case UnitPercent:
		return formatPercent(m)
	case UnitBytes:
		return FormatBytes(m)
	case UnitWattHour:
		if math.Abs(m) >= 1000 {
			return fmt.Sprintf("%.3f kWh", m/1000)
		}
		return fmt.Sprintf("%.3f Wh", m)
	case UnitWatt:
		if math.Abs(m) >= 1000 {
			return fmt.Sprintf("%.3f kW", m/1000)
		}
		return fmt.Sprintf("%.1f W", m)
	case UnitSecond:
		return FormatDuration(m)
	case UnitDegree:
		return formatNumber(m) + "°"
	case "":
		return formatNumber(m)
	}
	return formatNumber(m) + " " + q.Unit
}

// FormatCelsius formats a temperature as "21.0 °C (69.8 °F)".
func FormatCelsius(c float64) string {
	return fmt.Sprintf("%.1f °C (%.1f °F)", c, c*9/5+32)
}

func formatPercent(p float64) string { return fmt.Sprintf("%.1f%%", p) }

// FormatRatio formats a 0–1 ratio (a number or a ratio quantity) as a
// percentage with one decimal: 0.098 → "9.8%".
func FormatRatio(value json.RawMessage) string {
	if q, ok := ParseQuantity(value); ok && q.Unit != UnitRatio && q.Unit != "" {
		return FormatQuantity(q)
	}
	if f, ok := Numeric(value); ok {
		return formatPercent(f * 100)
	}
	return FormatValue(value)
}

var binaryPrefixes = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// FormatBytes formats a byte count on a binary scale with one decimal:
// 716476416 → "683.3 MiB". Counts under 1024 are whole bytes.
func FormatBytes(n float64) string {
	return FormatBytesIn(n, n, 1)
}

// FormatBytesIn formats n bytes in the binary unit FormatBytes would
// choose for scale, with decimals (whole bytes have none): numbers shown
// together, like the ticks of an axis, then share one unit and one
// precision. FormatBytesIn(n, n, 1) is FormatBytes(n).
func FormatBytesIn(n, scale float64, decimals int) string {
	i := 0
	for math.Abs(scale) >= 1024 && i < len(binaryPrefixes)-1 {
		scale /= 1024
		n /= 1024
		i++
	}
	if i == 0 {
		decimals = 0
	}
	return fmt.Sprintf("%.*f %s", decimals, n, binaryPrefixes[i])
}

// FormatDuration formats seconds as days, hours, minutes and seconds,
// dropping leading zero parts: 273906 → "3d 4h 5m 6s".
func FormatDuration(sec float64) string {
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	if d < time.Minute {
		return d.String()
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h, m, s := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	parts := []string{}
	if days > 0 {
		parts = append(parts, fmt.Sprintf("%dd", days))
	}
	if days > 0 || h > 0 {
		parts = append(parts, fmt.Sprintf("%dh", h))
	}
	parts = append(parts, fmt.Sprintf("%dm", m), fmt.Sprintf("%ds", s))
	return strings.Join(parts, " ")
}

// FormatUptime formats an uptime in seconds (a number or an "s" quantity).
func FormatUptime(value json.RawMessage) string {
	if f, ok := Numeric(value); ok {
		return FormatDuration(f)
	}
	return FormatValue(value)
}

// VersionInfo is the value of the version sensor.
type VersionInfo struct {
	Apd  string `json:"apd"`
	Go   string `json:"go"`
	OS   string `json:"os"`
	Arch string `json:"arch"`
}

// FormatVersion formats a version value as "apd 0.3.0 (go1.26.8, linux/arm)".
func FormatVersion(value json.RawMessage) string {
	var v VersionInfo
	if json.Unmarshal(value, &v) != nil || v.Apd == "" {
		return FormatValue(value)
	}
	return fmt.Sprintf("apd %s (%s, %s/%s)", v.Apd, v.Go, v.OS, v.Arch)
}

// FormatIPAddresses formats a list of addresses one per line with its
// family: "192.168.1.246 (IPv4)".
func FormatIPAddresses(value json.RawMessage) string {
	var addrs []string
	if json.Unmarshal(value, &addrs) != nil {
		return FormatValue(value)
	}
	lines := make([]string, len(addrs))
	for i, a := range addrs {
		family := "IPv6"
		if ip, err := netip.ParseAddr(a); err == nil && ip.Unmap().Is4() {
			family = "IPv4"
		}
		lines[i] = fmt.Sprintf("%s (%s)", a, family)
	}
	return strings.Join(lines, "\n")
}

// FormatConnected formats a boolean power-supply state as "Connected" or
// "Not connected".
func FormatConnected(value json.RawMessage) string {
	switch strings.TrimSpace(string(value)) {
	case "true":
		return "Connected"
	case "false":
		return "Not connected"
	}
	return FormatValue(value)
}

// Printable returns s safe to print on a terminal: control characters
// (C0 but tab, DEL, C1), Unicode direction overrides and bytes that are
// not UTF-8 are written as Go escapes (\x1b, \u202e). Device-supplied text
// reaches people's terminals; an escape sequence in a reading must not
// clear their screen or retitle their window.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if unprintable(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80 && unprintable(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unprintable(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func unprintable(r rune) bool {
	switch {
	case r == '\t':
		return false
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f, r == utf8.RuneError:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f:
		return true
	}
	return false
}

// Human returns the text people read for a reading: its own human form,
// else the sensor's format of its value, else its error; one line per
// line of it, each safe for a terminal (Printable).
func Human(r *Reading) string {
	if r.Error != nil {
		return PrintableLines("error (" + string(r.Error.Kind) + "): " + r.Error.Message)
	}
	if r.Human != "" {
		return PrintableLines(r.Human)
	}
	return PrintableLines(Format(r.Sensor, r.Value))
}

// PrintableLines is Printable line by line, keeping the line breaks.
func PrintableLines(s string) string {
	if !strings.ContainsRune(s, '\n') {
		return Printable(s)
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Printable(l)
	}
	return strings.Join(lines, "\n")
}
