package apdcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/schema"
)

// DeleteCmd is apd delete.
type DeleteCmd struct {
	SourceFlags
	RangeFlags
	Sensor string `help:"Only this sensor (default: all)." placeholder:"NAME"`
}

// Help implements kong's HelpProvider.
func (DeleteCmd) Help() string {
	return `Deletes stored readings of one or more hosts, optionally only one sensor
and a time range ([since, until)). Deleting a host without --sensor,
--since or --until also forgets the host. The database file shrinks after
apd compact.

Examples:
  apd delete --host pi-kitchen
  apd delete --host pi-kitchen --sensor temperature --since 2026-11-01 --until 2026-11-08
  apd delete --db apd-data/apd.db --host old-laptop`
}

// Run implements the command.
func (c *DeleteCmd) Run(g *cli.Globals) error {
	if len(c.Host) == 0 {
		return cli.WithCode(cli.ExitUsage, errors.New("--host is required: say whose data to delete"), "")
	}
	if c.Sensor != "" {
		if err := schema.ValidateName(c.Sensor); err != nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--sensor: %w", err), "")
		}
	}
	q, err := c.query(c.Sensor, time.Now())
	if err != nil {
		return err
	}
	src, done, err := c.open(false)
	if err != nil {
		return err
	}
	defer done()
	n, err := src.Delete(q)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.Stdout(), "deleted %d readings\n", n)
	return nil
}

// CompactCmd is apd compact.
type CompactCmd struct {
	DB    string        `name:"db" help:"Database file to compact (no aggregator may hold it), or a postgres:// URL." required:"" placeholder:"PATH|URL"`
	After time.Duration `help:"PostgreSQL: pack the days that ended more than this long ago." default:"6h"`
}

// Help implements kong's HelpProvider.
func (CompactCmd) Help() string {
	return `Rewrites a database file without its free space, so it shrinks after
deletes. Stop the aggregator first.

On PostgreSQL it packs now what the aggregator packs hourly: each day
that ended more than --after ago moves from a row per reading into a
block per series and hour (a few bytes a reading). Aggregators may keep
running.

Examples:
  apd compact --db apd-data/apd.db
  apd compact --db postgres://apd@db.example/apd --after 1h`
}

// Run implements the command: an engine whose stores are files rewrites
// the file; one that packs finished days (store.Packer) packs them.
func (c *CompactCmd) Run(g *cli.Globals) error {
	loc, err := locateStore(c.DB)
	if err != nil {
		return err
	}
	if compacter, ok := loc.Engine.(engine.Compacter); ok {
		if _, err := os.Stat(loc.Target); err != nil {
			return cli.WithCode(cli.ExitUsage, err, "")
		}
		before, after, err := compacter.Compact(loc.Target)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.Stdout(), "compacted %s: %d → %d bytes\n", c.DB, before, after)
		return nil
	}
	st, err := openStore(c.DB, readWrite, store.Limits{})
	if err != nil {
		return err
	}
	defer st.Close()
	packer, ok := st.(store.Packer)
	if !ok {
		return refuse("compact", loc.Engine, "neither rewrites its files nor packs finished days; it has nothing to compact")
	}
	res, err := packer.Pack(context.Background(), c.After)
	if err != nil {
		return err
	}
	days := "days"
	if res.Days == 1 {
		days = "day"
	}
	fmt.Fprintf(g.Stdout(), "packed %d %s, %d readings\n", res.Days, days, res.Readings)
	return nil
}
