package main_test

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// demoRun is an apd demo run for a test.
type demoRun struct {
	proc *testutil.Process
	tmp  string // its TMPDIR, where it makes its directory
	http string // http://host:port
	mqtt string // host:port
}

// startDemo runs apd demo on ports it picks, with TMPDIR a directory of
// the test's, and returns once its API is ready; the addresses come from
// the line apd serve logs.
func startDemo(t *testing.T, extra ...string) *demoRun {
	t.Helper()
	tmp := t.TempDir()
	args := append([]string{"demo", "--http-addr", anyPort, "--mqtt-addr", anyPort}, extra...)
	cmd := exec.Command(filepath.Join(binDir, "apd"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + tmp}
	// Writing the week of history takes a few seconds, more on a loaded
	// machine running the other tests.
	p, m := testutil.StartProcess(t, cmd, testutil.LogLine("apd serve running"), 60*time.Second)
	a := testutil.ParseLogLine(m[0])
	d := &demoRun{proc: p, tmp: tmp, http: a["http"], mqtt: a["mqtt"]}
	if err := testutil.Ready(strings.TrimPrefix(d.http, "http://"), 10*time.Second); err != nil {
		t.Fatalf("%v: %s", err, p.Log)
	}
	return d
}

// query runs apd query against the demo with --format ndjson.
func (d *demoRun) query(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	r := run(t, nil, "apd", append([]string{"query", "--server", d.http, "--format", "ndjson"}, args...)...)
	if r.code != 0 {
		t.Fatalf("apd query %v: exit %d: %s", args, r.code, r.stderr)
	}
	return ndjsonLines(t, r.stdout)
}

// TestDemo runs apd demo as a newcomer would and checks what it promises:
// named, coloured, located hosts; a week of history; the offline host;
// the failing sensor; the rule's outcomes; live readings; and a clean
// stop that removes its directory.
func TestDemo(t *testing.T) {
	t.Parallel()
	started := time.Now()
	d := startDemo(t)
	if out := d.proc.Log.String(); !strings.Contains(out, "Dashboard:  "+d.http+"/") {
		t.Errorf("no dashboard address in the output:\n%s", out)
	}

	r := run(t, nil, "apd", "hosts", "--server", d.http, "--json")
	if r.code != 0 {
		t.Fatalf("apd hosts: exit %d: %s", r.code, r.stderr)
	}
	var hosts []struct {
		Host, State, Name, Colour string
		Location                  *struct{ Lat, Lon float64 }
		LastSeen                  time.Time `json:"last_seen"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &hosts); err != nil {
		t.Fatalf("apd hosts --json: %v\n%s", err, r.stdout)
	}
	if len(hosts) != 12 {
		t.Errorf("%d hosts, want 12", len(hosts))
	}
	states := map[string]string{}
	for _, h := range hosts {
		states[h.Host] = h.State
		if h.Name == "" || !strings.HasPrefix(h.Colour, "#") || h.Location == nil ||
			h.Location.Lat < 52.3 || h.Location.Lat > 52.45 || h.Location.Lon < 4.8 || h.Location.Lon > 5 {
			t.Errorf("host %s: name %q, colour %q, location %v: want all three, in one city", h.Host, h.Name, h.Colour, h.Location)
		}
		if h.Host == "studio" && time.Since(h.LastSeen) < 4*time.Hour {
			t.Errorf("the offline studio was last seen %s", h.LastSeen)
		}
	}
	if states["studio"] != "lost" {
		t.Errorf("studio's state %q, want lost: %v", states["studio"], states)
	}
	// The devices go online as they connect, just after the line.
	testutil.WaitFor(t, "the live hosts online", 10*time.Second, func() bool {
		out := run(t, nil, "apd", "hosts", "--server", d.http).stdout
		return strings.Count(out, " online ") == 11
	})

	// A week of history, a reading a minute (the count is of values).
	counts := d.query(t, "--sensor", "temperature", "--since", "7d", "--agg", "count")
	if len(counts) != 9 {
		t.Errorf("temperature counts of %d hosts, want 9: %v", len(counts), counts)
	}
	for _, c := range counts {
		n, _ := c["value"].(float64)
		want := 7*24*60 - 2.0
		switch c["host"] {
		case "studio":
			want -= 5 * 60
		case "shed": // its error readings have no value to count
			want /= 2
		}
		if n < want {
			t.Errorf("%v readings of %v in 7 days, want at least %v", n, c["host"], want)
		}
	}

	// The shed's DHT22 fails now and then: intermittent error readings.
	errs, ok := 0, 0
	for _, r := range d.query(t, "--sensor", "temperature", "--host", "shed", "--since", "24h") {
		if e, isErr := r["error"].(map[string]any); isErr {
			errs++
			if e["kind"] != "intermittent" {
				t.Errorf("shed's error reading %v", r)
			}
		} else {
			ok++
		}
	}
	if errs == 0 || errs > ok {
		t.Errorf("shed's temperature over a day: %d errors, %d readings: want some errors", errs, ok)
	}

	// The rule fired in the history, and cleared.
	outcomes := map[any]int{}
	for _, r := range d.query(t, "--sensor", "greenhouse-cold", "--since", "7d") {
		outcomes[r["value"]]++
		if r["host"] != "greenhouse" {
			t.Errorf("outcome of another host: %v", r)
		}
	}
	if outcomes[true] == 0 || outcomes[false] == 0 {
		t.Errorf("greenhouse-cold outcomes %v: want it to fire and clear", outcomes)
	}

	// Live readings arrive from the devices over MQTT: with seqs, stamped
	// after the start.
	testutil.WaitFor(t, "a live reading", 25*time.Second, func() bool {
		for _, r := range d.query(t, "--sensor", "cpu_load", "--host", "web-1", "--since", "1m") {
			ts, _ := time.Parse(time.RFC3339, r["ts"].(string))
			if seq, _ := r["seq"].(float64); seq > 0 && ts.After(started) {
				return true
			}
		}
		return false
	})

	if err := d.proc.Stop(15 * time.Second); err != nil {
		t.Fatalf("apd demo: %v\n%s", err, d.proc.Log)
	}
	if left, _ := os.ReadDir(d.tmp); len(left) != 0 {
		t.Errorf("apd demo left %v in its temporary directory", left)
	}
}

// TestDemoForKeepAndBusyAddress: --for stops it by itself, --keep leaves
// its directory, a non-empty --dir and a busy address are one clear line.
func TestDemoForKeepAndBusyAddress(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "demo")
	r := run(t, nil, "apd", "demo", "--for", "1s", "--history", "2h", "--keep", "--dir", dir,
		"--http-addr", anyPort, "--mqtt-addr", anyPort)
	if r.code != 0 {
		t.Fatalf("apd demo --for 1s: exit %d: %s", r.code, r.stderr)
	}
	for _, f := range []string{"apd.db", "apd.toml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("--keep: %v", err)
		}
	}
	// The kept data is a store like any other.
	q := run(t, nil, "apd", "query", "--db", filepath.Join(dir, "apd.db"), "--sensor", "temperature", "--host", "kitchen", "--agg", "count")
	if q.code != 0 || !strings.Contains(q.stdout, "kitchen") {
		t.Errorf("query the kept demo: exit %d: %s%s", q.code, q.stdout, q.stderr)
	}

	again := run(t, nil, "apd", "demo", "--dir", dir, "--http-addr", anyPort, "--mqtt-addr", anyPort)
	if again.code != 18 || !strings.Contains(again.stderr, "not empty") {
		t.Errorf("demo on a used --dir: exit %d, %q", again.code, again.stderr)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := run(t, nil, "apd", "demo", "--mqtt-addr", ln.Addr().String(), "--http-addr", anyPort)
	if busy.code != 1 || !strings.Contains(busy.stderr, "--mqtt-addr") || strings.Count(strings.TrimSpace(busy.stderr), "\n") > 1 {
		t.Errorf("demo on a busy MQTT address: exit %d, %q", busy.code, busy.stderr)
	}
}
