package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// These tests build the real binaries and run them as a user would: a
// server on loopback ports it picks, publishers, queries, exit codes.
// Each test has its own server and files: most run in parallel.

var binDir string

func TestMain(m *testing.M) { os.Exit(testutil.RunWithBinaries(m, &binDir)) }

type result struct {
	stdout, stderr string
	code           int
}

// run runs a built binary with env added to a clean environment.
func run(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	return result{out.String(), errb.String(), code}
}

// server is an apd serve run for a test.
type server struct {
	proc       *testutil.Process
	cmd        *exec.Cmd // proc.Cmd, to send signals to (proc waits for it)
	data       string
	mqtt, http string // host:port
	tls, ws    string // host:port of the TLS and WebSocket listeners, when asked for
	log        *testutil.SyncBuffer
}

// anyPort asks for a loopback port the kernel picks: apd says which in
// the line it logs once running.
const anyPort = "127.0.0.1:0"

// startServe runs apd serve on a new data directory and ports it picks
// until the test ends, once it is ready.
func startServe(t *testing.T, extra ...string) *server {
	t.Helper()
	return startServeOn(t, t.TempDir(), anyPort, anyPort, extra...)
}

// startServeIn is startServe on data: an earlier run's, to restart it.
func startServeIn(t *testing.T, data string, extra ...string) *server {
	t.Helper()
	return startServeOn(t, data, anyPort, anyPort, extra...)
}

// startServeOn runs apd serve on a data directory and addresses (anyPort
// for one it picks) until the test ends, once it is ready. The addresses
// it listens on, TLS and WebSocket too, are read from its log.
func startServeOn(t *testing.T, data, mqttAddr, httpAddr string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--mqtt-addr", mqttAddr, "--http-addr", httpAddr}, extra...)
	cmd := exec.Command(filepath.Join(binDir, "apd"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	p, m := testutil.StartProcess(t, cmd, testutil.LogLine("apd serve running"), 20*time.Second)
	a := testutil.ParseLogLine(m[0])
	s := &server{proc: p, cmd: cmd, data: data, log: p.Log,
		mqtt: a["mqtt"], http: strings.TrimPrefix(a["http"], "http://"), tls: a["tls"], ws: a["ws"]}
	t.Cleanup(func() { s.stop(t) })
	if err := testutil.Ready(s.http, 10*time.Second); err != nil {
		t.Fatalf("%v: %s", err, s.log)
	}
	return s
}

// stop ends apd serve with SIGTERM; it must exit cleanly (also if it
// had already).
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.proc.Stop(10 * time.Second); err != nil {
		t.Errorf("apd serve: %v\n%s", err, s.log)
	}
}

// mosquittoSub runs mosquitto_sub with args and returns it once it has
// subscribed (its debug output says SUBACK; line-buffered by stdbuf, as
// mosquitto_sub buffers what it writes to a pipe).
func mosquittoSub(t *testing.T, args ...string) *testutil.Process {
	t.Helper()
	_, sub := mosquitto(t)
	stdbuf, err := exec.LookPath("stdbuf")
	if err != nil {
		t.Fatal("stdbuf (coreutils) not found")
	}
	p, _ := testutil.StartProcess(t, exec.Command(stdbuf, append([]string{"-oL", sub, "-d"}, args...)...),
		regexp.MustCompile(`received SUBACK$`), 10*time.Second)
	return p
}

// messages waits for mosquitto_sub p to exit and returns what it printed
// beside its debug lines (the messages it got), and how it exited.
func messages(p *testutil.Process) (string, error) {
	err := p.Wait()
	var out []string
	for _, line := range strings.Split(p.Log.String(), "\n") {
		if line != "" && !strings.HasPrefix(line, "Client ") && !strings.HasPrefix(line, "Subscribed (mid") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n"), err
}

func ndjsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad ndjson line %q: %v", sc.Text(), err)
		}
		rows = append(rows, m)
	}
	return rows
}

