package version

import (
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/publisher/sensortest"
)

// read builds the sensor from a config table and reads it once, as
// apd-publish does.
func read(t *testing.T, params map[string]any) (publisher.Sample, error) {
	return sensortest.Read(t, "version", New, publisher.Env{Version: "0.9.1"}, params)
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
