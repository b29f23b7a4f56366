package cli

import (
	"fmt"
	"time"

	"github.com/apd-telemetry/apd/internal/httpapi"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// SourceFlags choose where readings are read: a running aggregator or a
// database file.
type SourceFlags struct {
	Server string `help:"URL of a running aggregator's HTTP API." default:"http://127.0.0.1:8080" config:"client.server" envalias:"APD_SERVER"`
	DB     string `name:"db" help:"Read a database file directly instead (when no aggregator runs)." placeholder:"PATH" type:"path"`
}

// source is what query-like commands read from.
type source interface {
	Scan(q store.Query, fn func(*schema.Reading) error) error
	Hosts() ([]store.Host, error)
	DeadLetters(limit int) ([]store.DeadLetter, error)
}

func (f SourceFlags) open(readOnly bool) (source, func(), error) {
	if f.DB == "" {
		return httpapi.NewClient(f.Server), func() {}, nil
	}
	st, err := store.Open(f.DB, store.Options{ReadOnly: readOnly, Timeout: time.Second})
	if err != nil {
		return nil, nil, err
	}
	return st, func() { st.Close() }, nil
}

// RangeFlags select readings by host and time.
type RangeFlags struct {
	Host  []string `help:"Only these hosts (repeatable)." placeholder:"NAME"`
	Since string   `help:"Start of the range, inclusive: a duration back from now (90s, 1h, 7d), an RFC 3339 time or a date."`
	Until string   `help:"End of the range, exclusive, in the same forms."`
}

func (f RangeFlags) query(sensor string, now time.Time) (store.Query, error) {
	q := store.Query{Sensor: sensor, Hosts: f.Host}
	var err error
	if q.Since, err = query.ParseTime(f.Since, now); err != nil {
		return q, withCode(ExitUsage, fmt.Errorf("--since: %w", err), "")
	}
	if q.Until, err = query.ParseTime(f.Until, now); err != nil {
		return q, withCode(ExitUsage, fmt.Errorf("--until: %w", err), "")
	}
	for _, h := range f.Host {
		if err := schema.ValidateName(h); err != nil {
			return q, withCode(ExitUsage, fmt.Errorf("--host: %w", err), "")
		}
	}
	return q, nil
}

// QueryCmd is apd query.
type QueryCmd struct {
	SourceFlags
	RangeFlags
	Sensor string `help:"Sensor to read." required:"" placeholder:"NAME"`
	Limit  int    `help:"At most this many readings (0: all)." default:"0"`
	Format string `help:"Output: table, json, ndjson or csv." default:"table" enum:"table,json,ndjson,csv" short:"f"`
}

// Help implements kong's HelpProvider.
func (QueryCmd) Help() string {
	return `Prints readings of one sensor, ordered by host, then time. The range is
half-open: --since is included, --until is not.

Examples:
  apd query --sensor temperature --since 1h
  apd query --sensor cpu_load --host pi-kitchen --since 2026-11-23 --until 2026-11-24 --format csv
  apd query --sensor ram_available --since 7d --format ndjson --db apd-data/apd.db`
}

// Run implements the command.
func (c *QueryCmd) Run(g *Globals) error {
	if err := schema.ValidateName(c.Sensor); err != nil {
		return withCode(ExitUsage, fmt.Errorf("--sensor: %w", err), "")
	}
	q, err := c.query(c.Sensor, time.Now())
	if err != nil {
		return err
	}
	q.Limit = c.Limit
	src, done, err := c.open(true)
	if err != nil {
		return err
	}
	defer done()
	out, err := query.NewWriter(c.Format, g.stdout)
	if err != nil {
		return withCode(ExitUsage, err, "")
	}
	if err := src.Scan(q, out.Write); err != nil {
		return err
	}
	return out.Close()
}
