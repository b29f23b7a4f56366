package apdcmd

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/httpapi"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// SourceFlags choose where readings are read: a running aggregator or a
// database file.
type SourceFlags struct {
	Server     string `help:"URL of a running aggregator's HTTP API." default:"http://127.0.0.1:8080" config:"client.server" envalias:"APD_SERVER"`
	DB         string `name:"db" help:"Read a database directly instead: a file (when no aggregator runs) or a PostgreSQL URL." placeholder:"PATH|URL"`
	APIKeyFile string `name:"api-key-file" help:"File holding the aggregator's API key (also $APD_API_KEY)." placeholder:"FILE" type:"path" config:"client.api_key_file"`
}

// apiKey returns the API key from $APD_API_KEY or --api-key-file.
func (f SourceFlags) apiKey() (string, error) {
	if k := os.Getenv("APD_API_KEY"); k != "" {
		return k, nil
	}
	if f.APIKeyFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(f.APIKeyFile)
	if err != nil {
		return "", fmt.Errorf("read API key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// source is what query-like commands read from.
// source is what query-like commands read from: a running aggregator
// (httpapi.Client) or a store opened in this process, which answer the
// same calls.
type source interface {
	store.Reader
	Delete(q store.Query) (int, error)
	SetHostMeta(host string, m store.HostMeta) error
	// Query runs spec's processing where the data is.
	Query(q store.Query, spec query.Spec, fn func(*schema.Reading) error) error
	Backup(w io.Writer) (int64, error)
}

func (f SourceFlags) open(ro bool) (source, func(), error) {
	if f.DB == "" {
		key, err := f.apiKey()
		if err != nil {
			return nil, nil, err
		}
		c := httpapi.NewClient(f.Server)
		c.APIKey = key
		return c, func() {}, nil
	}
	mode := readWrite
	if ro {
		mode = readOnly
	}
	st, err := openStore(f.DB, mode, store.Limits{})
	if err != nil {
		return nil, nil, err
	}
	return localSource{st}, func() { st.Close() }, nil
}

// localSource runs queries on a store opened in this process.
type localSource struct{ store.Store }

func (l localSource) Query(q store.Query, spec query.Spec, fn func(*schema.Reading) error) error {
	return query.Execute(l.Store, q, spec, fn)
}

func (l localSource) Backup(w io.Writer) (int64, error) { return backup(l.Store, w) }

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
		return q, cli.WithCode(cli.ExitUsage, fmt.Errorf("--since: %w", err), "")
	}
	if q.Until, err = query.ParseTime(f.Until, now); err != nil {
		return q, cli.WithCode(cli.ExitUsage, fmt.Errorf("--until: %w", err), "")
	}
	for _, h := range f.Host {
		if err := schema.ValidateName(h); err != nil {
			return q, cli.WithCode(cli.ExitUsage, fmt.Errorf("--host: %w", err), "")
		}
	}
	return q, nil
}

// QueryCmd is apd query.
type QueryCmd struct {
	SourceFlags
	RangeFlags
	Sensor string `help:"Sensor to read." required:"" placeholder:"NAME"`
	Clean  string `help:"Clean readings first: ${cleaners_help}." enum:"${cleaners}" default:""`
	TZ     string `name:"tz" help:"Time zone the cleaners count days in (e.g. Europe/Amsterdam; default UTC)." placeholder:"ZONE"`
	Where  string `help:"Keep readings whose numeric value matches, e.g. 'value > 25 and value < 30' (< <= > >= == != and or not, parentheses)." placeholder:"EXPR"`
	Agg    string `help:"Aggregate per host: ${aggregates_help}. Without --every, an aggregate that picks a reading gives the reading itself, with its time." enum:"${aggregates}" default:""`
	Every  string `help:"Aggregate in windows of this length, aligned to the epoch (5m, 1h, 1d); empty windows are left out." placeholder:"D"`
	Unit   string `help:"Convert quantities to this unit first (degF, K, J, hPa, percent …)." placeholder:"UNIT"`
	Limit  int    `help:"At most this many results (0: all)." default:"0"`
	Format string `help:"Output: ${formats_help}." default:"table" enum:"${formats}" short:"f"`
}

// Help implements kong's HelpProvider.
func (QueryCmd) Help() string {
	return `Prints readings of one sensor, ordered by host, then time. The range is
half-open: --since is included, --until is not.

Examples:
  apd query --sensor temperature --since 1h
  apd query --sensor temperature --since 24h --agg avg --every 1h --unit degF
  apd query --sensor temperature --since 7d --agg max            # when was it hottest?
  apd query --sensor temperature --since 24h --clean temperature   # without glitches
  apd query --sensor energy --since 30d --clean daily_kwh --tz Europe/Amsterdam
  apd query --sensor temperature --since 1d --where 'value < 5 or value > 30'
  apd query --sensor cpu_load --host pi-kitchen --since 2026-11-23 --until 2026-11-24 --format csv
  apd query --sensor ram_available --since 7d --format ndjson --db apd-data/apd.db`
}

// Run implements the command.
func (c *QueryCmd) Run(g *cli.Globals) error {
	if err := schema.ValidateName(c.Sensor); err != nil {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("--sensor: %w", err), "")
	}
	q, err := c.query(c.Sensor, time.Now())
	if err != nil {
		return err
	}
	spec := query.Spec{Clean: c.Clean, TZ: c.TZ, Unit: c.Unit, Where: c.Where, Agg: c.Agg, Every: c.Every, Limit: c.Limit}
	if _, err := spec.Compile(q.Since); err != nil {
		return cli.WithCode(cli.ExitUsage, err, "")
	}
	src, done, err := c.open(true)
	if err != nil {
		return err
	}
	defer done()
	out, err := query.NewWriter(c.Format, g.Stdout())
	if err != nil {
		return cli.WithCode(cli.ExitUsage, err, "")
	}
	if err := src.Query(q, spec, out.Write); err != nil {
		return err
	}
	return out.Close()
}
