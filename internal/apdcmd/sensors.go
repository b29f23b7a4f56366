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
	JSON   bool     `help:"Print the readings as JSON payloads (an absent sensor as {\"sensor\",\"title\",\"absent\": reason})."`
	List   bool     `help:"List the sensors this build has, without reading them."`
}

// Help implements kong's HelpProvider.
func (SensorsCmd) Help() string {
	return `Reads this machine's sensors now and prints each one's title and value. A
failing sensor shows its error; the others still print. A sensor whose
hardware this machine does not have (no DHT22 on IIO, no 1-Wire probe, no
battery) is listed as absent, with what was looked for, and not read:
apd-publish does not sample it either, unless the configuration names it
(--sensor here reads it anyway).

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
	samples := publisher.ReadAll(ctx, publisher.Sampled(sensors), time.Now())
	host := agent.DefaultHost()
	// Each sensor in the order built: a reading, or why it is absent.
	type entry struct {
		reading *schema.Reading
		absent  publisher.Named
	}
	entries := make([]entry, 0, len(sensors))
	for _, n := range sensors {
		if n.Absent != nil {
			entries = append(entries, entry{absent: n})
			continue
		}
		r := samples[0].Reading(host)
		samples = samples[1:]
		entries = append(entries, entry{reading: &r})
	}
	if c.JSON {
		out := make([]json.RawMessage, len(entries))
		for i, e := range entries {
			if e.reading != nil {
				out[i] = e.reading.AppendJSON(nil, schema.WithIdentity)
				continue
			}
			b, err := json.Marshal(absentSensor{Sensor: e.absent.Name, Title: e.absent.Sensor.Title(), Absent: e.absent.Absent.Error()})
			if err != nil {
				return fmt.Errorf("encode absent sensor: %w", err)
			}
			out[i] = b
		}
		return cli.WriteJSON(g.Stdout(), out)
	}
	for i, e := range entries {
		if i > 0 {
			fmt.Fprintln(g.Stdout())
		}
		if e.reading == nil {
			fmt.Fprintln(g.Stdout(), schema.Printable(e.absent.Sensor.Title()))
			fmt.Fprintln(g.Stdout(), schema.Printable("absent: "+e.absent.Absent.Error()))
			continue
		}
		fmt.Fprintln(g.Stdout(), schema.Printable(e.reading.Title))
		fmt.Fprintln(g.Stdout(), schema.Human(e.reading))
	}
	return nil
}

// absentSensor is apd sensors --json's entry for a sensor whose hardware
// is not on this machine: no reading, the reason instead.
type absentSensor struct {
	Sensor string `json:"sensor"`
	Title  string `json:"title"`
	Absent string `json:"absent"`
}
