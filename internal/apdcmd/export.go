package apdcmd

import (
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/schema"
)

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
func (c *ExportCmd) Run(g *cli.Globals) error {
	q, err := c.query(c.Sensor, time.Now())
	if err != nil {
		return err
	}
	src, done, err := c.open(true)
	if err != nil {
		return err
	}
	defer done()
	w := g.Stdout()
	if c.Out != "" {
		f, err := os.OpenFile(c.Out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) // readings are private
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
	if c.Format == "ndjson" {
		// How each exported host is shown comes first, so an import
		// restores it whatever it stops at.
		if err := writeHostMeta(src, q.Hosts, w); err != nil {
			return err
		}
	}
	n := 0
	bar := &progress{}
	if c.Out != "" {
		bar = newProgress(g.Stderr(), "exported")
	}
	if err := src.Scan(q, func(r *schema.Reading) error { n++; bar.add(1); return out.Write(r) }); err != nil {
		return err
	}
	bar.done()
	if err := out.Close(); err != nil {
		return err
	}
	if c.Out != "" {
		fmt.Fprintf(g.Stderr(), "exported %d readings to %s\n", n, c.Out)
	}
	return nil
}

// writeHostMeta writes the meta line of each host (of hosts; all when
// empty) that has meta.
func writeHostMeta(src source, hosts []string, w io.Writer) error {
	all, err := src.Hosts()
	if err != nil {
		return err
	}
	var b []byte
	for _, h := range all {
		if !h.IsZero() && (len(hosts) == 0 || slices.Contains(hosts, h.Name)) {
			b = query.AppendHostMetaLine(b, h.Name, h.HostMeta)
		}
	}
	_, err = w.Write(b)
	return err
}