func TestServePublishQuery(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	broker := "tcp://" + s.mqtt
	server := "http://" + s.http

	// A live subscriber sees the v1 JSON as it is published.
	host, port, _ := net.SplitHostPort(s.mqtt)
	live := mosquittoSub(t, "-h", host, "-p", port, "-t", "apd/X/cpu_load", "-C", "1", "-W", "10")

	spool := filepath.Join(t.TempDir(), "spool.db")
	r := run(t, nil, "apd-publish", "--broker", broker, "--host", "X", "--once", "--spool", spool)
	if r.code != 0 {
		t.Fatalf("apd-publish --once: exit %d: %s", r.code, r.stderr)
	}
	q := run(t, nil, "apd", "query", "--server", server, "--sensor", "cpu_load", "--host", "X", "--since", "5m", "--format", "ndjson")
	if q.code != 0 {
		t.Fatalf("query: exit %d: %s", q.code, q.stderr)
	}
	rows := ndjsonLines(t, q.stdout)
	if len(rows) != 1 {
		t.Fatalf("query returned %d readings: %s", len(rows), q.stdout)
	}
	for _, k := range []string{"host", "sensor", "ts", "seq", "value"} {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("reading lacks %q: %v", k, rows[0])
		}
	}
	if rows[0]["host"] != "X" || rows[0]["sensor"] != "cpu_load" {
		t.Errorf("reading = %v", rows[0])
	}

	liveOut, err := messages(live)
	if err != nil {
		t.Fatalf("mosquitto_sub: %v: %s", err, liveOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(liveOut), &m); err != nil || m["v"] != float64(1) || m["sensor"] != "cpu_load" {
		t.Errorf("live message %q: %v", liveOut, err)
	}

	// Table output has the host column and the human format.
	tbl := run(t, nil, "apd", "query", "--server", server, "--sensor", "cpu_load", "--since", "5m")
	if !strings.Contains(tbl.stdout, "HOST") || !strings.Contains(tbl.stdout, "X ") || !strings.Contains(tbl.stdout, "%") {
		t.Errorf("table output:\n%s", tbl.stdout)
	}
	hosts := run(t, nil, "apd", "hosts", "--server", server)
	if !strings.Contains(hosts.stdout, "X") || !strings.Contains(hosts.stdout, "offline") {
		t.Errorf("hosts after --once:\n%s%s", hosts.stdout, hosts.stderr)
	}

	// While serve runs, the file is locked: a clear message, not a hang.
	locked := run(t, nil, "apd", "query", "--db", filepath.Join(s.data, "apd.db"), "--sensor", "cpu_load")
	if locked.code == 0 || !strings.Contains(locked.stderr, "--server") {
		t.Errorf("query --db on a running server: exit %d, %s", locked.code, locked.stderr)
	}

	s.stop(t)
	after := run(t, nil, "apd", "query", "--db", filepath.Join(s.data, "apd.db"), "--sensor", "cpu_load", "--host", "X", "--since", "5m", "--format", "ndjson")
	if after.code != 0 || after.stdout != q.stdout {
		t.Errorf("query --db after stop differs:\n%s\nvs\n%s\n%s", after.stdout, q.stdout, after.stderr)
	}
}

// startWatch runs apd watch on s's broker for host until the test ends,
// and returns its output once it watches.
func startWatch(t *testing.T, s *server, host string) *testutil.SyncBuffer {
	t.Helper()
	out := &testutil.SyncBuffer{}
	watch := exec.Command(filepath.Join(binDir, "apd"), "watch", "--broker", "tcp://"+s.mqtt, "--host", host)
	watch.Stdout, watch.Stderr = out, out
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watch.Process.Kill(); _ = watch.Wait() })
	testutil.WaitFor(t, "apd watch to start", 10*time.Second, func() bool { return strings.Contains(out.String(), "watching") })
	return out
}

// TestThirdPartyBareValue: mosquitto_pub -t apd/shed/temperature -m 21.5
// just works: stored with the receive time, queryable.
func TestThirdPartyBareValue(t *testing.T) {
	t.Parallel()
	pub, _ := mosquitto(t)
	s := startServe(t)
	server := "http://" + s.http
	host, port, _ := net.SplitHostPort(s.mqtt)
	if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "apd/shed/temperature", "-m", "21.5").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	var q result
	testutil.WaitFor(t, "the bare reading queryable", 5*time.Second, func() bool {
		q = run(t, nil, "apd", "query", "--server", server, "--sensor", "temperature", "--host", "shed", "--since", "5m")
		return strings.Contains(q.stdout, "21.5") && strings.Contains(q.stdout, "shed")
	})
}

