package load_average

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
	return publisher.Named{Name: "load_average", Sensor: s, Policy: publisher.ReadPolicy{Timeout: 5 * time.Second, Attempts: 1}}.Read(context.Background(), time.Now()), nil
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
