package uptime

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
	return sensortest.Read(t, "uptime", New, publisher.Env{Version: "0.9.1"}, params)
}

func TestUptime(t *testing.T) {
	s, err := read(t, nil)
	if err != nil || s.Err != nil {
		t.Fatalf("read: %v %v", err, s.Err)
	}
	q, ok := schema.ParseQuantity(s.Value)
	if !ok || q.Unit != schema.UnitSecond || q.Magnitude <= 0 {
		t.Fatalf("value %s: want seconds since boot", s.Value)
	}
	if !strings.HasSuffix(s.Human, "s") || schema.Format("uptime", s.Value) != s.Human {
		t.Errorf("human %q", s.Human)
	}
}
