package apdcmd

import (
	"io"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/apd-telemetry/apd/internal/agent"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/httpapi"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/query/clean"
	"github.com/apd-telemetry/apd/internal/store"
)

// APD is the command tree of the apd binary.
type APD struct {
	cli.Globals

	Serve     ServeCmd     `cmd:"" help:"Run broker, aggregator and HTTP API (the main job)."`
	Broker    BrokerCmd    `cmd:"" help:"Run the MQTT broker alone."`
	Aggregate AggregateCmd `cmd:"" help:"Store readings from any MQTT broker."`
	Query     QueryCmd     `cmd:"" help:"Print readings of one sensor."`
	Sensors   SensorsCmd   `cmd:"" help:"Read this machine's sensors now."`
	Watch     WatchCmd     `cmd:"" help:"Print readings live as they arrive."`
	Hosts     HostsCmd     `cmd:"" help:"List the hosts seen and their state."`
	Export    ExportCmd    `cmd:"" help:"Write stored readings as NDJSON or CSV."`
	Import    ImportCmd    `cmd:"" help:"Store readings from NDJSON or CSV written by export, or a logger's CSV."`
	Migrate   MigrateCmd   `cmd:"" help:"Copy a whole store into another (file ⇄ PostgreSQL)."`

	Delete      DeleteCmd      `cmd:"" help:"Delete readings of a host (privacy)."`
	Compact     CompactCmd     `cmd:"" help:"Shrink a database file after deletes."`
	Backup      BackupCmd      `cmd:"" help:"Write a consistent copy of the database, even while it runs."`
	Verify      VerifyCmd      `cmd:"" help:"Check a database file page by page (a backup, a copy)."`
	DeadLetters DeadLettersCmd `cmd:"" name:"deadletters" help:"List input that was rejected, with the reason."`
	Users       UsersCmd       `cmd:"" help:"Manage the broker's users (authentication and ACLs)."`
	Rules       RulesCmd       `cmd:"" help:"Rules on live readings: status, test against stored history, check a file."`
	Chart       ChartCmd       `cmd:"" help:"Draw readings as a PNG or SVG chart, with a map."`
	Demo        DemoCmd        `cmd:"" help:"Run apd serve on a simulated fleet with a week of history, in a throwaway directory."`
	Version     cli.VersionCmd `cmd:"" help:"Print the version."`
}

// MainAPD runs the apd binary.
func MainAPD(args []string, stdout, stderr io.Writer) int {
	var root APD
	opts := []kong.Option{registries()}
	return cli.Main("apd", "apd: telemetry over MQTT. Broker, aggregator, queries and tools in one binary.",
		&root, &root.Globals, args, stdout, stderr, cli.Keys(opts, &APD{}, &agent.PublishRoot{}), exitRules, opts...)
}

// registries gives the command tags the names in apd's registries, so
// the CLI's choices and help follow what is registered.
func registries() kong.Vars {
	var aggHelp []string
	for _, a := range query.Aggregations() {
		aggHelp = append(aggHelp, a.Name+" ("+a.Help+")")
	}
	var cleanHelp []string
	for _, k := range clean.Kinds() {
		cleanHelp = append(cleanHelp, k.Name+" ("+k.Help+")")
	}
	return kong.Vars{
		"cleaners":        "," + strings.Join(clean.Names(), ","),
		"cleaners_help":   strings.Join(cleanHelp, "; "),
		"aggregates":      "," + strings.Join(query.AggregateNames(), ","),
		"aggregates_help": strings.Join(aggHelp, ", "),
		"formats":         strings.Join(query.FormatNames(), ","),
		"formats_help":    strings.Join(query.FormatNames(), ", "),
	}
}

// exitRules is apd's table of exit codes: the common errors', then those
// of the server side.
var exitRules = append(slices.Clone(agent.ExitRules),
	cli.ExitRule{Err: httpapi.ErrUnauthorized, Code: cli.ExitBadConfig, Hint: "pass --api-key-file or set APD_API_KEY"},
	cli.ExitRule{Err: httpapi.ErrUnreachable, Code: cli.ExitUnreachable, Hint: "start apd serve, pass --server, or read a file with --db"},
	cli.ExitRule{Err: store.ErrLocked, Code: cli.ExitFailure, Hint: "an aggregator holds the database: query it with --server"},
)