// TestBadInputCountedAndDeadLettered: bad input is rejected, counted on
// /metrics, kept as a dead letter with its reason, and stops nothing.
func TestBadInputCountedAndDeadLettered(t *testing.T) {
	t.Parallel()
	pub, _ := mosquitto(t)
	s := startServe(t)
	server := "http://" + s.http
	host, port, _ := net.SplitHostPort(s.mqtt)
	if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "apd/shed/temperature", "-m", "{not json").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	testutil.WaitFor(t, "the rejection counted on /metrics", 5*time.Second, func() bool {
		return strings.Contains(httpGet(t, server+"/metrics"), `apd_rejected_total{reason="invalid_json"} 1`)
	})
	// The counter moves on receipt, the dead letter lands with the commit.
	testutil.WaitFor(t, "the dead letter", 5*time.Second, func() bool {
		dl := run(t, nil, "apd", "deadletters", "--server", server)
		return dl.code == 0 && strings.Contains(dl.stdout, "invalid_json") && strings.Contains(dl.stdout, "{not json")
	})
}

func TestWatch(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	out := startWatch(t, s, "W")
	r := run(t, nil, "apd-publish", "--broker", "tcp://"+s.mqtt, "--host", "W", "--once", "--sensors", "ram_available", "--spool", filepath.Join(t.TempDir(), "s.db"))
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	testutil.WaitFor(t, "a formatted reading from apd watch", 10*time.Second, func() bool {
		return strings.Contains(out.String(), "ram_available") && strings.Contains(out.String(), "iB")
	})
}

func TestServeWithPublisherStoresLocalReadings(t *testing.T) {
	t.Parallel()
	s := startServe(t, "--with-publisher", "--interval", "1s", "--host", "me")
	testutil.WaitFor(t, "local readings", 15*time.Second, func() bool {
		q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "ram_available", "--since", "1m", "--format", "ndjson")
		return len(ndjsonLines(t, q.stdout)) > 0
	})
	s.stop(t)
	hosts := run(t, nil, "apd", "hosts", "--db", filepath.Join(s.data, "apd.db"))
	if !strings.Contains(hosts.stdout, "offline") {
		t.Errorf("after a clean stop the host is not offline:\n%s", hosts.stdout)
	}
}

// TestPublisherSpoolsWhileBrokerDown starts apd-publish before any broker
// exists: its readings wait in the spool and all arrive, with their own
// timestamps and contiguous seqs, once apd serve comes up.
func TestPublisherSpoolsWhileBrokerDown(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs processes for several seconds")
	}
	// The publisher is started first, so the broker's port is chosen for
	// it.
	mqttAddr := testutil.FreeAddr(t)
	pub, _ := testutil.StartProcess(t, exec.Command(filepath.Join(binDir, "apd-publish"), "--broker", "tcp://"+mqttAddr, "--host", "early",
		"--interval", "250ms", "--sensors", "uptime", "--spool", filepath.Join(t.TempDir(), "spool.db")),
		testutil.LogLine("publishing failed; readings stay in the spool"), 10*time.Second)
	defer func() { _ = pub.Stop(10 * time.Second) }()
	// Letting time pass is what is tested: readings taken while no broker
	// exists (about five) wait in the spool.
	time.Sleep(1250 * time.Millisecond)
	serverStart := time.Now()
	s := startServeOn(t, t.TempDir(), mqttAddr, anyPort)
	// The spool's readings and new ones arrive together: a seq may be
	// stored before the one below it.
	var rows []map[string]any
	early, contiguous := 0, false
	if !testutil.Eventually(15*time.Second, func() bool {
		q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "uptime", "--host", "early", "--format", "ndjson")
		rows, early, contiguous = ndjsonLines(t, q.stdout), 0, true
		for i, r := range rows {
			contiguous = contiguous && r["seq"] == float64(i+1)
			ts, _ := time.Parse(time.RFC3339, r["ts"].(string))
			if ts.Before(serverStart) {
				early++
			}
		}
		return contiguous && early >= 3 && len(rows) > early
	}) {
		t.Fatalf("%d readings (seqs contiguous from 1: %v), %d from before the server started\npublisher log:\n%s", len(rows), contiguous, early, pub.Log)
	}
}

