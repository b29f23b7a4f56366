package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// CSVOptions say how to read a logger's CSV: a header row, then one row
// per time. The zero value reads comma-separated columns, the time from a
// column named ts, timestamp or time (or date and time together) in RFC
// 3339, the host from a column named host, and every other column whose
// values are numbers as a sensor named after its header, without a unit.
type CSVOptions struct {
	// Comma separates the fields (0: ',').
	Comma rune
	// TimeColumns are the columns that hold the time, joined with a space
	// when there are several (a logger's Date and Time); none: the
	// default columns above.
	TimeColumns []string
	// TimeFormat is how the time is written: "" or "rfc3339", "unix"
	// (seconds), "unix_ms", or a strftime pattern (%Y-%m-%d %H:%M:%S).
	TimeFormat string
	// Location is the zone of times written without one (nil: UTC).
	Location *time.Location
	// Host is every row's host; HostColumn, the column that holds it.
	// Neither: a column named host, else the header is refused.
	Host, HostColumn string
	// Sensor names the one value column (ValueColumn, or the only
	// column left besides time and host).
	Sensor, ValueColumn string
	// Units maps a column (its header, or the sensor it becomes) to the
	// unit of its values; the key "" gives the unit of every value
	// column not named. A unit is canonical or a name schema.CanonicalUnit
	// maps to one; any other unit is refused.
	Units map[string]string
}

// columnOptions reports whether any option for a logger's columns is set.
func (o CSVOptions) columnOptions() bool {
	return len(o.TimeColumns) > 0 || o.TimeFormat != "" || o.Location != nil || o.Host != "" ||
		o.HostColumn != "" || o.Sensor != "" || o.ValueColumn != "" || len(o.Units) > 0
}

// ParseUnitOptions turns --unit arguments (UNIT for every value column,
// COLUMN=UNIT for one) into CSVOptions.Units, each unit canonical: long
// names are mapped as schema.CanonicalUnit maps them, and a unit it does
// not know is refused.
func ParseUnitOptions(args []string) (map[string]string, error) {
	units := map[string]string{}
	for _, a := range args {
		col, unit, ok := strings.Cut(a, "=")
		if !ok {
			col, unit = "", a
		}
		c, known := schema.CanonicalUnit(unit)
		if !known {
			return nil, fmt.Errorf("unknown unit %q (known: degC, degF, K, percent, ratio, B, W, Wh, J, V, A, Pa, hPa, lx, ppm, s, deg, and their long names)", unit)
		}
		units[col] = c
	}
	return units, nil
}

// A value column is decided at its first value when no option names it:
// a number makes it a sensor, anything else leaves it out.
type columnKind int

const (
	undecided columnKind = iota
	numeric
	ignoredColumn
)

type valueColumn struct {
	index        int
	header       string
	sensor, unit string
	kind         columnKind
}

// loggerPlan is how each row of one logger's CSV becomes readings.
type loggerPlan struct {
	header     []string
	timeIdx    []int
	parseTime  func(string) (time.Time, error)
	timeFormat string
	host       string
	hostIdx    int // -1: host is fixed
	cols       []*valueColumn
	ignored    []string
	joined     []string
}

