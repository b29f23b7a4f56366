package influxline

import (
	"fmt"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/apd-telemetry/apd/schema"
)

// The mapping from a series' identity in InfluxDB's or Prometheus' data
// model to apd's host and sensor, shared by both write endpoints
// (docs/integrations/telegraf.md has the table of Telegraf's examples):
//
//   - The host is the value of the host tag (label), sanitised with
//     schema.SanitizeName. remote_write falls back to the instance label
//     without its port.
//   - The sensor is the series' other parts folded into one name
//     (FoldName): InfluxDB's measurement, field and the values of the
//     remaining tags in tag-key order; Prometheus' metric name and the
//     values of the remaining labels in label-name order.
//
// Folding joins the parts with '.' and writes every character of a part
// outside [A-Za-z0-9_-] as '-'. It is reversible (UnfoldName) when no
// part held '.' or another character outside that set, and given the
// series' tag keys (or label names): they are not in the name, since
// Telegraf's plugins fix them per measurement and spelling them out
// would not fit 64 characters. A name longer than schema.MaxNameLen is
// refused, never cut: a cut name could merge two series.

// partSeparator joins the parts of a folded sensor name.
const partSeparator = '.'

// FoldName folds the parts of a series' identity into a sensor name:
// each part with every character outside [A-Za-z0-9_-] written as '-',
// joined by '.'; empty parts are left out. It returns an error wrapping
// schema.ErrInvalidName when nothing is left or the name is longer than
// schema.MaxNameLen.
func FoldName(parts ...string) (string, error) {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(partSeparator)
		}
		for _, c := range p {
			if c < utf8.RuneSelf && partByte(byte(c)) {
				b.WriteByte(byte(c))
			} else {
				b.WriteByte('-')
			}
		}
	}
	name := b.String()
	if name == "" {
		return "", fmt.Errorf("%w: empty", schema.ErrInvalidName)
	}
	if len(name) > schema.MaxNameLen {
		return "", fmt.Errorf("%w: %q is %d characters, at most %d", schema.ErrInvalidName, name, len(name), schema.MaxNameLen)
	}
	return name, nil
}

// partByte reports whether b stands for itself in a folded part: a name
// character other than the separator.
func partByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
}

// UnfoldName is FoldName backwards: the parts of a folded sensor name.
// They are the original parts when these held only [A-Za-z0-9_-];
// otherwise each character outside that set reads as '-'.
func UnfoldName(sensor string) []string {
	return strings.Split(sensor, string(partSeparator))
}

// HostName is the apd host of a host tag's or label's value.
func HostName(value string) string { return schema.SanitizeName(value) }

// InstanceHost is the apd host of a Prometheus instance label
// ("localhost:9100" → "localhost"): the port names the exporter, not the
// machine, and one machine's exporters should share a host.
func InstanceHost(instance string) string {
	if h, _, err := net.SplitHostPort(instance); err == nil && h != "" {
		instance = h
	}
	return HostName(instance)
}

// unitSuffixes are the field and metric name endings that say a unit,
// after Prometheus' naming conventions (base units, plural) and
// Telegraf's (_bytes, _percent).
var unitSuffixes = []struct{ suffix, unit string }{
	{"_bytes", schema.UnitBytes},
	{"_percent", schema.UnitPercent},
	{"_ratio", schema.UnitRatio},
	{"_celsius", schema.UnitCelsius},
	{"_fahrenheit", schema.UnitFahrenheit},
	{"_kelvin", schema.UnitKelvin},
	{"_seconds", schema.UnitSecond},
	{"_watts", schema.UnitWatt},
	{"_watt_hours", schema.UnitWattHour},
	{"_joules", schema.UnitJoule},
	{"_volts", schema.UnitVolt},
	{"_amperes", schema.UnitAmpere},
	{"_pascals", schema.UnitPascal},
	{"_hectopascals", schema.UnitHectopascal},
	{"_lux", schema.UnitLux},
	{"_ppm", schema.UnitPPM},
	{"_degrees", schema.UnitDegree},
}

// UnitOf returns the canonical unit a field or metric name says by its
// ending (see unitSuffixes; a Prometheus counter's _total after it
// counts too: node_network_receive_bytes_total is in bytes), or "".
func UnitOf(name string) string {
	name = strings.TrimSuffix(name, "_total")
	for _, u := range unitSuffixes {
		if strings.HasSuffix(name, u.suffix) {
			return u.unit
		}
	}
	return ""
}
