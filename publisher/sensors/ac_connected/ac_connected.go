// Package ac_connected provides the ac_connected sensor: whether the
// machine runs on external power, from /sys/class/power_supply. A machine
// without a battery has nothing to report: that is a persistent error.
package ac_connected

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func init() {
	publisher.Register("ac_connected", New)
	schema.RegisterFormat("ac_connected", schema.FormatConnected)
}

// Sensor reads power supplies under Dir.
type Sensor struct{ Dir string }

// New returns the sensor reading <root>/sys/class/power_supply.
func New(env publisher.Env) (publisher.Sensor, error) {
	return Sensor{Dir: env.Path("/sys/class/power_supply")}, nil
}

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "AC Connected" }

// Present implements publisher.Prober: without a battery there is nothing
// to tell (a desktop is always on mains).
func (s Sensor) Present() error {
	entries, _ := os.ReadDir(s.Dir)
	for _, e := range entries {
		if readAttr(filepath.Join(s.Dir, e.Name()), "type") == "Battery" {
			return nil
		}
	}
	return publisher.NotPresent("no battery under %s", s.Dir)
}

func readAttr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Read implements publisher.Sensor. A mains or USB supply that is online
// means connected; without one, a charging or full battery does.
func (s Sensor) Read(context.Context) (any, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("list power supplies: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	battery, external, online := false, false, false
	batteryCharging := false
	for _, n := range names {
		dir := filepath.Join(s.Dir, n)
		switch readAttr(dir, "type") {
		case "Battery":
			battery = true
			switch readAttr(dir, "status") {
			case "Charging", "Full", "Not charging":
				batteryCharging = true
			}
		case "Mains", "USB", "USB_C", "USB_PD":
			external = true
			if readAttr(dir, "online") == "1" {
				online = true
			}
		}
	}
	if !battery {
		return nil, publisher.NotPresent("no battery under %s", s.Dir)
	}
	if external {
		return online, nil
	}
	return batteryCharging, nil
}
