// Package ds18b20 provides the ds18b20 sensor family: one temperature
// sensor per DS18B20 probe on the 1-Wire bus (/sys/bus/w1/devices/28-*),
// in °C.
//
// Each probe is a sensor named ds18b20_<probe id> unless the config names
// it; without any probe, the family is one sensor, ds18b20, that reports
// the absence as a persistent error.
//
//	[sensors.ds18b20]
//	names = { "28-0316a2791aff" = "greenhouse_temperature" }
//	titles = { "28-0316a2791aff" = "Greenhouse" }
package ds18b20

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func init() { publisher.RegisterFamily("ds18b20", Probes) }

// Probes returns a sensor for each DS18B20 probe (family code 28) under
// <root>/sys/bus/w1/devices.
func Probes(env publisher.Env) ([]publisher.Member, error) {
	var p struct {
		Names  map[string]string `toml:"names"`  // probe id → sensor name
		Titles map[string]string `toml:"titles"` // probe id → title
	}
	if err := env.Decode(&p); err != nil {
		return nil, err
	}
	names, titles := p.Names, p.Titles
	dirs, _ := filepath.Glob(env.Path("/sys/bus/w1/devices/28-*"))
	sort.Strings(dirs)
	var out []publisher.Member
	for _, dir := range dirs {
		id := filepath.Base(dir)
		name := names[id]
		if name == "" {
			name = "ds18b20_" + id
		}
		title := titles[id]
		if title == "" {
			title = "Temperature " + id
		}
		out = append(out, publisher.Member{Name: name, Sensor: Probe{Dir: dir, title: title}})
	}
	if len(out) == 0 && len(names) == 0 {
		// No probe at all: say so, as a sensor that fails persistently,
		// rather than vanish.
		return []publisher.Member{{Name: "ds18b20", Sensor: noProbes{bus: env.Path("/sys/bus/w1/devices")}}}, nil
	}
	// A configured probe that is absent still shows, as an error.
	for _, id := range slices.Sorted(maps.Keys(names)) {
		present := slices.ContainsFunc(dirs, func(d string) bool { return filepath.Base(d) == id })
		if !present {
			out = append(out, publisher.Member{Name: names[id], Sensor: Probe{Dir: env.Path("/sys/bus/w1/devices/" + id), title: titles[id]}})
		}
	}
	return out, nil
}

// noProbes stands for the family on a machine without probes: absent,
// and failing when configured.
type noProbes struct{ bus string }

func (noProbes) Title() string { return "DS18B20 Temperature" }

// Present implements publisher.Prober: there is no probe.
func (n noProbes) Present() error {
	return publisher.NotPresent("no DS18B20 probe under %s (dtoverlay=w1-gpio)", n.bus)
}

func (n noProbes) Read(context.Context) (any, error) { return nil, n.Present() }

// Probe reads one DS18B20.
type Probe struct {
	Dir   string
	title string
}

// Title implements publisher.Sensor.
func (p Probe) Title() string {
	if p.title == "" {
		return "Temperature " + filepath.Base(p.Dir)
	}
	return p.title
}

// Present implements publisher.Prober: the probe is on the bus.
func (p Probe) Present() error {
	if _, err := os.Stat(p.Dir); err != nil {
		return publisher.NotPresent("no DS18B20 probe %s under %s", filepath.Base(p.Dir), filepath.Dir(p.Dir))
	}
	return nil
}

// powerOnReset is what a probe reports before its first conversion, or
// after a brown-out: never a measurement.
const powerOnReset = 85000

// Read implements publisher.Sensor. It reads the temperature attribute
// (kernel 5.10 and later) or parses w1_slave, whose CRC check must say YES.
func (p Probe) Read(context.Context) (any, error) {
	if _, err := os.Stat(p.Dir); err != nil {
		return nil, publisher.Persistent(fmt.Errorf("probe %s: %w", filepath.Base(p.Dir), publisher.ErrNotPresent))
	}
	var text string
	if b, err := os.ReadFile(filepath.Join(p.Dir, "temperature")); err == nil {
		text = strings.TrimSpace(string(b))
	} else {
		b, err := os.ReadFile(filepath.Join(p.Dir, "w1_slave"))
		if err != nil {
			return nil, publisher.Intermittent(fmt.Errorf("read probe %s: %w", filepath.Base(p.Dir), err))
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || !strings.HasSuffix(strings.TrimSpace(lines[0]), "YES") {
			return nil, publisher.Intermittent(fmt.Errorf("probe %s: CRC check failed", filepath.Base(p.Dir)))
		}
		_, t, ok := strings.Cut(lines[1], "t=")
		if !ok {
			return nil, publisher.Intermittent(fmt.Errorf("probe %s: no t= in w1_slave", filepath.Base(p.Dir)))
		}
		text = strings.TrimSpace(t)
	}
	milli, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return nil, publisher.Intermittent(fmt.Errorf("probe %s: not a number: %q", filepath.Base(p.Dir), text))
	}
	if milli == powerOnReset {
		return nil, publisher.Intermittent(fmt.Errorf("probe %s: power-on reset value 85 °C (no conversion yet, or unstable power)", filepath.Base(p.Dir)))
	}
	if milli < -55000 || milli > 125000 {
		return nil, publisher.Intermittent(fmt.Errorf("probe %s: %.3f °C is outside the sensor's range [-55, 125]", filepath.Base(p.Dir), float64(milli)/1000))
	}
	return schema.Quantity{Magnitude: float64(milli) / 1000, Unit: schema.UnitCelsius}, nil
}
