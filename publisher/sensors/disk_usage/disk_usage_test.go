package disk_usage

import (
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/publisher/sensortest"
	"github.com/apd-telemetry/apd/schema"
)

// read builds the sensor from a config table and reads it once, as
// apd-publish does.
func read(t *testing.T, params map[string]any) (publisher.Sample, error) {
	return sensortest.Read(t, "disk_usage", New, publisher.Env{Version: "0.9.1"}, params)
}

func TestDiskUsage(t *testing.T) {
	s, err := read(t, map[string]any{"path": t.TempDir()})
	if err != nil || s.Err != nil {
		t.Fatalf("read: %v %v", err, s.Err)
	}
	q, ok := schema.ParseQuantity(s.Value)
	if !ok || q.Unit != schema.UnitRatio || q.Magnitude < 0 || q.Magnitude > 1 || !strings.HasSuffix(s.Human, "%") {
		t.Errorf("value %s, human %q: want a ratio in [0, 1] shown as a percentage", s.Value, s.Human)
	}
	missing, _ := read(t, map[string]any{"path": "/no/such/disk"})
	if missing.Err == nil || publisher.KindOf(missing.Err) != schema.Persistent {
		t.Errorf("missing path: %v, want a persistent error", missing.Err)
	}
	if _, err := read(t, map[string]any{"pth": "/"}); err == nil || !strings.Contains(err.Error(), "unknown key pth") {
		t.Errorf("misspelt parameter: %v", err)
	}
}
