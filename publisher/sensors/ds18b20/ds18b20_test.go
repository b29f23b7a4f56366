package ds18b20

import (
	"context"
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func TestProbes(t *testing.T) {
	members, err := Probes(publisher.Env{Root: "testdata", Params: map[string]any{
		"names":  map[string]any{"28-0316a2791aff": "greenhouse", "28-0999absent00": "shed"},
		"titles": map[string]any{"28-0316a2791aff": "Greenhouse"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, title string
		value       float64
		err         string
		kind        schema.ErrorKind
	}{
		{"greenhouse", "Greenhouse", 21.437, "", ""},
		{"ds18b20_28-0416b3a2c4ff", "Temperature 28-0416b3a2c4ff", -3.125, "", ""},
		{"ds18b20_28-05crc0000bad", "Temperature 28-05crc0000bad", 0, "CRC check failed", schema.Intermittent},
		{"ds18b20_28-06reset00000", "Temperature 28-06reset00000", 0, "power-on reset", schema.Intermittent},
		{"shed", "Temperature 28-0999absent00", 0, "not present", schema.Persistent},
	}
	if len(members) != len(want) {
		t.Fatalf("%d members, want %d: %+v", len(members), len(want), members)
	}
	for i, w := range want {
		m := members[i]
		if m.Name != w.name || m.Sensor.Title() != w.title {
			t.Errorf("member %d = %s %q, want %s %q", i, m.Name, m.Sensor.Title(), w.name, w.title)
		}
		v, err := m.Sensor.Read(context.Background())
		if w.err != "" {
			if err == nil || !strings.Contains(err.Error(), w.err) || publisher.KindOf(err) != w.kind {
				t.Errorf("%s: err = %v, want %s %q", w.name, err, w.kind, w.err)
			}
			continue
		}
		if err != nil || v != (schema.Quantity{Magnitude: w.value, Unit: "degC"}) {
			t.Errorf("%s: got %v, %v; want %v", w.name, v, err, w.value)
		}
	}
}

// TestNoBus: a machine without probes shows the family as missing
// hardware, like any other sensor.
func TestNoBus(t *testing.T) {
	members, err := Probes(publisher.Env{Root: t.TempDir()})
	if err != nil || len(members) != 1 || members[0].Name != "ds18b20" {
		t.Fatalf("got %v, %v; want the family standing for its absence", members, err)
	}
	if _, err := members[0].Sensor.Read(context.Background()); publisher.KindOf(err) != schema.Persistent || !strings.Contains(err.Error(), "no DS18B20 probe") {
		t.Fatalf("no probes: err = %v", err)
	}
	if _, err := Probes(publisher.Env{Params: map[string]any{"names": "x"}}); err == nil {
		t.Fatal("names = \"x\" accepted")
	}
}