func TestSensorsCommand(t *testing.T) {
	t.Parallel()
	// An empty sysfs root: the sysfs sensors fail, the others still print.
	root := t.TempDir()
	r := run(t, nil, "apd", "sensors", "--sys-root", root)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	blocks := strings.Split(strings.TrimSpace(r.stdout), "\n\n")
	titles := map[string]string{}
	for _, b := range blocks {
		title, value, _ := strings.Cut(b, "\n")
		titles[title] = value
	}
	for _, want := range []string{"Agent Version", "IP Addresses", "CPU Usage", "RAM Available", "AC Connected",
		"CPU Temperature", "Disk Usage", "Load Average (1 min)", "Uptime"} {
		if _, ok := titles[want]; !ok {
			t.Errorf("no %q in output:\n%s", want, r.stdout)
		}
	}
	if v := titles["CPU Usage"]; !strings.HasSuffix(v, "%") || !strings.Contains(v, ".") {
		t.Errorf("CPU Usage = %q, want like 9.8%%", v)
	}
	if v := titles["RAM Available"]; !strings.Contains(v, "iB") {
		t.Errorf("RAM Available = %q", v)
	}
	if v := titles["AC Connected"]; !strings.HasPrefix(v, "absent: no battery under "+root) {
		t.Errorf("AC Connected with no battery = %q, want it absent", v)
	}
	one := run(t, nil, "apd", "sensors", "--sensor", "version", "--json")
	var arr []map[string]any
	if err := json.Unmarshal([]byte(one.stdout), &arr); err != nil || len(arr) != 1 || arr[0]["sensor"] != "version" {
		t.Errorf("sensors --json: %v %s", err, one.stdout)
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	badConfig := filepath.Join(t.TempDir(), "bad.toml")
	_ = os.WriteFile(badConfig, []byte("[publisher]\nintervall = \"10s\"\n"), 0o644)
	brokenConfig := filepath.Join(t.TempDir(), "broken.toml")
	_ = os.WriteFile(brokenConfig, []byte("[publisher\n"), 0o644)
	tests := []struct {
		name   string
		bin    string
		args   []string
		code   int
		stderr string
	}{
		{"usage: missing sensor", "apd", []string{"query"}, 2, "--sensor"},
		{"usage: bad time", "apd", []string{"query", "--sensor", "x", "--since", "yesterday", "--db", "nope"}, 2, "--since"},
		{"unknown sensor", "apd-publish", []string{"--sensors", "nope", "--dry-run"}, 17, "known: "},
		{"unknown config key", "apd-publish", []string{"--config", badConfig, "--dry-run"}, 18, "publisher.intervall"},
		{"unparsable config", "apd", []string{"--config", brokenConfig, "hosts"}, 18, "line"},
		{"aggregator unreachable", "apd", []string{"query", "--sensor", "x", "--server", "http://" + testutil.RefusedAddr(t)}, 19, "unreachable"},
		{"broker unreachable", "apd-publish", []string{"--once", "--broker", "tcp://" + testutil.RefusedAddr(t), "--spool", filepath.Join(t.TempDir(), "s.db")}, 19, "unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, nil, tc.bin, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.stderr)
			}
			if strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("stack trace on stderr")
			}
		})
	}
}

