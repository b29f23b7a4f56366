// Package query turns command-line and HTTP query arguments into store
// queries and writes their results in the output formats of apd query.
package query

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration extends time.ParseDuration with days (d) and weeks (w):
// "90s", "1h30m", "7d", "2w".
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if n := len(s) - 1; s[n] == 'd' || s[n] == 'w' {
		f, err := strconv.ParseFloat(s[:n], 64)
		if err != nil || f < 0 {
			return 0, fmt.Errorf("duration %q: want a number before %q", s, s[n:])
		}
		unit := 24 * time.Hour
		if s[n] == 'w' {
			unit *= 7
		}
		return time.Duration(f * float64(unit)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 90s, 15m, 1h, 7d", s)
	}
	return d, nil
}

// ParseTime reads a --since/--until argument: a duration back from now
// ("1h", "7d"), an RFC 3339 time, or a date (midnight UTC). Empty gives the
// zero time (an open end).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02T15:04:05", s); err == nil {
		return t.UTC(), nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want a duration back from now (90s, 1h, 7d), an RFC 3339 time or a date (2026-11-23)", s)
	}
	return now.Add(-d).UTC(), nil
}
