// Package cpu_temperature provides the cpu_temperature sensor: the CPU's
// temperature from the kernel's thermal zones (/sys/class/thermal), in °C.
package cpu_temperature

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

func init() { publisher.Register("cpu_temperature", New) }

// Sensor reads thermal zones under Dir. Zone, when set, names the zone to
// read (thermal_zone0); otherwise the first zone whose type looks like a
// CPU is used, or the first zone.
type Sensor struct {
	Dir  string
	Zone string
}

// New returns the sensor reading <root>/sys/class/thermal; the zone
// parameter picks a zone.
func New(env publisher.Env) (publisher.Sensor, error) {
	var p struct {
		Zone string `toml:"zone"`
	}
	if err := env.Decode(&p); err != nil {
		return nil, err
	}
	return Sensor{Dir: env.Path("/sys/class/thermal"), Zone: p.Zone}, nil
}

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "CPU Temperature" }

// cpuTypes are thermal zone types that measure the CPU package.
var cpuTypes = []string{"x86_pkg_temp", "cpu-thermal", "cpu_thermal", "soc_thermal", "coretemp", "k10temp", "acpitz"}

func (s Sensor) zone() (string, error) {
	if s.Zone != "" {
		z := filepath.Join(s.Dir, s.Zone)
		if _, err := os.Stat(z); err != nil {
			return "", publisher.NotPresent("no thermal zone %s under %s", s.Zone, s.Dir)
		}
		return z, nil
	}
	zones, _ := filepath.Glob(filepath.Join(s.Dir, "thermal_zone*"))
	if len(zones) == 0 {
		return "", publisher.NotPresent("no thermal zone under %s", s.Dir)
	}
	sort.Strings(zones)
	for _, want := range cpuTypes {
		for _, z := range zones {
			b, _ := os.ReadFile(filepath.Join(z, "type"))
			if strings.TrimSpace(string(b)) == want {
				return z, nil
			}
		}
	}
	return zones[0], nil
}

// Present implements publisher.Prober: the kernel has a thermal zone
// (virtual machines and containers often have none).
func (s Sensor) Present() error {
	_, err := s.zone()
	return err
}

// Read implements publisher.Sensor.
func (s Sensor) Read(context.Context) (any, error) {
	z, err := s.zone()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(z, "temp"))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", z, err)
	}
	milli, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("parse %s/temp %q: %w", z, strings.TrimSpace(string(b)), err)
	}
	return schema.Quantity{Magnitude: float64(milli) / 1000, Unit: schema.UnitCelsius}, nil
}
