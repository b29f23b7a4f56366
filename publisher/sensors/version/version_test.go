package version

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/publisher"
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
	return publisher.Named{Name: "version", Sensor: s, Policy: publisher.ReadPolicy{Timeout: 5 * time.Second, Attempts: 1}}.Read(context.Background(), time.Now()), nil
}

func TestVersion(t *testing.T) {
	s, err := read(t, nil)
	if err != nil || s.Err != nil {
		t.Fatalf("read: %v %v", err, s.Err)
	}
	if !strings.Contains(string(s.Value), `"apd":"0.9.1"`) || !strings.Contains(string(s.Value), `"go":"go1.`) {
		t.Errorf("value %s", s.Value)
	}
	if !strings.HasPrefix(s.Human, "apd 0.9.1 (go1.") {
		t.Errorf("human %q", s.Human)
	}
}
