package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
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

// HostsCmd is apd hosts.
type HostsCmd struct {
	SourceFlags
	JSON bool `help:"Print JSON."`
}

// Help implements kong's HelpProvider.
func (HostsCmd) Help() string {
	return `Lists every host seen: state (online, offline, lost), last reading,
readings stored and sensors.

Examples:
  apd hosts
  apd hosts --db apd-data/apd.db --json`
}

// Run implements the command.
func (c *HostsCmd) Run(g *Globals) error {
	src, done, err := c.open(true)
	if err != nil {
		return err
	}
	defer done()
	hosts, err := src.Hosts()
	if err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(g.stdout, hosts)
	}
	if len(hosts) == 0 {
		fmt.Fprintln(g.stdout, "no hosts yet")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tLAST READING\tREADINGS\tSENSORS")
	for _, h := range hosts {
		var n uint64
		names := make([]string, 0, len(h.Sensors))
		for name, s := range h.Sensors {
			n += s.Count
			names = append(names, name)
		}
		sort.Strings(names)
		state, last := h.State, "-"
		if state == "" {
			state = "-"
		}
		if !h.LastSeen.IsZero() {
			last = schema.FormatTime(h.LastSeen)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", h.Name, state, last, n, strings.Join(names, ","))
	}
	return tw.Flush()
}

// ExportCmd is apd export.
type ExportCmd struct {
	SourceFlags
	RangeFlags
	Sensor string `help:"Only this sensor (default: all)." placeholder:"NAME"`
	Format string `help:"Output: ndjson or csv." default:"ndjson" enum:"ndjson,csv"`
	Out    string `short:"o" help:"Write to this file instead of standard output." placeholder:"FILE" type:"path"`
}

// Help implements kong's HelpProvider.
func (ExportCmd) Help() string {
	return `Writes stored readings in the reading payload form, one per line; apd import
reads it back, so export → import round-trips exactly.

Examples:
  apd export --since 30d -o last-month.ndjson
  apd export --db apd-data/apd.db --sensor temperature --format csv`
}

// Run implements the command.
func (c *ExportCmd) Run(g *Globals) error {
	q, err := c.query(c.Sensor, time.Now())
	if err != nil {
		return err
	}
	src, done, err := c.open(true)
	if err != nil {
		return err
	}
	defer done()
	w := g.stdout
	if c.Out != "" {
		f, err := os.Create(c.Out)
		if err != nil {
			return fmt.Errorf("create export file: %w", err)
		}
		defer f.Close()
		w = f
	}
	out, err := query.NewWriter(c.Format, w)
	if err != nil {
		return err
	}
	n := 0
	if err := src.Scan(q, func(r *schema.Reading) error { n++; return out.Write(r) }); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if c.Out != "" {
		fmt.Fprintf(g.stderr, "exported %d readings to %s\n", n, c.Out)
	}
	return nil
}

// ImportCmd is apd import.
type ImportCmd struct {
	DB    string   `name:"db" help:"Database file to write (created if missing; no aggregator may hold it)." required:"" placeholder:"PATH" type:"path"`
	Files []string `arg:"" optional:"" help:"NDJSON files written by apd export (default: standard input)." type:"path"`
}

// Help implements kong's HelpProvider.
func (ImportCmd) Help() string {
	return `Reads readings in the ndjson form of apd export and stores them. Readings
already stored (same host, sensor and time) are skipped.

Examples:
  apd import --db apd-data/apd.db last-month.ndjson
  apd export --db old.db | apd import --db new.db`
}

// Run implements the command.
func (c *ImportCmd) Run(g *Globals) error {
	st, err := store.Open(c.DB, store.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer st.Close()
	inputs := c.Files
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	var stored, dup int
	batch := &store.Batch{Imported: true}
	flush := func() error {
		res, err := st.Commit(batch)
		if err != nil {
			return err
		}
		stored += res.Stored
		dup += res.Duplicates
		batch.Reset()
		return nil
	}
	for _, name := range inputs {
		var r io.Reader = os.Stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("open import file: %w", err)
			}
			defer f.Close()
			r = f
		}
		err := query.DecodeNDJSON(bufio.NewReaderSize(r, 1<<20), func(rd *schema.Reading) error {
			batch.Readings = append(batch.Readings, *rd)
			if len(batch.Readings) >= 10000 {
				return flush()
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("import %s: %w", name, err)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "imported %d readings (%d already stored)\n", stored, dup)
	return nil
}
