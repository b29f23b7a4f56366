// Package battery_level provides the battery_level sensor: the charge of
// the machine's battery (a laptop, a UPS HAT on a Pi) in percent, from
// /sys/class/power_supply. Without a battery it is a persistent error.
package battery_level

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func init() { publisher.Register("battery_level", New) }

// Sensor reads the first battery under Dir, or the supply named Supply.
type Sensor struct {
	Dir    string
	Supply string
}

// New returns the sensor reading <root>/sys/class/power_supply; the supply
// parameter names the battery (BAT1) when there are several.
func New(env publisher.Env) (publisher.Sensor, error) {
	var p struct {
		Supply string `toml:"supply"`
	}
	if err := env.Decode(&p); err != nil {
		return nil, err
	}
	return Sensor{Dir: env.Path("/sys/class/power_supply"), Supply: p.Supply}, nil
}

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "Battery Level" }

// battery returns the directory of the battery to read.
func (s Sensor) battery() (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(s.Dir, "*"))
	sort.Strings(dirs)
	for _, dir := range dirs {
		if s.Supply != "" && filepath.Base(dir) != s.Supply {
			continue
		}
		if t, _ := os.ReadFile(filepath.Join(dir, "type")); strings.TrimSpace(string(t)) == "Battery" {
			return dir, nil
		}
	}
	if s.Supply != "" {
		return "", publisher.NotPresent("no battery %s under %s", s.Supply, s.Dir)
	}
	return "", publisher.NotPresent("no battery under %s", s.Dir)
}

// Present implements publisher.Prober.
func (s Sensor) Present() error {
	_, err := s.battery()
	return err
}

// Read implements publisher.Sensor.
func (s Sensor) Read(context.Context) (any, error) {
	dir, err := s.battery()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "capacity"))
	if err != nil {
		return nil, fmt.Errorf("read %s capacity: %w", filepath.Base(dir), err)
	}
	pct, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil || pct < 0 || pct > 100 {
		return nil, publisher.Intermittent(fmt.Errorf("%s capacity %q: want 0-100", filepath.Base(dir), strings.TrimSpace(string(b))))
	}
	return schema.Quantity{Magnitude: pct, Unit: schema.UnitPercent}, nil
}
