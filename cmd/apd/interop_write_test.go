package main_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// The write endpoints with the real clients: the influx CLI and Telegraf
// writing line protocol to apd serve, read back with apd query.

// queryOne runs apd query for one sensor and returns its ndjson rows.
func queryOne(t *testing.T, server, sensor string, extra ...string) []map[string]any {
	t.Helper()
	r := run(t, nil, "apd", append([]string{"query", "--server", server, "--since", "24h", "--sensor", sensor, "--format", "ndjson"}, extra...)...)
	if r.code != 0 {
		t.Fatalf("apd query --sensor %s: exit %d: %s", sensor, r.code, r.stderr)
	}
	return ndjsonLines(t, r.stdout)
}

// TestInfluxCLIWrites: Debian's influx 1.x CLI connects (/ping) and
// INSERTs through /write; apd query shows the
// readings, with the unit the field name says and the line's own time.
func TestInfluxCLIWrites(t *testing.T) {
	t.Parallel()
	influx := testutil.Tool(t, "influx", "influxdb-client")
	s := startServe(t)
	host, port, _ := net.SplitHostPort(s.http)
	at := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	out, err := exec.Command(influx, "-host", host, "-port", port, "-database", "telemetry", "-precision", "s",
		"-execute", fmt.Sprintf("INSERT weather,host=shed,room=loft temperature_celsius=21.5,door=true %d", at.Unix())).CombinedOutput()
	if err != nil || strings.Contains(string(out), "ERR") {
		t.Fatalf("influx INSERT: %v: %s", err, out)
	}
	server := "http://" + s.http
	rows := queryOne(t, server, "weather.temperature_celsius.loft")
	if len(rows) != 1 || rows[0]["host"] != "shed" || rows[0]["ts"] != schema.FormatTime(at) ||
		fmt.Sprint(rows[0]["value"]) != "map[magnitude:21.5 unit:degC]" {
		t.Errorf("temperature: %v", rows)
	}
	if rows := queryOne(t, server, "weather.door.loft"); len(rows) != 1 || rows[0]["value"] != true {
		t.Errorf("door: %v", rows)
	}
	// A point without a host is refused, and the CLI says so.
	out, _ = exec.Command(influx, "-host", host, "-port", port, "-database", "telemetry", "-execute", "INSERT weather temperature_celsius=3").CombinedOutput()
	if !strings.Contains(string(out), "ERR") || !strings.Contains(string(out), `no \"host\" tag`) {
		t.Errorf("influx INSERT without host: %s", out)
	}
	// The CLI's other statements go to /query: what a writer needs
	// answers, a read says where reading is done.
	out, _ = exec.Command(influx, "-host", host, "-port", port, "-execute", "SHOW DATABASES").CombinedOutput()
	if strings.Contains(string(out), "ERR") || !strings.Contains(string(out), "apd") {
		t.Errorf("influx SHOW DATABASES: %s", out)
	}
	out, _ = exec.Command(influx, "-host", host, "-port", port, "-database", "telemetry", "-execute", "SELECT * FROM weather").CombinedOutput()
	if !strings.Contains(string(out), "ERR: apd takes writes here and answers no InfluxQL: read with PromQL at /prometheus/api/v1/query") {
		t.Errorf("influx SELECT: %s", out)
	}
	// influx -import: its DDL (CREATE DATABASE) through /query, its
	// lines through /write.
	file := filepath.Join(t.TempDir(), "export.txt")
	export := fmt.Sprintf("# DDL\nCREATE DATABASE lab\n# DML\n# CONTEXT-DATABASE: lab\nlab,host=bench3 volts=1.5 %d\nlab,host=bench3 volts=1.6 %d\n", at.Unix(), at.Unix()+10)
	if err := os.WriteFile(file, []byte(export), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(influx, "-host", host, "-port", port, "-import", "-path", file, "-precision", "s").CombinedOutput()
	if err != nil || strings.Contains(string(out), "ERR") || !strings.Contains(string(out), "Processed 2 inserts") || !strings.Contains(string(out), "Failed 0 inserts") {
		t.Errorf("influx -import: %v: %s", err, out)
	}
	if rows := queryOne(t, server, "lab.volts"); len(rows) != 2 || rows[1]["value"] != 1.6 {
		t.Errorf("imported lab.volts: %v", rows)
	}
}

// TestLineProtocolBadLineDeadLettered: one malformed line in a body; the
// others are stored, the write answered 400 naming the line, and the bad
// line kept as a dead letter with its line number.
func TestLineProtocolBadLineDeadLettered(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	server := "http://" + s.http
	at := time.Now().Add(-time.Minute).UnixNano()
	body := fmt.Sprintf("lab,host=bench1 volts=3.3 %d\nlab,host=bench1 amps=oops %d\nlab,host=bench2 volts=5.0 %d\n", at, at, at)
	resp, err := http.Post(server+"/write?db=x", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("X-Influxdb-Error"), "line 2:") {
		t.Fatalf("status %d, error %q; want 400 naming line 2", resp.StatusCode, resp.Header.Get("X-Influxdb-Error"))
	}
	rows := queryOne(t, server, "lab.volts")
	if len(rows) != 2 || rows[0]["host"] != "bench1" || rows[1]["host"] != "bench2" {
		t.Errorf("lab.volts: %v; want bench1's and bench2's", rows)
	}
	dl := run(t, nil, "apd", "deadletters", "--server", server)
	if dl.code != 0 || !strings.Contains(dl.stdout, "/write line 2") || !strings.Contains(dl.stdout, "invalid:") ||
		!strings.Contains(dl.stdout, "lab,host=bench1 amps=oops") {
		t.Errorf("apd deadletters: exit %d\n%s%s", dl.code, dl.stdout, dl.stderr)
	}
}

// telegrafVersion is the Telegraf the interop test builds.
const telegrafVersion = "v1.37.2"

// buildTelegraf builds Telegraf with only the plugins the test uses, in
// a module of its own that requires it (a dependent module, as a user's
// custom build would be), and returns the binary. Without the module
// proxy the test is skipped unless requireInteropEnv is 1.
func buildTelegraf(t *testing.T) string {
	t.Helper()
	goBin := testutil.Tool(t, "go", "golang")
	dir := t.TempDir()
	mod := "module apdtest/telegraf\n\ngo 1.25\n\nrequire github.com/influxdata/telegraf " + telegrafVersion + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "telegraf")
	cmd := exec.Command(goBin, "build", "-o", bin,
		"-tags", "custom,inputs.file,inputs.mem,parsers.influx,outputs.influxdb,outputs.influxdb_v2",
		"github.com/influxdata/telegraf/cmd/telegraf")
	cmd.Dir = dir
	// -mod=mod lets the build write the go.sum a fresh module lacks.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		// Without the module proxy there is no Telegraf to build.
		msg := fmt.Sprintf("building Telegraf %s: %v\n%s", telegrafVersion, err, out)
		if os.Getenv(testutil.RequireInteropEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// TestTelegrafWrites: Telegraf, built from its module, writes through
// outputs.influxdb (/write) and outputs.influxdb_v2 (/api/v2/write),
// both gzipped and with the API key, as docs/integrations/telegraf.md
// configures them; apd query shows what each sent.
func TestTelegrafWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Telegraf")
	}
	t.Parallel()
	telegraf := buildTelegraf(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "api.key")
	const key = "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--api-key-file", keyFile)
	server := "http://" + s.http
	// Deterministic points from a file, one measurement for each output,
	// and the machine's own memory through the 1.x output.
	data := filepath.Join(dir, "points.lp")
	if err := os.WriteFile(data, []byte("v1_room,host=lab,room=attic temp_celsius=21.5\nv2_room,host=lab,room=cellar temp_celsius=12.25\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`[agent]
  interval = "10s"
  omit_hostname = false

[[inputs.file]]
  files = [%q]
  data_format = "influx"

[[inputs.mem]]

[[outputs.influxdb]]
  urls = ["%s"]
  database = "telegraf"
  content_encoding = "gzip"
  username = "telegraf"
  password = %q
  namepass = ["v1_*", "mem"]

[[outputs.influxdb_v2]]
  urls = ["%s"]
  token = %q
  organization = "home"
  bucket = "telegraf"
  content_encoding = "gzip"
  namepass = ["v2_*"]
`, data, server, key, server, key)
	confFile := filepath.Join(dir, "telegraf.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(telegraf, "--config", confFile, "--once")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	// Neither errors nor warnings: outputs.influxdb creating its
	// database through /query is answered too.
	if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "E! ") || strings.Contains(string(out), "W! [outputs") {
		t.Fatalf("telegraf --once: %v\n%s\napd serve:\n%s", err, out, s.log)
	}
	for sensor, want := range map[string]string{"v1_room.temp_celsius.attic": "map[magnitude:21.5 unit:degC]",
		"v2_room.temp_celsius.cellar": "map[magnitude:12.25 unit:degC]"} {
		rows := queryOne(t, server, sensor, "--api-key-file", keyFile)
		if len(rows) != 1 || rows[0]["host"] != "lab" || fmt.Sprint(rows[0]["value"]) != want {
			t.Errorf("%s: %v; want one reading of host lab, %s", sensor, rows, want)
		}
	}
	rows := queryOne(t, server, "mem.used_percent", "--api-key-file", keyFile)
	if len(rows) != 1 || !strings.Contains(fmt.Sprint(rows[0]["value"]), "unit:percent") {
		t.Errorf("mem.used_percent: %v; want one reading in percent", rows)
	}
}
