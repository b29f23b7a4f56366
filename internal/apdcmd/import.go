package apdcmd

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// ImportCmd is apd import.
type ImportCmd struct {
	DB    string   `name:"db" help:"Database to write: a file (created if missing; no aggregator may hold it) or a PostgreSQL URL." required:"" placeholder:"PATH|URL"`
	Files []string `arg:"" optional:"" help:"NDJSON files written by apd export (default: standard input)." type:"path"`
}

// Help implements kong's HelpProvider.
func (ImportCmd) Help() string {
	return `Reads readings in the ndjson form of apd export and stores them. Readings
already stored (same host, sensor and time) are skipped; the hosts' names,
colours and locations in the export replace those in the database.

Examples:
  apd import --db apd-data/apd.db last-month.ndjson
  apd export --db old.db | apd import --db new.db`
}

// Run implements the command.
func (c *ImportCmd) Run(g *cli.Globals) error {
	st, err := openStore(c.DB, readWrite, store.Limits{})
	if err != nil {
		return err
	}
	defer st.Close()
	inputs := c.Files
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	var stored, dup, metas int
	bar := newProgress(g.Stderr(), "imported")
	start := time.Now()
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
		err := query.DecodeExport(bufio.NewReaderSize(r, 1<<20), func(rd *schema.Reading) error {
			batch.Readings = append(batch.Readings, *rd)
			bar.add(1)
			if len(batch.Readings) >= 10000 {
				return flush()
			}
			return nil
		}, func(m query.HostMetaLine) error {
			metas++
			return st.SetHostMeta(m.Host, m.Meta)
		})
		if err != nil {
			return fmt.Errorf("import %s: %w", name, err)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// The last readings of each series would wait in its head and the
	// log until their age: an import leaves only chunks.
	if sealer, ok := st.(store.Sealer); ok {
		if err := sealer.SealAll(); err != nil {
			return err
		}
	}
	bar.done()
	elapsed := time.Since(start)
	fmt.Fprintf(g.Stderr(), "imported %d readings (%d already stored) in %s, %s/s\n", stored, dup,
		elapsed.Round(time.Millisecond), thousands(int(float64(stored+dup)/max(elapsed.Seconds(), 1e-9))))
	if metas > 0 {
		fmt.Fprintf(g.Stderr(), "restored the names, colours and locations of %d hosts\n", metas)
	}
	return nil
}
