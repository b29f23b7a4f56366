package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// SensorsCmd is apd sensors.
type SensorsCmd struct {
	SensorFlags
	Sensor []string `help:"Only this sensor (repeatable)." placeholder:"NAME"`
	JSON   bool     `help:"Print the readings as JSON payloads."`
	List   bool     `help:"List the sensors this build has, without reading them."`
}

// Help implements kong's HelpProvider.
func (SensorsCmd) Help() string {
	return `Reads this machine's sensors now and prints each one's title and value. A
failing sensor shows its error; the others still print.

Examples:
  apd sensors
  apd sensors --sensor cpu_load --sensor ram_available
  apd sensors --json`
}

// Run implements the command.
func (c *SensorsCmd) Run(ctx context.Context, g *Globals, file *config.File) error {
	if c.List {
		for _, n := range publisher.DefaultRegistry().Names() {
			fmt.Fprintln(g.stdout, n)
		}
		return nil
	}
	f := c.SensorFlags
	if len(c.Sensor) > 0 {
		f.Sensors = c.Sensor
	}
	sensors, err := buildSensors(f, file)
	if err != nil {
		return err
	}
	samples := publisher.ReadAll(ctx, sensors, time.Now())
	host := defaultHost()
	if c.JSON {
		out := make([]json.RawMessage, len(samples))
		for i, s := range samples {
			r := s.Reading(host)
			out[i] = r.AppendJSON(nil, schema.WithIdentity)
		}
		return writeJSON(g.stdout, out)
	}
	for i, s := range samples {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		r := s.Reading(host)
		fmt.Fprintln(g.stdout, s.Title)
		fmt.Fprintln(g.stdout, query.Human(&r))
	}
	return nil
}

// WatchCmd is apd watch.
type WatchCmd struct {
	Broker       string `help:"Broker URL: tcp://, ssl:// or ws://." default:"tcp://127.0.0.1:1883" config:"client.broker"`
	Host         string `help:"Only this host." placeholder:"NAME"`
	Sensor       string `help:"Only this sensor." placeholder:"NAME"`
	Username     string `help:"Broker user name." config:"client.username"`
	PasswordFile string `help:"File holding the broker password." placeholder:"FILE" type:"path" config:"client.password_file"`
	TLSCA        string `name:"tls-ca" help:"PEM file of CAs to trust for ssl:// brokers." placeholder:"FILE" type:"path" config:"client.tls_ca"`
}

// Help implements kong's HelpProvider.
func (WatchCmd) Help() string {
	return `Prints readings live as they arrive on the broker, formatted for people.

Examples:
  apd watch
  apd watch --host pi-kitchen --sensor temperature`
}

// Run implements the command.
func (c *WatchCmd) Run(ctx context.Context, g *Globals) error {
	password, err := readPassword(c.PasswordFile)
	if err != nil {
		return err
	}
	log := g.Logger()
	host, sensor := "+", "+"
	if c.Host != "" {
		host = c.Host
	}
	if c.Sensor != "" {
		sensor = c.Sensor
	}
	client, err := newWatchClient(c.Broker, c.Username, password, c.TLSCA, log)
	if err != nil {
		return err
	}
	defer client.Close()
	watcher := newWatcher(g.Prefix, g.stdout)
	if err := client.Subscribe(g.Prefix+"/"+host+"/"+sensor, watcher.show); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "watching %s/%s/%s on %s (Ctrl-C to stop)\n", g.Prefix, host, sensor, c.Broker)
	<-ctx.Done()
	return nil
}

// watchLine formats one message for apd watch: time, host, sensor, value.
func watchLine(topic string, payload []byte, prefix string, now time.Time) (string, bool) {
	rest, ok := strings.CutPrefix(topic, prefix+"/")
	if !ok {
		return "", false
	}
	host, sensor, ok := strings.Cut(rest, "/")
	if !ok || sensor == "$ack" {
		return "", false
	}
	if sensor == "$status" {
		return fmt.Sprintf("%s  %-20s %s", now.UTC().Format("15:04:05"), host, strings.TrimSpace(string(payload))), true
	}
	r, err := schema.Decode(host, sensor, payload, now)
	if err != nil {
		return fmt.Sprintf("%s  %-20s %-20s rejected: %v", now.UTC().Format("15:04:05"), host, sensor, err), true
	}
	lines := strings.Split(query.Human(&r), "\n")
	return fmt.Sprintf("%s  %-20s %-20s %s", r.Time.Format("15:04:05"), host, sensor, strings.Join(lines, ", ")), true
}
