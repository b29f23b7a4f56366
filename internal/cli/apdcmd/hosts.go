package apdcmd

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/schema"
)

// HostsCmd is apd hosts.
type HostsCmd struct {
	SourceFlags
	JSON bool `help:"Print JSON."`
}

// Help implements kong's HelpProvider.
func (HostsCmd) Help() string {
	return `Lists every host seen: state (online, offline, lost), last reading,
readings stored, seqs awaited (gaps below the highest seq seen: in flight or
still spooled on the device), seqs lost (dropped from a full device spool)
and sensors.

Examples:
  apd hosts
  apd hosts --db apd-data/apd.db --json`
}

// Run implements the command.
func (c *HostsCmd) Run(g *cli.Globals) error {
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
		return cli.WriteJSON(g.Stdout(), hosts)
	}
	if len(hosts) == 0 {
		fmt.Fprintln(g.Stdout(), "no hosts yet")
		return nil
	}
	tw := tabwriter.NewWriter(g.Stdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tLAST READING\tREADINGS\tAWAITED\tLOST\tSENSORS")
	for _, h := range hosts {
		var n uint64
		names := make([]string, 0, len(h.Sensors))
		for name, s := range h.Sensors {
			n += s.Count
			names = append(names, name)
		}
		sort.Strings(names)
		state, last := schema.Printable(h.State), "-"
		if state == "" {
			state = "-"
		}
		if !h.LastSeen.IsZero() {
			last = schema.FormatTime(h.LastSeen)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", h.Name, state, last, n, h.Awaited, h.Lost, strings.Join(names, ","))
	}
	return tw.Flush()
}
