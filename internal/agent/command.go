package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

// PublishCmd is apd-publish.
type PublishCmd struct {
	PublisherFlags
	cli.ClientCertFlags
	Broker  string        `help:"Broker URL: tcp://, ssl:// or ws://; several, comma-separated (nodes of a cluster), are tried in turn." default:"tcp://127.0.0.1:1883" config:"publisher.broker"`
	Spool   string        `help:"Spool directory (default: <state dir>/apd-spool.db); a spool file of an earlier version there is migrated." placeholder:"PATH" type:"path" config:"publisher.spool"`
	Once    bool          `help:"Sample once, publish, wait briefly for the acknowledgement, exit."`
	DryRun  bool          `help:"Print the JSON payloads instead of publishing (no broker, no spool)."`
	AckWait time.Duration `help:"With --once, how long to wait for the aggregator's acknowledgement." default:"3s"`
}

// Help implements kong's HelpProvider. It probes this machine's sensors,
// so that the default set it describes is this machine's.
func (PublishCmd) Help() string {
	return `Samples this device's sensors every interval and publishes each reading as
JSON over MQTT to <prefix>/<host>/<sensor>. Every reading is kept in a local
spool (a directory of append-only segments) until the aggregator acknowledges
that it is stored; --sync sets when spooled readings are forced to storage.
What the process writes to storage (an SD card's wear) is in every $status
and, on SIGUSR1, in the log ("disk writes", with rates per day).

A sensor that fails stores its error once, when the failure starts, and its
recovery (the first good reading, with the count of failed samples); the
failed samples in between are counted, and the $status says which sensors
are failing.

` + DefaultSensorsHelp(SensorFlags{}) + `

Examples:
  apd-publish --broker tcp://192.168.1.10:1883 --interval 30s
  apd-publish --sync every --spool /var/lib/apd-publish/apd-spool.db
  apd-publish --once --sensors cpu_load,ram_available
  apd-publish --dry-run
  apd-publish --config /etc/apd/apd.toml --ha-discovery`
}

// Run implements the command.
func (c *PublishCmd) Run(ctx context.Context, g *cli.Globals, file *config.File) error {
	log := g.Logger()
	sensors, err := BuildSensors(c.SensorFlags, file)
	if err != nil {
		return err
	}
	if c.Interval <= 0 {
		return cli.WithCode(cli.ExitUsage, errors.New("--interval must be positive"), "")
	}
	if _, err := c.SpoolOptions(log); err != nil {
		return err
	}
	topics := schema.Topics{Prefix: g.Prefix}
	if c.DryRun {
		host := c.Host
		if host == "" {
			host = DefaultHost()
		}
		return dryRun(ctx, g.Stdout(), sensors, host)
	}
	spool := c.Spool
	if spool == "" {
		spool = DefaultSpool()
	}
	a, err := NewAgent(c.PublisherFlags, c.ClientCertFlags, sensors, c.Broker, spool, topics, !c.Once, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Start(); err != nil {
		return err
	}
	if c.Once {
		return a.Pub.Once(ctx, c.AckWait)
	}
	sampled := len(publisher.Sampled(sensors))
	log.Info("publishing", "broker", c.Broker, "interval", c.Interval, "sensors", sampled, "absent", len(sensors)-sampled, "spool", spool)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				a.LogWear(log)
			}
		}
	}()
	return a.Pub.Run(ctx)
}

// DefaultSensorsHelp describes the sensors sampled without --sensors on
// this machine (under f.SysRoot): those whose hardware is there, and the
// absent ones with the reason.
func DefaultSensorsHelp(f SensorFlags) string {
	f.Sensors = nil
	sensors, err := BuildSensors(f, &config.File{})
	if err != nil {
		return "Sensors: " + err.Error()
	}
	var sampled []string
	var absent strings.Builder
	width := 0
	for _, n := range sensors {
		width = max(width, len(n.Name))
	}
	for _, n := range sensors {
		if n.Absent == nil {
			sampled = append(sampled, n.Name)
			continue
		}
		fmt.Fprintf(&absent, "\n  %-*s  %s", width, n.Name, n.Absent)
	}
	text := "Sensors: without --sensors, every sensor this build has whose hardware is on\n" +
		"this machine. Here:\n  " + wrap(strings.Join(sampled, ", "), 76, "\n  ")
	if absent.Len() > 0 {
		text += "\nAbsent here, so not sampled unless --sensors names them or a\n[sensors.<name>] table configures them:" + absent.String()
	}
	return text
}

// wrap breaks text at spaces into lines of at most width, joined by sep.
func wrap(text string, width int, sep string) string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return strings.Join(append(lines, line), sep)
}

func dryRun(ctx context.Context, w io.Writer, sensors []publisher.Named, host string) error {
	for _, s := range publisher.ReadAll(ctx, publisher.Sampled(sensors), time.Now()) {
		r := s.Reading(host)
		if _, err := fmt.Fprintf(w, "%s\n", r.AppendJSON(nil, schema.WithIdentity)); err != nil {
			return err
		}
	}
	return nil
}

// PublishRoot is the command tree of apd-publish.
type PublishRoot struct {
	cli.Globals
	PublishCmd
}

// MainPublish runs the apd-publish binary.
func MainPublish(args []string, stdout, stderr io.Writer) int {
	var root PublishRoot
	// The file may also hold apd's own sections: apd checks those.
	keys := cli.Keys(nil, &PublishRoot{})
	for _, section := range []string{"server", "aggregator", "client"} {
		keys[section+".*"] = true
	}
	return cli.Main("apd-publish", "apd-publish: sample this device's sensors and publish readings over MQTT.",
		&root, &root.Globals, args, stdout, stderr, keys, ExitRules)
}
