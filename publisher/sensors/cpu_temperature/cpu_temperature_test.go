package cpu_temperature

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func zones(t *testing.T, z map[string][2]string) string {
	t.Helper()
	root := t.TempDir()
	for name, tv := range z {
		dir := filepath.Join(root, name)
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, "type"), []byte(tv[0]+"\n"), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "temp"), []byte(tv[1]+"\n"), 0o644)
	}
	return root
}

func TestRead(t *testing.T) {
	tests := []struct {
		name  string
		zones map[string][2]string
		zone  string
		want  float64
		kind  schema.ErrorKind
	}{
		{"single zone", map[string][2]string{"thermal_zone0": {"cpu-thermal", "48300"}}, "", 48.3, ""},
		{"prefers package", map[string][2]string{"thermal_zone0": {"acpitz", "30000"}, "thermal_zone1": {"x86_pkg_temp", "55000"}}, "", 55, ""},
		{"configured zone", map[string][2]string{"thermal_zone0": {"acpitz", "30000"}, "thermal_zone1": {"x86_pkg_temp", "55000"}}, "thermal_zone0", 30, ""},
		{"unknown types: first", map[string][2]string{"thermal_zone1": {"b", "2000"}, "thermal_zone0": {"a", "1000"}}, "", 1, ""},
		{"garbage", map[string][2]string{"thermal_zone0": {"cpu-thermal", "hot"}}, "", 0, schema.Intermittent},
		{"no zones", nil, "", 0, schema.Persistent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := Sensor{Dir: zones(t, tc.zones), Zone: tc.zone}.Read(context.Background())
			if tc.kind != "" {
				if err == nil || publisher.KindOf(err) != tc.kind {
					t.Fatalf("err = %v, want %s", err, tc.kind)
				}
				return
			}
			if err != nil || v.(schema.Quantity) != (schema.Quantity{Magnitude: tc.want, Unit: "degC"}) {
				t.Fatalf("got %v, %v; want %v", v, err, tc.want)
			}
		})
	}
}
