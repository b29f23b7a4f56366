package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// tenMinutesOfTicks is ten minutes at apd-publish's default interval of
// 10 s: the span after which, on a machine without the hardware, no
// absent sensor may have stored an error and a failing one only one.
const tenMinutesOfTicks = 60

// TestAbsentSensorsAreNotSampled runs apd-publish with its default sensors
// at a short interval against apd serve, for as many ticks as ten minutes
// at the default interval, on a /sys without a DHT22, a 1-Wire bus, a
// battery or a thermal zone (an empty --sys-root, whatever this machine
// has): the absent sensors store nothing and apd sensors lists them as
// absent; battery_level, configured by its own table, fails every tick
// and stores one error, then, once a battery appears, one recovery that
// counts the failed samples.
func TestAbsentSensorsAreNotSampled(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	server := "http://" + s.http
	root := t.TempDir()
	cfg := writeConfig(t, `
[publisher]
attempts = 1

[sensors.battery_level]
supply = "BAT0"
`)
	absent := []string{"temperature", "relative_humidity", "ds18b20", "ac_connected", "cpu_temperature"}

	// apd sensors says what is absent, and why, and reads the rest.
	r := run(t, nil, "apd", "sensors", "--sys-root", root, "--config", cfg, "--json")
	if r.code != 0 {
		t.Fatalf("apd sensors: exit %d: %s", r.code, r.stderr)
	}
	var entries []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatalf("apd sensors --json: %v\n%s", err, r.stdout)
	}
	bySensor := map[string]map[string]any{}
	for _, e := range entries {
		bySensor[e["sensor"].(string)] = e
	}
	for _, name := range absent {
		reason, _ := bySensor[name]["absent"].(string)
		if !strings.HasPrefix(reason, "no ") || !strings.Contains(reason, root) {
			t.Errorf("apd sensors --json: %s = %v, want absent with a reason under the root", name, bySensor[name])
		}
	}
	if e := bySensor["battery_level"]; e["error"] == nil {
		t.Errorf("apd sensors --json: a configured battery_level without a battery = %v, want its error", e)
	}
	if e := bySensor["cpu_load"]; e["value"] == nil {
		t.Errorf("apd sensors --json: cpu_load = %v", e)
	}
	text := run(t, nil, "apd", "sensors", "--sys-root", root)
	if blocks := sensorBlocks(text.stdout); !strings.HasPrefix(blocks["Ambient Temperature"], "absent: no DHT11/DHT22 IIO device under "+root) {
		t.Errorf("apd sensors: Ambient Temperature = %q\n%s", blocks["Ambient Temperature"], text.stdout)
	}

	pub := exec.Command(filepath.Join(binDir, "apd-publish"), "--config", cfg, "--sys-root", root,
		"--broker", "tcp://"+s.mqtt, "--host", "bare", "--interval", "100ms", "--spool", filepath.Join(t.TempDir(), "spool.db"))
	pub.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	p, _ := testutil.StartProcess(t, pub, testutil.LogLine("publishing"), 20*time.Second)
	count := func(sensor string) []map[string]any {
		q := run(t, nil, "apd", "query", "--server", server, "--sensor", sensor, "--host", "bare", "--since", "1h", "--format", "ndjson")
		if q.code != 0 {
			t.Fatalf("apd query --sensor %s: exit %d: %s", sensor, q.code, q.stderr)
		}
		return ndjsonLines(t, q.stdout)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(250 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within a minute\npublisher log:\n%s", what, p.Log)
			}
		}
	}
	// Ten minutes' worth of ticks with the battery missing …
	waitFor(fmt.Sprintf("%d ticks", tenMinutesOfTicks), func() bool { return len(count("cpu_load")) > tenMinutesOfTicks })
	// … then it appears.
	bat := filepath.Join(root, "sys", "class", "power_supply", "BAT0")
	if err := os.MkdirAll(bat, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"capacity": "87\n", "type": "Battery\n"} {
		if err := os.WriteFile(filepath.Join(bat, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("recovery and two readings after it", func() bool { return len(count("battery_level")) >= 4 })
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("apd-publish: %v\n%s", err, p.Log)
	}

	for _, name := range absent {
		if n := strings.Count(p.Log.String(), `msg="sensor absent; not sampled" sensor=`+name+" "); n != 1 {
			t.Errorf("absent %s logged %d times, want once:\n%s", name, n, p.Log)
		}
		if rows := count(name); len(rows) != 0 {
			t.Errorf("absent %s stored %d readings: %v", name, len(rows), rows[0])
		}
	}
	var errorRows, recoveries, plain int
	var failed float64
	for _, row := range count("battery_level") {
		switch rec, _ := row["recovered"].(map[string]any); {
		case row["error"] != nil:
			errorRows++
			if f, _ := row["failing"].(map[string]any); f == nil || f["failed_samples"] != float64(1) {
				t.Errorf("the error reading has no failing count of 1: %v", row)
			}
		case rec != nil:
			recoveries++
			failed, _ = rec["failed_samples"].(float64)
		default:
			plain++
		}
	}
	if errorRows != 1 || recoveries != 1 || failed < tenMinutesOfTicks || plain < 2 {
		t.Errorf("battery_level stored %d error readings, %d recoveries (after %v failed samples), %d plain readings; want 1, 1 (≥%d), ≥2\n%s",
			errorRows, recoveries, failed, plain, tenMinutesOfTicks, p.Log)
	}
	if !strings.Contains(p.Log.String(), `msg="sensor recovered" sensor=battery_level`) {
		t.Errorf("no log line of the recovery:\n%s", p.Log)
	}
}
