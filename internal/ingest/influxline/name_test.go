package influxline

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/schema"
)

// TestFoldName checks the documented mapping both ways on Telegraf's and
// node_exporter's series (docs/integrations/telegraf.md and prometheus.md
// show the same rows).
func TestFoldName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		parts []string // measurement, field, tag values in tag-key order (or metric name, label values)
		want  string
		// back is UnfoldName(want) when it is not parts: characters
		// outside [A-Za-z0-9_-] come back as '-'.
		back []string
	}{
		{"cpu total", []string{"cpu", "usage_idle", "cpu-total"}, "cpu.usage_idle.cpu-total", nil},
		{"cpu core", []string{"cpu", "usage_user", "cpu0"}, "cpu.usage_user.cpu0", nil},
		{"mem, no tags", []string{"mem", "used_percent"}, "mem.used_percent", nil},
		{"mem available", []string{"mem", "available"}, "mem.available", nil},
		{"disk root", []string{"disk", "used_percent", "sda1", "ext4", "rw", "/"}, "disk.used_percent.sda1.ext4.rw.-", []string{"disk", "used_percent", "sda1", "ext4", "rw", "-"}},
		{"disk boot", []string{"disk", "free", "mmcblk0p1", "vfat", "rw", "/boot/firmware"}, "disk.free.mmcblk0p1.vfat.rw.-boot-firmware",
			[]string{"disk", "free", "mmcblk0p1", "vfat", "rw", "-boot-firmware"}},
		{"node cpu", []string{"node_cpu_seconds_total", "0", "idle"}, "node_cpu_seconds_total.0.idle", nil},
		{"dots and colons", []string{"http:requests", "10.0.0.1"}, "http-requests.10-0-0-1", []string{"http-requests", "10-0-0-1"}},
		{"not ASCII", []string{"température", "salle"}, "temp-rature.salle", []string{"temp-rature", "salle"}},
		{"empty parts left out", []string{"up", "", "x"}, "up.x", []string{"up", "x"}},
		{"exactly 64", []string{strings.Repeat("a", 30), strings.Repeat("b", 33)}, strings.Repeat("a", 30) + "." + strings.Repeat("b", 33), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := FoldName(c.parts...)
			if err != nil || got != c.want {
				t.Fatalf("FoldName(%q) = %q, %v; want %q", c.parts, got, err, c.want)
			}
			if err := schema.ValidateName(got); err != nil {
				t.Errorf("FoldName(%q) = %q, not a valid name: %v", c.parts, got, err)
			}
			back := c.back
			if back == nil {
				back = c.parts
			}
			if got := UnfoldName(c.want); !slices.Equal(got, back) {
				t.Errorf("UnfoldName(%q) = %q; want %q", c.want, got, back)
			}
		})
	}
}

func TestFoldNameRefuses(t *testing.T) {
	t.Parallel()
	for name, parts := range map[string][]string{
		"nothing":  {"", ""},
		"too long": {"disk", "inodes_used_percent", "nvme0n1p1", "ext4", "rw", "/var/lib/docker/overlay2"},
	} {
		if got, err := FoldName(parts...); !errors.Is(err, schema.ErrInvalidName) {
			t.Errorf("%s: FoldName(%q) = %q, %v; want ErrInvalidName", name, parts, got, err)
		}
	}
}

func TestHostNames(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, host, instance string }{
		{"pi-kitchen", "pi-kitchen", "pi-kitchen"},
		{"localhost:9100", "localhost-9100", "localhost"},
		{"10.0.0.5:9100", "10.0.0.5-9100", "10.0.0.5"},
		{"[::1]:9100", "1-9100", "1"},
		{"web 01.example.org", "web-01.example.org", "web-01.example.org"},
		{"///", "unknown", "unknown"},
	}
	for _, c := range cases {
		if got := HostName(c.in); got != c.host {
			t.Errorf("HostName(%q) = %q; want %q", c.in, got, c.host)
		}
		if got := InstanceHost(c.in); got != c.instance {
			t.Errorf("InstanceHost(%q) = %q; want %q", c.in, got, c.instance)
		}
	}
}

func TestUnitOf(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"used_percent":                     "percent",
		"available_percent":                "percent",
		"available":                        "",
		"usage_idle":                       "",
		"node_memory_MemAvailable_bytes":   "B",
		"node_network_receive_bytes_total": "B",
		"node_cpu_seconds_total":           "s",
		"temp_celsius":                     "degC",
		"node_hwmon_temp_celsius":          "degC",
		"power_watts":                      "W",
		"total":                            "",
		"bytes":                            "",
	}
	for name, want := range cases {
		if got := UnitOf(name); got != want {
			t.Errorf("UnitOf(%q) = %q; want %q", name, got, want)
		}
	}
}

func TestQuantityAndFloat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		f    float64
		unit string
		want string
	}{
		{21.5, "", "21.5"},
		{21.5, "degC", `{"magnitude":21.5,"unit":"degC"}`},
		{1e21, "", "1e+21"},
		{1e-7, "", "1e-7"},
		{0, "B", `{"magnitude":0,"unit":"B"}`},
		{-3, "", "-3"},
	}
	for _, c := range cases {
		if got := string(Quantity(nil, AppendFloat(nil, c.f), c.unit)); got != c.want {
			t.Errorf("Quantity(%v, %q) = %s; want %s", c.f, c.unit, got, c.want)
		}
	}
}
