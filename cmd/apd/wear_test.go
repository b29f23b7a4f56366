package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestDeferredCommitsSurviveKill: apd serve makes commits that only add
// readings durable in its write-ahead file, and says so in /metrics and
// on SIGUSR1. Killed (SIGKILL) before any checkpoint, its restart finds
// every reading it acknowledged.
func TestDeferredCommitsSurviveKill(t *testing.T) {
	pub, _ := mosquitto(t)
	data := t.TempDir()
	cmd := exec.Command(filepath.Join(binDir, "apd"), "serve", "--data", data, "--mqtt-addr", anyPort, "--http-addr", anyPort)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	p, m := testutil.StartProcess(t, cmd, testutil.LogLine("apd serve running"), 20*time.Second)
	a := testutil.ParseLogLine(m[0])
	httpAddr := strings.TrimPrefix(a["http"], "http://")
	if err := testutil.Ready(httpAddr, 10*time.Second); err != nil {
		t.Fatalf("%v: %s", err, p.Log)
	}
	host, port, _ := net.SplitHostPort(a["mqtt"])
	const readings = 6
	for i := range readings {
		// QoS 1: mosquitto_pub returns after the PUBACK, which the
		// embedded broker sends after the commit.
		if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "apd/shed/temperature",
			"-m", fmt.Sprint(20+i)).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
		time.Sleep(5 * time.Millisecond) // readings stamped on receipt: distinct milliseconds
	}
	got := testutil.ScrapeMetrics(t, "http://"+httpAddr+"/metrics")
	// The first reading made the series (committed to apd.db); the rest
	// only added to it.
	if got["apd_store_deferred_commits_total"] != readings-1 || got["apd_store_checkpoints_total"] != 0 ||
		got["apd_store_syncs_total"] < readings || got["apd_process_written_bytes_total"] <= 0 {
		t.Fatalf("metrics after %d readings: deferred %v, checkpoints %v, syncs %v, written %v", readings,
			got["apd_store_deferred_commits_total"], got["apd_store_checkpoints_total"], got["apd_store_syncs_total"], got["apd_process_written_bytes_total"])
	}
	if fi, err := os.Stat(filepath.Join(data, "apd.db-wal")); err != nil || fi.Size() == 0 {
		t.Fatalf("write-ahead file: %v %v", fi, err)
	}
	_ = p.Cmd.Process.Signal(syscall.SIGUSR1)
	line := p.WaitLogLine(t, testutil.LogLine("disk writes"), 5*time.Second)
	if f := testutil.ParseLogLine(line); f["syncs"] == "" || f["bytes_written_per_day"] == "" || f["deferred_commits"] != strconv.Itoa(readings-1) {
		t.Fatalf("disk writes line: %s", line)
	}

	_ = p.Cmd.Process.Kill()
	_ = p.Wait()
	s := startServeIn(t, data)
	q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "temperature", "--since", "1h", "--format", "ndjson")
	lines := ndjsonLines(t, q.stdout)
	if len(lines) != readings {
		t.Fatalf("after SIGKILL and restart %d readings, want %d:\n%s%s", len(lines), readings, q.stdout, s.log)
	}
	for i, l := range lines {
		if l["value"] != float64(20+i) {
			t.Fatalf("reading %d after restart: %v", i, l)
		}
	}
}

// TestPublisherReportsWear: apd-publish puts what it wrote to storage in
// its retained $status (any MQTT client sees it) and logs it on SIGUSR1.
func TestPublisherReportsWear(t *testing.T) {
	_, sub := mosquitto(t)
	s := startServe(t)
	pub, _ := testutil.StartProcess(t, exec.Command(filepath.Join(binDir, "apd-publish"), "--broker", "tcp://"+s.mqtt, "--host", "worn",
		"--interval", "200ms", "--sensors", "uptime", "--spool", filepath.Join(t.TempDir(), "spool.db")),
		testutil.LogLine("publishing"), 10*time.Second)
	defer func() { _ = pub.Stop(10 * time.Second) }()
	host, port, _ := net.SplitHostPort(s.mqtt)
	var status map[string]any
	testutil.WaitFor(t, "a retained $status with a wear report", 10*time.Second, func() bool {
		out, err := exec.Command(sub, "-h", host, "-p", port, "-t", "apd/worn/$status", "-C", "1", "-W", "2").Output()
		if err != nil {
			return false
		}
		return json.Unmarshal(out, &status) == nil && status["wear"] != nil
	})
	wear, _ := status["wear"].(map[string]any)
	for _, k := range []string{"since", "bytes_written", "syncs", "bytes_per_day", "syncs_per_day"} {
		if _, ok := wear[k]; !ok {
			t.Fatalf("$status wear without %s: %v", k, status)
		}
	}
	// A few ticks, then the log line.
	testutil.WaitFor(t, "readings stored", 10*time.Second, func() bool {
		q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "uptime", "--host", "worn", "--format", "ndjson")
		return len(ndjsonLines(t, q.stdout)) >= 3
	})
	_ = pub.Cmd.Process.Signal(syscall.SIGUSR1)
	line := pub.WaitLogLine(t, testutil.LogLine("disk writes"), 5*time.Second)
	f := testutil.ParseLogLine(line)
	if _, err := strconv.ParseUint(f["bytes_written_per_day"], 10, 64); err != nil || f["syncs"] == "" || f["spool_waiting"] == "" {
		t.Fatalf("disk writes line: %s", line)
	}
}