// planLogger matches opts to a logger's header.
func planLogger(header []string, opts CSVOptions) (*loggerPlan, error) {
	p := &loggerPlan{header: header, hostIdx: -1}
	find := func(name string) int {
		if i := slices.Index(header, name); i >= 0 {
			return i
		}
		return slices.IndexFunc(header, func(h string) bool { return strings.EqualFold(strings.TrimSpace(h), name) })
	}
	shown := strings.Join(header, ",")
	if len(shown) > 60 {
		shown = shown[:57] + "..."
	}
	shown = schema.Printable(shown)
	// Time.
	if len(opts.TimeColumns) == 0 {
		if d, t := find("date"), find("time"); d >= 0 && t >= 0 {
			p.timeIdx = []int{d, t}
		} else {
			for _, name := range []string{"ts", "timestamp", "time", "datetime"} {
				if i := find(name); i >= 0 {
					p.timeIdx = []int{i}
					break
				}
			}
		}
		if p.timeIdx == nil {
			return nil, fmt.Errorf("no time column among %s: name it with --time-column", shown)
		}
	}
	for _, name := range opts.TimeColumns {
		i := find(name)
		if i < 0 {
			return nil, fmt.Errorf("no time column %q among %s", name, shown)
		}
		p.timeIdx = append(p.timeIdx, i)
	}
	var err error
	if p.parseTime, p.timeFormat, err = TimeParser(opts.TimeFormat, opts.Location); err != nil {
		return nil, err
	}
	// Host.
	switch {
	case opts.Host != "" && opts.HostColumn != "":
		return nil, errors.New("--host and --host-column both given: one host for every row, or a column of hosts")
	case opts.Host != "":
		if err := schema.ValidateName(opts.Host); err != nil {
			return nil, fmt.Errorf("--host: %w", err)
		}
		p.host = opts.Host
	case opts.HostColumn != "":
		if p.hostIdx = find(opts.HostColumn); p.hostIdx < 0 {
			return nil, fmt.Errorf("no host column %q among %s", opts.HostColumn, shown)
		}
	default:
		if p.hostIdx = find("host"); p.hostIdx < 0 {
			return nil, fmt.Errorf("which host are these readings of? No host column among %s: give --host NAME or --host-column COLUMN", shown)
		}
	}
	if slices.Contains(p.timeIdx, p.hostIdx) {
		return nil, fmt.Errorf("column %q is both the time and the host", header[p.hostIdx])
	}
	// Values.
	for i, h := range header {
		if i == p.hostIdx || slices.Contains(p.timeIdx, i) {
			continue
		}
		if strings.TrimSpace(h) == "" {
			p.ignored = append(p.ignored, fmt.Sprintf("column %d: no header", i+1))
			continue
		}
		p.cols = append(p.cols, &valueColumn{index: i, header: h, sensor: schema.SanitizeName(strings.TrimSpace(h))})
	}
	if opts.ValueColumn != "" {
		i := find(opts.ValueColumn)
		k := slices.IndexFunc(p.cols, func(c *valueColumn) bool { return c.index == i })
		if k < 0 {
			return nil, fmt.Errorf("no value column %q among %s", opts.ValueColumn, shown)
		}
		for _, c := range p.cols {
			if c.index != i {
				p.ignored = append(p.ignored, fmt.Sprintf("%s: not --value-column", schema.Printable(c.header)))
			}
		}
		p.cols = []*valueColumn{p.cols[k]}
	}
	if len(p.cols) == 0 {
		return nil, fmt.Errorf("no value columns among %s besides the time and the host", shown)
	}
	if opts.Sensor != "" {
		if err := schema.ValidateName(opts.Sensor); err != nil {
			return nil, fmt.Errorf("--sensor: %w", err)
		}
		if len(p.cols) > 1 {
			names := make([]string, len(p.cols))
			for i, c := range p.cols {
				names[i] = schema.Printable(c.header)
			}
			return nil, fmt.Errorf("--sensor names one column, and %s are left: pick one with --value-column, or leave out --sensor to name each sensor after its column", strings.Join(names, ", "))
		}
		p.cols[0].sensor = opts.Sensor
	}
	if opts.Sensor != "" || opts.ValueColumn != "" {
		p.cols[0].kind = numeric // named by the user: a bad value is reported, never the column dropped
	}
	seen := map[string]string{}
	for _, c := range p.cols {
		if prev, ok := seen[c.sensor]; ok {
			return nil, fmt.Errorf("columns %q and %q would both be sensor %s: import them one at a time with --value-column and --sensor", prev, c.header, c.sensor)
		}
		seen[c.sensor] = c.header
	}
	for col, unit := range opts.Units {
		if _, known := schema.CanonicalUnit(unit); !known {
			return nil, fmt.Errorf("unknown unit %q", unit)
		}
		if col == "" {
			continue
		}
		if !slices.ContainsFunc(p.cols, func(c *valueColumn) bool { return c.header == col || c.sensor == col }) {
			return nil, fmt.Errorf("--unit %s=%s: no value column %q", col, unit, col)
		}
	}
	for _, c := range p.cols {
		c.unit = opts.Units[""]
		if u, ok := opts.Units[c.header]; ok {
			c.unit = u
		} else if u, ok := opts.Units[c.sensor]; ok {
			c.unit = u
		}
		c.unit, _ = schema.CanonicalUnit(c.unit)
	}
	return p, nil
}

// row turns one row into readings: the time and host, then a reading per
// non-empty value. A bad time or host skips the row; a bad value skips
// that value.
func (p *loggerPlan) row(line int, rec []string, stats *CSVStats, fn func(*schema.Reading) error, bad func(*RowError) error) error {
	badRow := func(err error) error {
		stats.BadRows++
		return bad(&RowError{Line: line, Err: err})
	}
	p.joined = p.joined[:0]
	for _, i := range p.timeIdx {
		p.joined = append(p.joined, strings.TrimSpace(rec[i]))
	}
	ts := strings.Join(p.joined, " ")
	t, err := p.parseTime(ts)
	if err != nil {
		return badRow(fmt.Errorf("time %.40q is not %s", ts, p.timeFormat))
	}
	host := p.host
	if p.hostIdx >= 0 {
		h := strings.TrimSpace(rec[p.hostIdx])
		if h == "" {
			return badRow(errors.New("no host"))
		}
		host = schema.SanitizeName(h)
	}
	for _, c := range p.cols {
		cell := strings.TrimSpace(rec[c.index])
		if cell == "" || c.kind == ignoredColumn {
			continue // a logger leaves a value out when it has none
		}
		f, err := strconv.ParseFloat(cell, 64)
		if err == nil && (math.IsInf(f, 0) || math.IsNaN(f)) {
			err = errors.New("not finite")
		}
		if c.kind == undecided {
			if err != nil {
				c.kind = ignoredColumn
				p.ignored = append(p.ignored, fmt.Sprintf("%s: not numbers (line %d: %.20q)", schema.Printable(c.header), line, cell))
				continue
			}
			c.kind = numeric
		}
		if err != nil {
			stats.BadValues++
			if err := bad(&RowError{Line: line, Column: schema.Printable(c.header), Err: fmt.Errorf("%.20q is not a number", cell)}); err != nil {
				return err
			}
			continue
		}
		rd := schema.Reading{Host: host, Sensor: c.sensor, Time: t}
		if c.unit != "" {
			rd.Value = schema.Quantity{Magnitude: f, Unit: c.unit}.Raw()
		} else {
			rd.Value, _ = json.Marshal(f) // finite: always marshals
		}
		if err := fn(&rd); err != nil {
			return err
		}
	}
	return nil
}

