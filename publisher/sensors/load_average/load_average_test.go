package load_average

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
	return sensortest.Read(t, "load_average", New, publisher.Env{Version: "0.9.1"}, params)
}

func TestLoadAverage(t *testing.T) {
	s, err := read(t, nil)
	if err != nil || s.Err != nil {
		t.Fatalf("read: %v %v", err, s.Err)
	}
	f, ok := schema.Numeric(s.Value)
	if !ok || f < 0 || strings.Contains(string(s.Value), "unit") || s.Title != "Load Average (1 min)" {
		t.Errorf("value %s, title %q: want a plain number ≥ 0", s.Value, s.Title)
	}
	if _, err := read(t, map[string]any{"window": "5m"}); err == nil {
		t.Error("a parameter the sensor does not take was accepted")
	}
}