func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "apd.toml")
	_ = os.WriteFile(cfg, []byte("[publisher]\nhost = \"from-file\"\nsensors = [\"version\"]\n"), 0o644)
	host := func(env []string, args ...string) string {
		t.Helper()
		r := run(t, env, "apd-publish", append([]string{"--config", cfg, "--dry-run"}, args...)...)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		rows := ndjsonLines(t, r.stdout)
		if len(rows) != 1 {
			t.Fatalf("want one reading (sensors from the file), got %d", len(rows))
		}
		return rows[0]["host"].(string)
	}
	// The shipped example is a valid file for both binaries.
	for _, bin := range []string{"apd-publish", "apd"} {
		args := []string{"--config", "../../config.example.toml", "--dry-run", "--sensors", "version"}
		if bin == "apd" {
			args = []string{"--config", "../../config.example.toml", "sensors", "--sensor", "version"}
		}
		if r := run(t, nil, bin, args...); r.code != 0 {
			t.Errorf("%s with config.example.toml: exit %d: %s", bin, r.code, r.stderr)
		}
	}
	if got := host(nil); got != "from-file" {
		t.Errorf("file: host %s", got)
	}
	if got := host([]string{"APD_PUBLISHER_HOST=from-env"}); got != "from-env" {
		t.Errorf("env over file: host %s", got)
	}
	if got := host([]string{"APD_PUBLISHER_HOST=from-env"}, "--host", "from-flag"); got != "from-flag" {
		t.Errorf("flag over env: host %s", got)
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	spool := filepath.Join(t.TempDir(), "spool.db")
	for _, host := range []string{"a", "b"} {
		if r := run(t, nil, "apd-publish", "--broker", "tcp://"+s.mqtt, "--host", host, "--once", "--spool", spool+host); r.code != 0 {
			t.Fatalf("publish: %s", r.stderr)
		}
	}
	s.stop(t)
	db := filepath.Join(s.data, "apd.db")
	first := run(t, nil, "apd", "export", "--db", db)
	if first.code != 0 || len(ndjsonLines(t, first.stdout)) < 10 {
		t.Fatalf("export: exit %d, %d lines, %s", first.code, len(ndjsonLines(t, first.stdout)), first.stderr)
	}
	file := filepath.Join(t.TempDir(), "export.ndjson")
	_ = os.WriteFile(file, []byte(first.stdout), 0o644)
	copyDB := filepath.Join(t.TempDir(), "copy.db")
	imp := run(t, nil, "apd", "import", "--db", copyDB, file)
	if imp.code != 0 {
		t.Fatalf("import: %s", imp.stderr)
	}
	again := run(t, nil, "apd", "import", "--db", copyDB, file)
	if !strings.Contains(again.stderr, "imported 0 readings") {
		t.Errorf("second import not idempotent: %s", again.stderr)
	}
	second := run(t, nil, "apd", "export", "--db", copyDB)
	if second.stdout != first.stdout {
		t.Errorf("export → import → export changed the data")
	}
}

