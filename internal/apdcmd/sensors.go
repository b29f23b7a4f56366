package apdcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/apd-telemetry/apd/internal/agent"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

// SensorsCmd is apd sensors.
type SensorsCmd struct {
	agent.SensorFlags
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
func (c *SensorsCmd) Run(ctx context.Context, g *cli.Globals, file *config.File) error {
	if c.List {
		for _, n := range publisher.DefaultRegistry().Names() {
			fmt.Fprintln(g.Stdout(), n)
		}
		return nil
	}
	f := c.SensorFlags
	if len(c.Sensor) > 0 {
		f.Sensors = c.Sensor
	}
	sensors, err := agent.BuildSensors(f, file)
	if err != nil {
		return err
	}
	samples := publisher.ReadAll(ctx, sensors, time.Now())
	host := agent.DefaultHost()
	if c.JSON {
		out := make([]json.RawMessage, len(samples))
		for i, s := range samples {
			r := s.Reading(host)
			out[i] = r.AppendJSON(nil, schema.WithIdentity)
		}
		return cli.WriteJSON(g.Stdout(), out)
	}
	for i, s := range samples {
		if i > 0 {
			fmt.Fprintln(g.Stdout())
		}
		r := s.Reading(host)
		fmt.Fprintln(g.Stdout(), schema.Printable(s.Title))
		fmt.Fprintln(g.Stdout(), schema.Human(&r))
	}
	return nil
}