// sensors lists the value columns that became sensors.
func (p *loggerPlan) sensors() []ColumnSensor {
	var out []ColumnSensor
	for _, c := range p.cols {
		if c.kind == numeric {
			out = append(out, ColumnSensor{Column: c.header, Sensor: c.sensor, Unit: c.unit})
		}
	}
	return out
}

// TimeParser returns the parser of a --time-format and how to name it in
// an error: "" or "rfc3339" (also with a space for the T, and without a
// zone, then in loc), "unix" and "unix_ms" (decimals allowed), or a
// strftime pattern. Times are truncated to the millisecond, as readings
// keep them.
func TimeParser(format string, loc *time.Location) (func(string) (time.Time, error), string, error) {
	if loc == nil {
		loc = time.UTC
	}
	ms := func(t time.Time, err error) (time.Time, error) {
		return t.UTC().Truncate(time.Millisecond), err
	}
	switch lower := strings.ToLower(format); lower {
	case "", "rfc3339":
		return func(s string) (time.Time, error) {
			if len(s) > 10 && s[10] == ' ' {
				s = s[:10] + "T" + s[11:]
			}
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return ms(t, nil)
			}
			return ms(time.ParseInLocation("2006-01-02T15:04:05.999999999", s, loc))
		}, "an RFC 3339 time", nil
	case "unix", "unix_ms":
		scale := 1.0
		if lower == "unix_ms" {
			scale = 1e-3
		}
		return func(s string) (time.Time, error) {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(f) || math.Abs(f*scale) > 1<<40 {
				return time.Time{}, errors.New("not a number")
			}
			sec, frac := math.Modf(f * scale)
			return ms(time.Unix(int64(sec), int64(math.Round(frac*1e9))), nil)
		}, map[string]string{"unix": "seconds since 1970 (unix)", "unix_ms": "milliseconds since 1970 (unix_ms)"}[lower], nil
	}
	layout, err := strftimeLayout(format)
	if err != nil {
		return nil, "", err
	}
	return func(s string) (time.Time, error) {
		return ms(time.ParseInLocation(layout, s, loc))
	}, "in the format " + format, nil
}

// strftimeLayout translates a strftime pattern into a Go layout.
func strftimeLayout(f string) (string, error) {
	if !strings.Contains(f, "%") {
		return "", fmt.Errorf("--time-format %q: want rfc3339, unix, unix_ms or a strftime pattern such as %%Y-%%m-%%d %%H:%%M:%%S", f)
	}
	directives := map[byte]string{
		'Y': "2006", 'y': "06", 'm': "01", 'd': "02", 'e': "_2", 'j': "002",
		'H': "15", 'I': "03", 'M': "04", 'S': "05", 'p': "PM",
		'b': "Jan", 'h': "Jan", 'B': "January", 'a': "Mon", 'A': "Monday",
		'z': "-0700", 'Z': "MST", 'T': "15:04:05", 'F': "2006-01-02", '%': "%",
	}
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(f) {
			return "", fmt.Errorf("--time-format %q ends in %%", f)
		}
		i++
		if f[i] == 'f' { // fractions of a second, any number of digits, after their separator
			s := b.String()
			if !strings.HasSuffix(s, "05.") && !strings.HasSuffix(s, "05,") {
				return "", fmt.Errorf("--time-format %q: %%f must follow %%S and a dot or comma", f)
			}
			b.WriteString("999999999")
			continue
		}
		d, ok := directives[f[i]]
		if !ok {
			return "", fmt.Errorf("--time-format %q: %%%c is not one of %%Y %%y %%m %%d %%e %%j %%H %%I %%M %%S %%f %%p %%b %%B %%a %%A %%z %%Z %%T %%F %%%%", f, f[i])
		}
		b.WriteString(d)
	}
	return b.String(), nil
}