// TestDeleteAndCompact: deleting a host's data removes it from queries, on
// a running server and on a file, and compaction gives the space back.
func TestDeleteAndCompact(t *testing.T) {
	t.Parallel()
	var nd strings.Builder
	base := time.Now().UTC().Truncate(time.Hour).Add(-24 * time.Hour)
	for _, host := range []string{"keep", "gone"} {
		n := 5000
		if host == "gone" {
			n = 20000 // with noisy values, so that it takes real space on disk
		}
		for i := 0; i < n; i++ {
			value := fmt.Sprintf("%d.5", i%30)
			if host == "gone" {
				value = fmt.Sprintf("0.%016d", (uint64(i)*0x9E3779B97F4A7C15)%10000000000000000)
			}
			fmt.Fprintf(&nd, `{"v":1,"host":%q,"sensor":"temperature","ts":%q,"seq":%d,"value":{"magnitude":%s,"unit":"degC"}}`+"\n",
				host, base.Add(time.Duration(i)*10*time.Second).Format("2006-01-02T15:04:05.000Z"), i+1, value)
		}
	}
	file := filepath.Join(t.TempDir(), "in.ndjson")
	_ = os.WriteFile(file, []byte(nd.String()), 0o644)
	s := startServe(t)
	db := filepath.Join(s.data, "apd.db")
	s.stop(t)
	if r := run(t, nil, "apd", "import", "--db", db, file); r.code != 0 {
		t.Fatal(r.stderr)
	}
	s = startServeIn(t, s.data)
	server := "http://" + s.http
	count := func(host string) int {
		q := run(t, nil, "apd", "query", "--server", server, "--sensor", "temperature", "--host", host, "--agg", "count", "--format", "ndjson")
		rows := ndjsonLines(t, q.stdout)
		if len(rows) == 0 {
			return 0
		}
		return int(rows[0]["value"].(float64))
	}
	if count("gone") != 20000 || count("keep") != 5000 {
		t.Fatalf("before delete: %d and %d", count("gone"), count("keep"))
	}
	if r := run(t, nil, "apd", "delete", "--server", server); r.code != 2 {
		t.Errorf("delete without --host: exit %d", r.code)
	}
	r := run(t, nil, "apd", "delete", "--server", server, "--host", "gone", "--since", base.Add(time.Hour).Format(time.RFC3339))
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 19640 readings") {
		t.Fatalf("range delete: %s %s", r.stdout, r.stderr)
	}
	if count("gone") != 360 {
		t.Errorf("after deleting all but the first hour: %d", count("gone"))
	}
	if r := run(t, nil, "apd", "delete", "--server", server, "--host", "gone"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if count("gone") != 0 || count("keep") != 5000 {
		t.Errorf("after delete: gone %d, keep %d", count("gone"), count("keep"))
	}
	hosts := run(t, nil, "apd", "hosts", "--server", server)
	if strings.Contains(hosts.stdout, "gone") {
		t.Errorf("deleted host still listed:\n%s", hosts.stdout)
	}
	// A consistent copy while the server runs.
	backup := filepath.Join(t.TempDir(), "backup.db")
	if r := run(t, nil, "apd", "backup", "--server", server, backup); r.code != 0 || !strings.Contains(r.stdout, "backed up") {
		t.Fatalf("backup: %s %s", r.stdout, r.stderr)
	}
	bq := run(t, nil, "apd", "query", "--db", backup, "--sensor", "temperature", "--agg", "count", "--format", "csv")
	if !strings.Contains(bq.stdout, "keep,temperature") || !strings.Contains(bq.stdout, ",5000,") {
		t.Errorf("query of the backup:\n%s%s", bq.stdout, bq.stderr)
	}
	s.stop(t)
	c := run(t, nil, "apd", "compact", "--db", db)
	var before, after int64
	if _, err := fmt.Sscanf(c.stdout[strings.Index(c.stdout, ": ")+2:], "%d → %d", &before, &after); err != nil || after >= before {
		t.Errorf("compact: %q %s (%v)", c.stdout, c.stderr, err)
	}
	q := run(t, nil, "apd", "query", "--db", db, "--sensor", "temperature", "--agg", "count", "--format", "csv")
	if !strings.Contains(q.stdout, "keep,temperature") || !strings.Contains(q.stdout, ",5000,") || strings.Contains(q.stdout, "gone") {
		t.Errorf("after compaction:\n%s%s", q.stdout, q.stderr)
	}
}

// TestExportImportAllKinds: numbers, quantities, booleans, strings, arrays,
// objects, nulls, error readings and unknown members come back byte for
// byte through import and export.
func TestExportImportAllKinds(t *testing.T) {
	t.Parallel()
	// In export order: sensor, host, time.
	in := strings.Join([]string{
		`{"v":1,"host":"a","sensor":"ac_connected","title":"AC Connected","ts":"2026-11-23T10:00:00.000Z","seq":1,"value":true,"human":"Connected"}`,
		`{"v":1,"host":"a","sensor":"ac_connected","ts":"2026-11-23T10:00:10.000Z","seq":2,"error":{"kind":"persistent","message":"no battery"}}`,
		`{"v":1,"host":"a","sensor":"ip_addresses","ts":"2026-11-23T10:00:00.000Z","seq":3,"value":["192.0.2.2","fe80::1"]}`,
		`{"v":1,"host":"a","sensor":"misc","ts":"2026-11-23T10:00:00.000Z","value":"a <string> & more"}`,
		`{"v":1,"host":"a","sensor":"misc","ts":"2026-11-23T10:00:01.000Z","value":null,"note":{"x":[1,2]}}`,
		`{"v":1,"host":"a","sensor":"misc","ts":"2026-11-23T10:00:02.000Z","value":{"nested":{"deep":[true,false]}}}`,
		`{"v":1,"host":"a","sensor":"misc","ts":"2026-11-23T10:00:03.000Z","value":-0}`,
		`{"v":1,"host":"a","sensor":"misc","ts":"2026-11-23T10:00:04.000Z","value":1.5e-7}`,
		`{"v":1,"host":"b","sensor":"temperature","title":"Ambient Temperature","ts":"2026-11-23T10:00:00.000Z","seq":7,"value":{"magnitude":21.3,"unit":"degC"},"human":"21.3 °C (70.3 °F)"}`,
		`{"v":1,"host":"b","sensor":"temperature","title":"Ambient Temperature","ts":"2026-11-23T10:00:10.000Z","seq":8,"value":{"magnitude":21.30,"unit":"degC"},"human":"custom text"}`,
		`{"v":1,"host":"b","sensor":"temperature","ts":"2026-11-23T10:00:20.123Z","value":21.5}`,
		`{"v":1,"host":"b","sensor":"temperature","ts":"2026-11-23T10:00:30.000Z","seq":9,"value":{"magnitude":-40,"unit":"degF"}}`,
	}, "\n") + "\n"
	file := filepath.Join(t.TempDir(), "in.ndjson")
	_ = os.WriteFile(file, []byte(in), 0o644)
	db := filepath.Join(t.TempDir(), "apd.db")
	if r := run(t, nil, "apd", "import", "--db", db, file); r.code != 0 {
		t.Fatal(r.stderr)
	}
	out := run(t, nil, "apd", "export", "--db", db)
	if out.stdout != in {
		t.Errorf("export differs from what was imported:\n got:\n%s\nwant:\n%s", out.stdout, in)
	}
}

