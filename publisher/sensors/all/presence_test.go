package all

import (
	"errors"
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/publisher/sensortest"
)

// TestPresence probes the built-in sensors that need hardware in fake
// sysfs trees: each is present where its hardware is, and otherwise
// absent with a reason that names what was looked for and where.
func TestPresence(t *testing.T) {
	dht := map[string]string{"sys/bus/iio/devices/iio:device0/name": "dht11\n", "sys/bus/iio/devices/iio:device0/in_temp_input": "21000\n"}
	battery := map[string]string{"sys/class/power_supply/BAT0/type": "Battery\n", "sys/class/power_supply/BAT0/capacity": "87\n"}
	mainsOnly := map[string]string{"sys/class/power_supply/AC/type": "Mains\n", "sys/class/power_supply/AC/online": "1\n"}
	thermal := map[string]string{"sys/class/thermal/thermal_zone0/type": "x86_pkg_temp\n", "sys/class/thermal/thermal_zone0/temp": "48300\n"}
	w1 := map[string]string{"sys/bus/w1/devices/28-0316a2791aff/temperature": "21437\n", "sys/bus/w1/devices/w1_bus_master1/": ""}
	otherIIO := map[string]string{"sys/bus/iio/devices/iio:device0/name": "bme280\n"}
	tests := []struct {
		name   string
		sensor string
		files  map[string]string
		absent string // a part of the reason; "" for present
	}{
		{"DHT22 on IIO", "temperature", dht, ""},
		{"humidity from the same DHT22", "relative_humidity", dht, ""},
		{"no IIO at all", "temperature", nil, "no DHT11/DHT22 IIO device under /"},
		{"another IIO device", "relative_humidity", otherIIO, "no DHT11/DHT22 IIO device under /"},
		{"laptop battery", "battery_level", battery, ""},
		{"laptop: AC connected has a battery to ask", "ac_connected", battery, ""},
		{"desktop: no battery level", "battery_level", mainsOnly, "no battery under /"},
		{"desktop: AC connected means nothing", "ac_connected", mainsOnly, "no battery under /"},
		{"no power supplies", "ac_connected", nil, "no battery under /"},
		{"thermal zone", "cpu_temperature", thermal, ""},
		{"virtual machine without thermal zones", "cpu_temperature", nil, "no thermal zone under /"},
		{"probe on the 1-Wire bus", "ds18b20", w1, ""},
		{"no 1-Wire bus", "ds18b20", nil, "no DS18B20 probe under /"},
		{"1-Wire bus without probes", "ds18b20", map[string]string{"sys/bus/w1/devices/w1_bus_master1/": ""}, "no DS18B20 probe under /"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := publisher.Env{Root: sensortest.Sysfs(t, tc.files), Devices: &publisher.Devices{}}
			members, err := publisher.DefaultRegistry().Expand(tc.sensor, env)
			if err != nil || len(members) != 1 {
				t.Fatalf("build %s: %d members, %v", tc.sensor, len(members), err)
			}
			err = publisher.Present(members[0].Sensor)
			if tc.absent == "" {
				if err != nil {
					t.Fatalf("%s absent: %v; want present", tc.sensor, err)
				}
				return
			}
			if err == nil || !errors.Is(err, publisher.ErrNotPresent) || !strings.Contains(err.Error(), tc.absent) || !strings.Contains(err.Error(), env.Root) {
				t.Fatalf("%s: got %v; want absent, %q… under the root", tc.sensor, err, tc.absent)
			}
		})
	}
}

// TestPresenceOfSensorsWithoutHardware: sensors of what every machine
// has are never absent, whatever the tree.
func TestPresenceOfSensorsWithoutHardware(t *testing.T) {
	root := sensortest.Sysfs(t, nil)
	for _, name := range []string{"version", "ip_addresses", "cpu_load", "ram_available", "disk_usage", "load_average", "uptime"} {
		s, err := publisher.DefaultRegistry().New(name, publisher.Env{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		if err := publisher.Present(s); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
