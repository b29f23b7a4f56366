package apdcmd

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// MigrateCmd is apd migrate.
type MigrateCmd struct {
	From string `help:"The store to copy: a database file or a PostgreSQL URL." required:"" placeholder:"FILE|URL"`
	To   string `help:"The store to copy into (a new file is made; a database must exist)." required:"" placeholder:"FILE|URL"`
}

// Help implements kong's HelpProvider.
func (MigrateCmd) Help() string {
	return `Copies everything one store holds into another, either way between the
embedded file and PostgreSQL: readings, hosts (state, seq watermarks, counts,
names, colours, locations) and dead letters, with progress, then checks that
the readings of every host and sensor arrived. Readings already in the target
are kept (same host, sensor and time); no aggregator may write either store
meanwhile.

Examples:
  apd migrate --from apd-data/apd.db --to postgres://apd@db.example/apd
  apd migrate --from postgres://apd@db.example/apd --to backup.db`
}

// Run implements the command.
func (c *MigrateCmd) Run(g *cli.Globals) error {
	if c.From == c.To {
		return cli.WithCode(cli.ExitUsage, errors.New("--from and --to are the same store"), "")
	}
	src, err := openStore(c.From, readOnly, store.Limits{})
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	defer src.Close()
	dst, err := openStore(c.To, readWrite, store.Limits{})
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	defer dst.Close()
	restorer, ok := dst.(store.HostRestorer)
	if !ok {
		return fmt.Errorf("--to: this storage engine cannot take host records")
	}
	hosts, err := src.Hosts()
	if err != nil {
		return err
	}
	start := time.Now()
	bar := newProgress(g.Stderr(), "copied")
	batch := &store.Batch{Imported: true}
	copied := 0
	flush := func() error {
		if _, err := dst.Commit(batch); err != nil {
			return fmt.Errorf("write readings: %w", err)
		}
		batch.Reset()
		return nil
	}
	err = src.Scan(store.Query{}, func(r *schema.Reading) error {
		batch.Readings = append(batch.Readings, *r)
		copied++
		bar.add(1)
		if len(batch.Readings) >= 10000 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	if sealer, ok := dst.(store.Sealer); ok {
		if err := sealer.SealAll(); err != nil {
			return err
		}
	}
	bar.done()
	// The records last: their counts are the source's, whatever the
	// target had.
	for _, h := range hosts {
		if err := restorer.RestoreHost(h.Name, h.Record()); err != nil {
			return err
		}
	}
	dead, err := copyDeadLetters(src, dst)
	if err != nil {
		return err
	}
	// The count check: every host and sensor has as many readings there.
	after, err := dst.Hosts()
	if err != nil {
		return err
	}
	counted := map[string]uint64{}
	for _, h := range after {
		for sensor := range h.Sensors {
			n := 0
			if err := dst.Scan(store.Query{Sensor: sensor, Hosts: []string{h.Name}}, func(*schema.Reading) error { n++; return nil }); err != nil {
				return err
			}
			counted[h.Name+"/"+sensor] = uint64(n)
		}
	}
	for _, h := range hosts {
		for sensor, st := range h.Sensors {
			if got := counted[h.Name+"/"+sensor]; got != st.Count {
				return fmt.Errorf("count check: %s/%s has %d readings in --to, %d in --from", h.Name, sensor, got, st.Count)
			}
		}
	}
	fmt.Fprintf(g.Stderr(), "copied %d readings, %d hosts and %d dead letters in %s; every host's and sensor's count checked\n",
		copied, len(hosts), dead, time.Since(start).Round(time.Millisecond))
	return nil
}

// copyDeadLetters copies the dead letters, oldest first, in commits that
// stay within the target's per-commit bound.
func copyDeadLetters(src, dst store.Store) (int, error) {
	dead, err := src.DeadLetters(store.DefaultMaxDeadLetters * 10)
	if err != nil {
		return 0, err
	}
	slices.Reverse(dead)
	total := len(dead)
	for len(dead) > 0 {
		n := min(len(dead), 100)
		if _, err := dst.Commit(&store.Batch{DeadLetters: dead[:n]}); err != nil {
			return 0, fmt.Errorf("write dead letters: %w", err)
		}
		dead = dead[n:]
	}
	return total, nil
}
