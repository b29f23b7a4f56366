package ac_connected

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

// tree writes a fake power_supply directory: supply name → attribute → value.
func tree(t *testing.T, supplies map[string]map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, attrs := range supplies {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for k, v := range attrs {
			if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestRead(t *testing.T) {
	tests := []struct {
		name     string
		supplies map[string]map[string]string
		want     any
		kind     schema.ErrorKind
	}{
		{"laptop on mains", map[string]map[string]string{
			"AC": {"type": "Mains", "online": "1"}, "BAT0": {"type": "Battery", "status": "Charging"}}, true, ""},
		{"laptop unplugged", map[string]map[string]string{
			"AC": {"type": "Mains", "online": "0"}, "BAT0": {"type": "Battery", "status": "Discharging"}}, false, ""},
		{"battery only, charging", map[string]map[string]string{
			"BAT0": {"type": "Battery", "status": "Charging"}}, true, ""},
		{"battery only, discharging", map[string]map[string]string{
			"BAT0": {"type": "Battery", "status": "Discharging"}}, false, ""},
		{"no battery", map[string]map[string]string{
			"AC": {"type": "Mains", "online": "1"}}, nil, schema.Persistent},
		{"no supplies at all", nil, nil, schema.Persistent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Sensor{Dir: tree(t, tc.supplies)}.Read(context.Background())
			if tc.kind != "" {
				if err == nil || publisher.KindOf(err) != tc.kind {
					t.Fatalf("err = %v, want a %s error", err, tc.kind)
				}
				return
			}
			if err != nil || v != tc.want {
				t.Fatalf("got %v, %v; want %v", v, err, tc.want)
			}
		})
	}
}

func TestMissingDirectory(t *testing.T) {
	_, err := Sensor{Dir: filepath.Join(t.TempDir(), "nope")}.Read(context.Background())
	if publisher.KindOf(err) != schema.Persistent {
		t.Fatalf("err = %v", err)
	}
}

func TestFixtureTrees(t *testing.T) {
	for tree, want := range map[string]any{"laptop-on-mains": true, "laptop-on-battery": false, "ups-hat": true, "desktop": nil} {
		s, _ := New(publisher.Env{Root: "../testdata/power_supply/" + tree})
		v, err := s.Read(context.Background())
		if want == nil {
			if publisher.KindOf(err) != schema.Persistent {
				t.Errorf("%s: got %v, %v; want a persistent error", tree, v, err)
			}
			continue
		}
		if err != nil || v != want {
			t.Errorf("%s: got %v, %v; want %v", tree, v, err, want)
		}
	}
}