// TestBrokerUsers: with a users file, real mosquitto clients must log in,
// and a device can store only its own readings.
func TestBrokerUsers(t *testing.T) {
	t.Parallel()
	pub, _ := mosquitto(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	for _, u := range [][]string{{"pi", "device", "--host", "pi"}, {"agg", "aggregator"}, {"rd", "reader"}} {
		pw := filepath.Join(dir, u[0]+".pw")
		_ = os.WriteFile(pw, []byte(u[0]+"-secret\n"), 0o600)
		args := append([]string{"users", "add", u[0], "--role", u[1], "--users-file", users, "--password-file", pw}, u[2:]...)
		if r := run(t, nil, "apd", args...); r.code != 0 {
			t.Fatalf("users add: %s", r.stderr)
		}
	}
	content, _ := os.ReadFile(users)
	if strings.Contains(string(content), "pi-secret") || !strings.Contains(string(content), "$2a$") {
		t.Fatalf("users file holds a plain-text password or no hash:\n%s", content)
	}
	if fi, _ := os.Stat(users); fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v", fi.Mode().Perm())
	}
	ca, cert, key := testutil.TLSFiles(t, dir)
	s := startServe(t, "--users-file", users, "--tls-addr", anyPort, "--tls-cert", cert, "--tls-key", key)
	host, port, _ := net.SplitHostPort(s.mqtt)
	mpub := func(args ...string) error {
		return exec.Command(pub, append([]string{"-h", host, "-p", port, "-q", "1"}, args...)...).Run()
	}
	// A reader over TLS, logged in.
	tlsHost, tlsPort, _ := net.SplitHostPort(s.tls)
	reader := mosquittoSub(t, "-h", tlsHost, "-p", tlsPort, "--cafile", ca,
		"-u", "rd", "-P", "rd-secret", "-t", "apd/pi/temperature", "-C", "1", "-W", "10")
	if err := mpub("-t", "apd/pi/temperature", "-m", "1"); err == nil {
		t.Error("anonymous publish accepted")
	}
	if err := mpub("-u", "pi", "-P", "wrong", "-t", "apd/pi/temperature", "-m", "2"); err == nil {
		t.Error("wrong password accepted")
	}
	_ = mpub("-u", "pi", "-P", "pi-secret", "-t", "apd/other/temperature", "-m", "3")
	if err := mpub("-u", "pi", "-P", "pi-secret", "-t", "apd/pi/temperature", "-m", "21.5"); err != nil {
		t.Fatalf("device's own publish: %v", err)
	}
	if out, err := messages(reader); err != nil || strings.TrimSpace(out) != "21.5" {
		t.Errorf("reader over TLS: %v %q", err, out)
	}
	server := "http://" + s.http
	testutil.WaitFor(t, "the device's reading stored", 5*time.Second, func() bool {
		q := run(t, nil, "apd", "query", "--server", server, "--sensor", "temperature", "--format", "ndjson")
		rows := ndjsonLines(t, q.stdout)
		if len(rows) > 1 {
			t.Fatalf("stored: %s", q.stdout)
		}
		return len(rows) == 1 && rows[0]["host"] == "pi" && rows[0]["value"] == 21.5
	})
}

