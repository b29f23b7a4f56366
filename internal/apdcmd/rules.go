package apdcmd

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/httpapi"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/rules"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// RulesCmd is apd rules.
type RulesCmd struct {
	Status RulesStatusCmd `cmd:"" help:"Each running rule with its counters."`
	Test   RulesTestCmd   `cmd:"" help:"Replay stored readings through the rules without acting; print the outcomes."`
	Check  RulesCheckCmd  `cmd:"" help:"Validate the [[rules]] of a config file."`
}

// RulesStatusCmd is apd rules status.
type RulesStatusCmd struct {
	SourceFlags
	JSON bool `help:"Print JSON."`
}

// Help implements kong's HelpProvider.
func (RulesStatusCmd) Help() string {
	return `Asks the running aggregator (apd serve or apd aggregate) for its rules and
their counters: readings in, outcomes, outcomes acted on, failed actions,
readings dropped from a full queue, queued now, skipped (late, duplicate or
without a number), and the mean time of the last 10 outcomes' actions. The
same counters go to the log on SIGUSR1.

Examples:
  apd rules status
  apd rules status --server http://10.0.0.5:8080 --json`
}

// Run implements the command.
func (c *RulesStatusCmd) Run(g *cli.Globals) error {
	if c.DB != "" {
		return cli.WithCode(cli.ExitUsage, errors.New("--db: rules run in the aggregator; status asks it over --server"), "")
	}
	key, err := c.apiKey()
	if err != nil {
		return err
	}
	client := httpapi.NewClient(c.Server)
	client.APIKey = key
	stats, err := client.RuleStats()
	if err != nil {
		return err
	}
	if c.JSON {
		return cli.WriteJSON(g.Stdout(), stats)
	}
	if len(stats) == 0 {
		fmt.Fprintln(g.Stdout(), "no rules (add [[rules]] to the config of apd serve)")
		return nil
	}
	tw := tabwriter.NewWriter(g.Stdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tIN\tOUTCOMES\tACTED\tFAILED\tDROPPED\tQUEUED\tSKIPPED\tMEAN ACTION")
	for _, s := range stats {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Name, s.In, s.Outcomes, s.Acted, s.Failed, s.Dropped, s.Queued, s.Skipped,
			time.Duration(s.MeanActionSeconds*float64(time.Second)).Round(time.Microsecond))
	}
	return tw.Flush()
}

// RulesTestCmd is apd rules test.
type RulesTestCmd struct {
	SourceFlags
	Since  string   `help:"Replay readings from this time: a duration back from now (24h, 7d), an RFC 3339 time or a date." default:"24h"`
	Until  string   `help:"Up to this time (exclusive), in the same forms."`
	Rule   []string `help:"Only this rule (repeatable)." placeholder:"NAME"`
	Format string   `help:"Output: table or ndjson (one outcome reading per line)." default:"table" enum:"table,ndjson"`
}

// Help implements kong's HelpProvider.
func (RulesTestCmd) Help() string {
	return `Replays stored readings through the [[rules]] of the config file, in time
order per host, exactly as they would have been judged live, and prints each
outcome. No action runs: nothing is logged, published, posted or executed.

Examples:
  apd rules test --config apd.toml --since 24h
  apd rules test --config apd.toml --db apd-data/apd.db --since 2026-11-01 --format ndjson
  apd rules test --config apd.toml --rule kitchen-cold --since 7d`
}

// Run implements the command.
func (c *RulesTestCmd) Run(g *cli.Globals, file *config.File) error {
	cfgs, err := loadRules(file)
	if err != nil {
		return err
	}
	if len(c.Rule) > 0 {
		var picked []rules.Config
		for _, r := range cfgs {
			for _, name := range c.Rule {
				if r.Name == name {
					picked = append(picked, r)
				}
			}
		}
		if len(picked) != len(c.Rule) {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--rule %s: not every name is a rule of %s (%s)", strings.Join(c.Rule, ","), file.Path, ruleNames(cfgs)), "")
		}
		cfgs = picked
	}
	if len(cfgs) == 0 {
		if file.Path == "" {
			return cli.WithCode(cli.ExitUsage, errors.New("no rules: they come from [[rules]] in the config file"), "pass --config FILE")
		}
		return cli.WithCode(cli.ExitBadConfig, fmt.Errorf("no [[rules]] in %s", file.Path), "")
	}
	now := time.Now()
	since, err := query.ParseTime(c.Since, now)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("--since: %w", err), "")
	}
	until, err := query.ParseTime(c.Until, now)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("--until: %w", err), "")
	}
	src, done, err := c.open(true)
	if err != nil {
		return err
	}
	defer done()
	w := g.Stdout()
	var tw *tabwriter.Writer
	if c.Format == "table" {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RULE\tHOST\tTIME\tOUTCOME\tREADING")
	}
	n := 0
	err = rules.Replay(cfgs, func(sensor string, hosts []string, fn func(*schema.Reading) error) error {
		return src.Scan(store.Query{Sensor: sensor, Hosts: hosts, Since: since, Until: until}, fn)
	}, func(o rules.Outcome) error {
		n++
		if tw != nil {
			r := o.Reading()
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.Rule, o.Host, schema.FormatTime(o.Time), schema.Human(&r), schema.Human(&o.Trigger))
			return err
		}
		r := o.Reading()
		_, err := fmt.Fprintf(w, "%s\n", r.AppendJSON(nil, schema.WithIdentity))
		return err
	})
	if err != nil {
		return err
	}
	if tw != nil {
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(g.Stderr(), "%s from %s\n", plural(n, "outcome"), plural(len(cfgs), "rule"))
	}
	return nil
}

func ruleNames(cfgs []rules.Config) string {
	names := make([]string, len(cfgs))
	for i, r := range cfgs {
		names[i] = r.Name
	}
	return strings.Join(names, ", ")
}

// RulesCheckCmd is apd rules check.
type RulesCheckCmd struct {
	File string `arg:"" help:"Config file with [[rules]]." type:"path"`
}

// Help implements kong's HelpProvider.
func (RulesCheckCmd) Help() string {
	return `Validates the [[rules]] of a config file the way apd serve does at start:
names, sensors, conditions, durations, actions and their settings, and rules
that would feed each other in a loop. Exit code 18 and the rule and problem
when one is wrong.

Examples:
  apd rules check /etc/apd/apd.toml`
}

// Run implements the command.
func (c *RulesCheckCmd) Run(g *cli.Globals) error {
	file, err := config.Load(c.File)
	if err != nil {
		return err
	}
	cfgs, err := loadRules(file)
	if err != nil {
		return err
	}
	if len(cfgs) == 0 {
		return cli.WithCode(cli.ExitBadConfig, fmt.Errorf("no [[rules]] in %s", c.File), "")
	}
	tw := tabwriter.NewWriter(g.Stdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tSENSOR\tWHEN\tFOR\tON CHANGE\tACTIONS")
	for _, r := range cfgs {
		sensor, when := r.Sensor, r.When
		if r.Derived() {
			var inputs []string
			for name, in := range r.Inputs {
				inputs = append(inputs, name+"="+in.Host+"/"+in.Sensor)
			}
			slices.Sort(inputs)
			sensor, when = strings.Join(inputs, " "), "= "+r.Expr+" (on "+r.Host+")"
		}
		if r.Unit != "" {
			when += " (in " + r.Unit + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", r.Name, sensor, when, r.For, r.OnChange, strings.Join(r.Actions, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(g.Stderr(), "%s: %s, all valid\n", c.File, plural(len(cfgs), "rule"))
	return nil
}

// plural is "1 rule", "2 rules".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
