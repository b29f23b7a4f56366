package apdcmd

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/schema"
)

// DeadLettersCmd is apd deadletters.
type DeadLettersCmd struct {
	SourceFlags
	Limit int  `help:"Show at most this many, newest first." default:"50"`
	JSON  bool `help:"Print JSON (payloads in base64)."`
}

// Help implements kong's HelpProvider.
func (DeadLettersCmd) Help() string {
	return `Lists input the aggregator could not store as a reading (bad JSON, bad
names, topic/payload mismatch, unknown versions, oversize payloads, absurd
timestamps), newest first, with the reason. Nothing is thrown away: the
payload is kept (up to 4 KiB).

Examples:
  apd deadletters
  apd deadletters --db apd-data/apd.db --limit 10 --json`
}

// Run implements the command.
func (c *DeadLettersCmd) Run(g *cli.Globals) error {
	if c.Limit < 1 {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("--limit must be at least 1"), "")
	}
	src, done, err := c.open(true)
	if err != nil {
		return err
	}
	defer done()
	dead, err := src.DeadLetters(c.Limit)
	if err != nil {
		return err
	}
	if c.JSON {
		return cli.WriteJSON(g.Stdout(), dead)
	}
	if len(dead) == 0 {
		fmt.Fprintln(g.Stdout(), "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(g.Stdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVED\tTOPIC\tREASON\tPAYLOAD")
	for _, d := range dead {
		payload := payloadColumn(d.Payload)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", schema.FormatTime(d.Received), schema.Printable(d.Topic), schema.Printable(d.Reason), payload)
	}
	return tw.Flush()
}

// payloadColumn shows a payload as it was sent — JSON reads as JSON, not
// quoted again — made safe for a terminal (schema.Printable, tabs too, which
// would break the columns) and cut to 60 characters.
func payloadColumn(p []byte) string {
	const width = 60
	s := strings.ReplaceAll(schema.Printable(string(p)), "\t", `\t`)
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}
