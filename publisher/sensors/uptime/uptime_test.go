package uptime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

// read builds the sensor from a config table and reads it once through
// the read policy, as apd-publish does.
func read(t *testing.T, params map[string]any) (publisher.Sample, error) {
	t.Helper()
	env, check := publisher.Env{Version: "0.9.1"}.WithParams(params)
	s, err := New(env)
	if err == nil {
		err = check()
	}
	if err != nil {
		return publisher.Sample{}, err
	}
	return publisher.Named{Name: "uptime", Sensor: s, Policy: publisher.ReadPolicy{Timeout: 5 * time.Second, Attempts: 1}}.Read(context.Background(), time.Now()), nil
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
