package main_test

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestEnvelopeWithoutVersion: what a plain MQTT client sends, through
// the broker: apd's envelope missing its "v" is a dead letter whose
// reason names "v"; Tasmota's object and a bare number are values.
func TestEnvelopeWithoutVersion(t *testing.T) {
	t.Parallel()
	pub, _ := mosquitto(t)
	s := startServe(t)
	server := "http://" + s.http
	host, port, _ := net.SplitHostPort(s.mqtt)
	for topic, payload := range map[string]string{
		"apd/shed/temperature": `{"value":21.3,"unit":"degC"}`,
		"apd/tasmota/SENSOR":   `{"Temperature":21.3}`,
		"apd/shed/humidity":    `55.5`,
	} {
		if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", topic, "-m", payload).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub %s: %v: %s", topic, err, out)
		}
	}
	testutil.WaitFor(t, "the envelope dead-lettered naming \"v\"", 5*time.Second, func() bool {
		dl := run(t, nil, "apd", "deadletters", "--server", server)
		return dl.code == 0 && strings.Contains(dl.stdout, `an object with "value" but no "v" (want "v":1)`)
	})
	q := run(t, nil, "apd", "query", "--server", server, "--sensor", "SENSOR", "--since", "5m", "--format", "ndjson")
	if rows := ndjsonLines(t, q.stdout); len(rows) != 1 || rows[0]["host"] != "tasmota" ||
		rows[0]["value"].(map[string]any)["Temperature"] != 21.3 {
		t.Errorf("Tasmota's object: %v %s", rows, q.stderr)
	}
	q = run(t, nil, "apd", "query", "--server", server, "--sensor", "humidity", "--since", "5m", "--format", "ndjson")
	if rows := ndjsonLines(t, q.stdout); len(rows) != 1 || rows[0]["value"] != 55.5 {
		t.Errorf("bare number: %v %s", rows, q.stderr)
	}
	q = run(t, nil, "apd", "query", "--server", server, "--sensor", "temperature", "--since", "5m", "--format", "ndjson")
	if rows := ndjsonLines(t, q.stdout); len(rows) != 0 {
		t.Errorf("the envelope was stored: %v", rows)
	}
}
