package ram_available

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
	return sensortest.Read(t, "ram_available", New, publisher.Env{Version: "0.9.1"}, params)
}

func TestRAMAvailable(t *testing.T) {
	s, err := read(t, nil)
	if err != nil || s.Err != nil {
		t.Fatalf("read: %v %v", err, s.Err)
	}
	q, ok := schema.ParseQuantity(s.Value)
	if !ok || q.Unit != schema.UnitBytes || q.Magnitude <= 0 || q.Magnitude != float64(int64(q.Magnitude)) {
		t.Fatalf("value %s: want a whole, positive byte count", s.Value)
	}
	if !strings.HasSuffix(s.Human, "iB") {
		t.Errorf("human %q: want a binary scale (MiB, GiB)", s.Human)
	}
}
