package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// webhookLog records the bodies POSTed to it.
type webhookLog struct {
	mu     sync.Mutex
	bodies []map[string]any
	hang   bool
}

func (h *webhookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	h.mu.Lock()
	h.bodies = append(h.bodies, m)
	h.mu.Unlock()
	if h.hang {
		<-r.Context().Done()
	}
}

func (h *webhookLog) list() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.bodies...)
}

// acceptanceReadings are 19, 18, 21, 22, 21 °C, one per hour from 12:00
// yesterday, as v1 payloads.
func acceptanceReadings(host string) (noon time.Time, payloads []string) {
	noon = time.Now().UTC().Truncate(24 * time.Hour).Add(-12 * time.Hour)
	for i, v := range []float64{19, 18, 21, 22, 21} {
		r := schema.Reading{Host: host, Sensor: "temperature", Time: noon.Add(time.Duration(i) * time.Hour), Seq: uint64(i + 1),
			Value: schema.Quantity{Magnitude: v, Unit: "degC"}.Raw()}
		payloads = append(payloads, string(r.AppendJSON(nil, schema.WithIdentity)))
	}
	return noon, payloads
}

func TestRulesAcceptance(t *testing.T) {
	hook := &webhookLog{}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	stuck := &webhookLog{hang: true}
	stuckSrv := httptest.NewServer(stuck)
	defer stuckSrv.Close()
	defer stuckSrv.CloseClientConnections()
	cfg := writeConfig(t, fmt.Sprintf(`
[[rules]]
name = "warm"
sensor = "temperature"
hosts = ["pi-kitchen"]
when = "value > 20"
on_change = true
actions = ["publish", "webhook"]
webhook = %q

[[rules]]
name = "stuck"
sensor = "temperature"
when = "value > 0"
actions = ["webhook"]
webhook = %q
webhook_timeout = "1h"
`, hookSrv.URL, stuckSrv.URL))
	noon, payloads := acceptanceReadings("pi-kitchen")

	// apd rules test on stored history: two outcomes, no webhook called.
	db := filepath.Join(t.TempDir(), "apd.db")
	in := filepath.Join(t.TempDir(), "in.ndjson")
	if err := os.WriteFile(in, []byte(strings.Join(payloads, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, nil, "apd", "import", "--db", db, in); r.code != 0 {
		t.Fatalf("import: %d %s", r.code, r.stderr)
	}
	r := run(t, nil, "apd", "rules", "test", "--config", cfg, "--db", db, "--since", noon.Add(-time.Hour).Format(time.RFC3339),
		"--rule", "warm", "--format", "ndjson")
	want := fmt.Sprintf(`{"v":1,"host":"pi-kitchen","sensor":"warm","ts":"%s","value":false,"human":"false"}
{"v":1,"host":"pi-kitchen","sensor":"warm","ts":"%s","value":true,"human":"true"}
`, schema.FormatTime(noon), schema.FormatTime(noon.Add(2*time.Hour)))
	if r.code != 0 || r.stdout != want {
		t.Fatalf("rules test: exit %d\n%s\nwant\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
	table := run(t, nil, "apd", "rules", "test", "--config", cfg, "--db", db, "--since", "2d", "--rule", "warm")
	if !strings.Contains(table.stdout, "warm  pi-kitchen  "+schema.FormatTime(noon.Add(2*time.Hour))+"  true     21.0 °C (69.8 °F)") {
		t.Errorf("rules test table:\n%s", table.stdout)
	}
	if len(hook.list()) != 0 || len(stuck.list()) != 0 {
		t.Fatalf("apd rules test called a webhook")
	}

	// The same readings live through apd serve.
	s := startServe(t, "--config", cfg)
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("needs mosquitto_pub")
	}
	host, port, _ := net.SplitHostPort(s.mqtt)
	start := time.Now()
	for _, p := range payloads {
		if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "apd/pi-kitchen/temperature", "-m", p).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	var stored []map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "warm", "--since", "2d", "--format", "ndjson")
		if stored = ndjsonLines(t, q.stdout); len(stored) >= 2 && len(hook.list()) >= 2 {
			break
		}
	}
	if len(stored) != 2 || stored[0]["value"] != false || stored[0]["ts"] != schema.FormatTime(noon) ||
		stored[1]["value"] != true || stored[1]["ts"] != schema.FormatTime(noon.Add(2*time.Hour)) || stored[1]["host"] != "pi-kitchen" {
		t.Fatalf("stored outcomes: %v\n%s", stored, s.log)
	}
	bodies := hook.list()
	if len(bodies) != 2 {
		t.Fatalf("webhook called %d times, want 2: %v", len(bodies), bodies)
	}
	for i, b := range bodies {
		if b["rule"] != "warm" || b["host"] != "pi-kitchen" || b["value"] != (i == 1) {
			t.Errorf("webhook body %d: %v", i, b)
		}
	}
	// The hanging webhook of the other rule held up neither ingestion nor
	// this rule: everything above happened while it hung.
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("took %s with a hanging webhook", took)
	}
	q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "temperature", "--since", "2d", "--format", "ndjson")
	if n := len(ndjsonLines(t, q.stdout)); n != 5 {
		t.Errorf("%d temperature readings stored, want 5", n)
	}

	st := run(t, nil, "apd", "rules", "status", "--server", "http://"+s.http)
	lines := strings.Split(strings.TrimSpace(st.stdout), "\n")
	if st.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "RULE") ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "warm 5 2 2 0 0 0 0") ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[2]), " "), "stuck 5 0 0 0 0 4 0") {
		t.Errorf("rules status: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	_ = s.cmd.Process.Signal(syscall.SIGUSR1)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(s.log.String(), "msg=rule name=warm in=5"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no rule counters in the log after SIGUSR1:\n%s", s.log)
		}
	}
}