// TestAPIKey: with a key configured, the API answers 401 without it,
// commands say so clearly, and work with --api-key-file or APD_API_KEY.
func TestAPIKey(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "api.key")
	const key = "0123456789abcdef0123456789abcdef"
	_ = os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
	s := startServe(t, "--api-key-file", keyFile)
	server := "http://" + s.http
	resp, err := http.Get(server + "/api/v1/hosts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("hosts without key: %d", resp.StatusCode)
	}
	if resp, err := http.Get(server + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz with a key configured: %v %v", err, resp)
	}
	r := run(t, nil, "apd", "query", "--server", server, "--sensor", "temperature")
	if r.code != 18 || !strings.Contains(r.stderr, "API key") || !strings.Contains(r.stderr, "--api-key-file") {
		t.Errorf("query without key: exit %d, %q", r.code, r.stderr)
	}
	if r := run(t, nil, "apd", "hosts", "--server", server, "--api-key-file", keyFile); r.code != 0 {
		t.Errorf("hosts with --api-key-file: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, []string{"APD_API_KEY=" + key}, "apd", "query", "--server", server, "--sensor", "temperature"); r.code != 0 {
		t.Errorf("query with APD_API_KEY: exit %d %s", r.code, r.stderr)
	}
	// Beyond loopback without a key: refused at start.
	r = run(t, nil, "apd", "serve", "--data", t.TempDir(), "--mqtt-addr", anyPort, "--http-addr", "0.0.0.0:0")
	if r.code != 18 || !strings.Contains(r.stderr, "API key") {
		t.Errorf("serve on 0.0.0.0 without key: exit %d %s", r.code, r.stderr)
	}
}

// TestTLSReader: mosquitto_sub over TLS (--cafile) receives the readings a
// device publishes on the plain listener.
func TestTLSReader(t *testing.T) {
	t.Parallel()
	ca, cert, key := testutil.TLSFiles(t, t.TempDir())
	s := startServe(t, "--tls-addr", anyPort, "--tls-cert", cert, "--tls-key", key)
	host, port, _ := net.SplitHostPort(s.tls)
	reader := mosquittoSub(t, "-h", host, "-p", port, "--cafile", ca, "-t", "apd/tls/uptime", "-C", "1", "-W", "10")
	if r := run(t, nil, "apd-publish", "--broker", "tcp://"+s.mqtt, "--host", "tls", "--once", "--sensors", "uptime",
		"--spool", filepath.Join(t.TempDir(), "s.db")); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if out, err := messages(reader); err != nil || !strings.Contains(out, `"sensor":"uptime"`) {
		t.Fatalf("TLS reader: %v %s", err, out)
	}
}

// TestClientCertificateLogin: apd-publish logs in with a client
// certificate over TLS; the broker takes its common name as the user.
func TestClientCertificateLogin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, cert, key := testutil.TLSFiles(t, dir)
	clientCA, devCert, devKey := testutil.ClientCert(t, dir, "pi-cert")
	pw := filepath.Join(dir, "pw")
	_ = os.WriteFile(pw, []byte("unused\n"), 0o600)
	users := filepath.Join(dir, "users")
	if r := run(t, nil, "apd", "users", "add", "pi-cert", "--role", "device", "--host", "pi-cert", "--users-file", users, "--password-file", pw); r.code != 0 {
		t.Fatal(r.stderr)
	}
	s := startServe(t, "--users-file", users, "--tls-addr", anyPort, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", clientCA)
	r := run(t, nil, "apd-publish", "--broker", "ssl://"+s.tls, "--tls-ca", ca, "--tls-cert", devCert, "--tls-key", devKey,
		"--host", "pi-cert", "--once", "--sensors", "uptime", "--spool", filepath.Join(dir, "s.db"))
	if r.code != 0 {
		t.Fatalf("publish with a client certificate: %s", r.stderr)
	}
	q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "uptime", "--host", "pi-cert", "--format", "ndjson")
	if len(ndjsonLines(t, q.stdout)) != 1 {
		t.Errorf("stored: %q %s", q.stdout, q.stderr)
	}
}
