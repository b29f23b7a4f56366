package apdcmd

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/apd-telemetry/apd/internal/store"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/schema"
)

// HostsCmd is apd hosts.
type HostsCmd struct {
	List HostsListCmd `cmd:"" default:"withargs" help:"List every host seen (the default)."`
	Set  HostsSetCmd  `cmd:"" help:"Set a host's display name, chart colour and map location."`
}

// HostsListCmd is apd hosts (list).
type HostsListCmd struct {
	SourceFlags
	JSON bool `help:"Print JSON."`
}

// Help implements kong's HelpProvider.
func (HostsListCmd) Help() string {
	return `Lists every host seen: state (online, offline, lost), last reading,
readings stored, seqs awaited (gaps below the highest seq seen: in flight or
still spooled on the device), seqs lost (dropped from a full device spool)
and sensors; the display name set by apd hosts set.

Examples:
  apd hosts
  apd hosts --db apd-data/apd.db --json`
}

// Run implements the command.
func (c *HostsListCmd) Run(g *cli.Globals) error {
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
	// Several aggregators on one database: say which holds each host.
	shared := slices.ContainsFunc(hosts, func(h store.Host) bool { return h.Aggregator != "" })
	tw := tabwriter.NewWriter(g.Stdout(), 0, 0, 2, ' ', 0)
	header := "HOST\tNAME\tSTATE\tLAST READING\tREADINGS\tAWAITED\tLOST\tSENSORS"
	if shared {
		header += "\tAGGREGATOR"
	}
	fmt.Fprintln(tw, header)
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
		display := "-"
		if h.Display != "" {
			display = schema.Printable(h.Display)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s", h.Name, display, state, last, n, h.Awaited, h.Lost, strings.Join(names, ","))
		if shared {
			fmt.Fprintf(tw, "\t%s", cmp.Or(schema.Printable(h.Aggregator), "-"))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// HostsSetCmd is apd hosts set.
type HostsSetCmd struct {
	SourceFlags
	Host     string `arg:"" help:"The host, as it publishes (apd/<host>/…)."`
	Name     string `help:"Display name in charts, the dashboard and the map." placeholder:"TEXT"`
	Colour   string `help:"Chart colour, #rgb or #rrggbb." aliases:"color" placeholder:"#RRGGBB"`
	Location string `help:"Map position: latitude,longitude in degrees." placeholder:"LAT,LON"`
	Unset    bool   `help:"Clear what this command does not set (alone: clear everything)."`
}

// Help implements kong's HelpProvider.
func (HostsSetCmd) Help() string {
	return `Sets how a host is shown: the name and colour of its line in every chart
and on the dashboard, and its place on the map. What is not given is kept,
unless --unset clears it. A host may be named before it first publishes.
apd export writes these settings and apd import restores them.

Examples:
  apd hosts set pi-kitchen --name "Kitchen" --colour '#cc3300' --location 52.37,4.89
  apd hosts set pi-kitchen --location 52.3702,4.8952
  apd hosts set pi-kitchen --unset                 # back to the defaults
  apd hosts set pi-attic --name Attic --db apd-data/apd.db`
}

// Run implements the command.
func (c *HostsSetCmd) Run(g *cli.Globals) error {
	if err := schema.ValidateName(c.Host); err != nil {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("host: %w", err), "")
	}
	var m store.HostMeta
	if c.Name != "" {
		m.Display = c.Name
	}
	if c.Colour != "" {
		if _, err := store.ParseColour(c.Colour); err != nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--colour: %w", err), "")
		}
		m.Colour = strings.ToLower(c.Colour)
	}
	if c.Location != "" {
		loc, err := parseLocation(c.Location)
		if err != nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--location: %w", err), "")
		}
		m.Location = &loc
	}
	if err := m.Validate(); err != nil {
		return cli.WithCode(cli.ExitUsage, err, "")
	}
	if m.IsZero() && !c.Unset {
		return cli.WithCode(cli.ExitUsage, errors.New("nothing to set: give --name, --colour, --location or --unset"), "")
	}
	src, done, err := c.open(false)
	if err != nil {
		return err
	}
	defer done()
	if !c.Unset {
		hosts, err := src.Hosts()
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name == c.Host {
				m = mergeMeta(h.HostMeta, m)
			}
		}
	}
	if err := src.SetHostMeta(c.Host, m); err != nil {
		return err
	}
	fmt.Fprintf(g.Stdout(), "%s: %s\n", c.Host, describeMeta(m))
	return nil
}

// mergeMeta returns old with the fields set in changes replaced.
func mergeMeta(old, changes store.HostMeta) store.HostMeta {
	if changes.Display != "" {
		old.Display = changes.Display
	}
	if changes.Colour != "" {
		old.Colour = changes.Colour
	}
	if changes.Location != nil {
		old.Location = changes.Location
	}
	return old
}

func describeMeta(m store.HostMeta) string {
	if m.IsZero() {
		return "shown with the defaults"
	}
	var parts []string
	if m.Display != "" {
		parts = append(parts, fmt.Sprintf("name %q", m.Display))
	}
	if m.Colour != "" {
		parts = append(parts, "colour "+m.Colour)
	}
	if m.Location != nil {
		parts = append(parts, fmt.Sprintf("location %g,%g", m.Location.Lat, m.Location.Lon))
	}
	return strings.Join(parts, ", ")
}

// parseLocation reads "lat,lon" in degrees.
func parseLocation(s string) (store.Location, error) {
	lat, lon, ok := strings.Cut(s, ",")
	if !ok {
		return store.Location{}, fmt.Errorf("%q: want latitude,longitude, e.g. 52.37,4.89", s)
	}
	var l store.Location
	var err1, err2 error
	l.Lat, err1 = strconv.ParseFloat(strings.TrimSpace(lat), 64)
	l.Lon, err2 = strconv.ParseFloat(strings.TrimSpace(lon), 64)
	if err1 != nil || err2 != nil {
		return l, fmt.Errorf("%q: want latitude,longitude in degrees, e.g. 52.37,4.89", s)
	}
	return l, l.Validate()
}
