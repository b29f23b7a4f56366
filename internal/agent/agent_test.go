package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/internal/agent"
	"github.com/apd-telemetry/apd/internal/config"
	_ "github.com/apd-telemetry/apd/publisher/sensors/all"
)

// TestBuildSensorsMarksAbsent: without a selection, a sensor whose
// hardware is missing is marked absent, unless a table configures it (or
// the device it shares); a selection samples what it names.
func TestBuildSensorsMarksAbsent(t *testing.T) {
	dht, err := filepath.Abs("../../publisher/sensors/dht/testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		sensors []string
		toml    string
		absent  string // the absent ones, sorted, comma-separated
	}{
		{"default", nil, "", "ac_connected,battery_level,cpu_temperature,ds18b20,relative_humidity,temperature"},
		{"a table configures a missing battery", nil, "[sensors.battery_level]\nsupply = \"BAT1\"\n",
			"ac_connected,cpu_temperature,ds18b20,relative_humidity,temperature"},
		{"a table points the DHT at its device, for both quantities", nil, "[sensors.temperature]\niio_device = \"" + dht + "\"\n",
			"ac_connected,battery_level,cpu_temperature,ds18b20"},
		{"a table of a device that is missing", nil, "[sensors.temperature]\niio_device = \"/nonexistent/iio:device0\"\n",
			"ac_connected,battery_level,cpu_temperature,ds18b20,relative_humidity"},
		{"a selection samples what it names", []string{"temperature", "cpu_load", "ds18b20"}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "apd.toml")
			if err := os.WriteFile(path, []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			file, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			sensors, err := agent.BuildSensors(agent.SensorFlags{Sensors: tc.sensors, SysRoot: t.TempDir()}, file)
			if err != nil {
				t.Fatal(err)
			}
			var absent []string
			for _, n := range sensors {
				if n.Absent != nil {
					absent = append(absent, n.Name)
				}
			}
			if got := strings.Join(absent, ","); got != tc.absent {
				t.Errorf("absent: got %s, want %s", got, tc.absent)
			}
		})
	}
}

// TestDefaultSensorsHelp: apd-publish --help names the default set and
// each absent sensor with its reason.
func TestDefaultSensorsHelp(t *testing.T) {
	root := t.TempDir()
	help := agent.DefaultSensorsHelp(agent.SensorFlags{SysRoot: root})
	for _, want := range []string{"cpu_load", "uptime", "\n  temperature        no DHT11/DHT22 IIO device under " + root, "\n  ac_connected       no battery under " + root} {
		if !strings.Contains(help, want) {
			t.Errorf("no %q in\n%s", want, help)
		}
	}
}