func TestRulesConfigErrors(t *testing.T) {
	bad := writeConfig(t, `
[[rules]]
name = "ok"
sensor = "temperature"
when = "value > 20"

[[rules]]
name = "broken"
sensor = "temperature"
when = "value >> 20"
`)
	srv := exec.Command(filepath.Join(binDir, "apd"), "serve", "--config", bad, "--data", t.TempDir(), "--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	out, err := srv.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 18 || !strings.Contains(string(out), `rules[1] "broken": when "value >> 20": at 8`) {
		t.Errorf("serve with a bad rule: %v\n%s", err, out)
	}
	if r := run(t, nil, "apd", "rules", "check", bad); r.code != 18 || !strings.Contains(r.stderr, `rules[1] "broken"`) {
		t.Errorf("rules check: exit %d: %s", r.code, r.stderr)
	}
	good := writeConfig(t, "[[rules]]\nname = \"cold\"\nsensor = \"temperature\"\nwhen = \"value < 5\"\nfor = \"10m\"\n")
	if r := run(t, nil, "apd", "rules", "check", good); r.code != 0 || !strings.Contains(r.stdout, "cold  temperature  value < 5  10m0s") {
		t.Errorf("rules check: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
}

// TestDerivedRule: a rule with expr publishes the difference of two hosts'
// temperatures as a reading of its own, stored like any other.
func TestDerivedRule(t *testing.T) {
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("needs mosquitto_pub")
	}
	cfg := writeConfig(t, `
[[rules]]
name = "indoor_outdoor"
expr = "kitchen - shed"
inputs = { kitchen = "pi-kitchen/temperature", shed = "shed/temperature" }
host = "pi-kitchen"
actions = ["publish"]
`)
	if r := run(t, nil, "apd", "rules", "check", cfg); r.code != 0 || !strings.Contains(r.stdout, "= kitchen - shed (on pi-kitchen)") {
		t.Fatalf("rules check: %d %s %s", r.code, r.stdout, r.stderr)
	}
	s := startServe(t, "--config", cfg)
	host, port, _ := net.SplitHostPort(s.mqtt)
	at := time.Now().UTC().Truncate(10 * time.Second).Add(-time.Minute)
	for i, v := range [][2]float64{{21, 5}, {21.5, 6.25}} {
		ts := schema.FormatTime(at.Add(time.Duration(i) * 10 * time.Second))
		for _, hv := range []struct {
			host string
			v    float64
		}{{"pi-kitchen", v[0]}, {"shed", v[1]}} {
			payload := fmt.Sprintf(`{"v":1,"host":%q,"sensor":"temperature","ts":%q,"value":%v}`, hv.host, ts, hv.v)
			if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "apd/"+hv.host+"/temperature", "-m", payload).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v %s", err, out)
			}
		}
	}
	var rows []map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(rows) < 2; time.Sleep(100 * time.Millisecond) {
		q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "indoor_outdoor", "--since", "1h", "--format", "ndjson")
		rows = ndjsonLines(t, q.stdout)
	}
	if len(rows) != 2 || rows[0]["value"] != float64(16) || rows[1]["value"] != 15.25 || rows[1]["host"] != "pi-kitchen" ||
		rows[1]["ts"] != schema.FormatTime(at.Add(10*time.Second)) {
		t.Fatalf("derived readings: %v\n%s", rows, s.log)
	}
}
