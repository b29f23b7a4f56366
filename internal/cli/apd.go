package cli

import "io"

// APD is the command tree of the apd binary.
type APD struct {
	Globals

	Serve     ServeCmd     `cmd:"" help:"Run broker, aggregator and HTTP API (the main job)."`
	Broker    BrokerCmd    `cmd:"" help:"Run the MQTT broker alone."`
	Aggregate AggregateCmd `cmd:"" help:"Store readings from any MQTT broker."`
	Query     QueryCmd     `cmd:"" help:"Print readings of one sensor."`
	Sensors   SensorsCmd   `cmd:"" help:"Read this machine's sensors now."`
	Watch     WatchCmd     `cmd:"" help:"Print readings live as they arrive."`
	Hosts     HostsCmd     `cmd:"" help:"List the hosts seen and their state."`
	Export    ExportCmd    `cmd:"" help:"Write stored readings as NDJSON or CSV."`
	Import    ImportCmd    `cmd:"" help:"Store readings from NDJSON written by export."`

	Delete      DeleteCmd      `cmd:"" help:"Delete readings of a host (privacy)."`
	Compact     CompactCmd     `cmd:"" help:"Shrink a database file after deletes."`
	Backup      BackupCmd      `cmd:"" help:"Write a consistent copy of the database, even while it runs."`
	DeadLetters DeadLettersCmd `cmd:"" name:"deadletters" help:"List input that was rejected, with the reason."`
	Users       UsersCmd       `cmd:"" help:"Manage the broker's users (authentication and ACLs)."`
	Version     VersionCmd     `cmd:"" help:"Print the version."`
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run implements the command.
func (VersionCmd) Run(g *Globals) error {
	_, err := io.WriteString(g.stdout, "apd "+Version+"\n")
	return err
}

// MainAPD runs the apd binary.
func MainAPD(args []string, stdout, stderr io.Writer) int {
	var root APD
	return Main("apd", "apd: telemetry over MQTT. Broker, aggregator, queries and tools in one binary.",
		&root, &root.Globals, args, stdout, stderr)
}

// PublishRoot is the command tree of apd-publish.
type PublishRoot struct {
	Globals
	PublishCmd
}

// MainPublish runs the apd-publish binary.
func MainPublish(args []string, stdout, stderr io.Writer) int {
	var root PublishRoot
	return Main("apd-publish", "apd-publish: sample this device's sensors and publish readings over MQTT.",
		&root, &root.Globals, args, stdout, stderr)
}
