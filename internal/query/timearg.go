// Package query turns command-line and HTTP query arguments into store
// queries and writes their results in the output formats of apd query.
package query

import (
	"fmt"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/config"
)

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
	d, err := config.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want a duration back from now (90s, 1h, 7d), an RFC 3339 time or a date (2026-11-23)", s)
	}
	return now.Add(-d).UTC(), nil
}
