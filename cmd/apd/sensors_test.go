package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// sensorBlocks parses apd sensors output: title → formatted value.
func sensorBlocks(out string) map[string]string {
	m := map[string]string{}
	for _, b := range strings.Split(strings.TrimSpace(out), "\n\n") {
		title, value, _ := strings.Cut(b, "\n")
		m[title] = value
	}
	return m
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "apd.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSensorsFromHardwareFixtures(t *testing.T) {
	dht, _ := filepath.Abs("../../publisher/sensors/dht/testdata")
	w1, _ := filepath.Abs("../../publisher/sensors/ds18b20/testdata")
	tests := []struct {
		name string
		dir  string
		want map[string]string // title → value prefix
	}{
		{"good DHT22", "good", map[string]string{"Ambient Temperature": "21.0 °C (69.8 °F)", "Relative Humidity": "45.2%"}},
		{"garbage humidity", "garbage", map[string]string{"Ambient Temperature": "21.0 °C (69.8 °F)", "Relative Humidity": "error (intermittent): in_humidityrelative_input: not a number"}},
		{"out of range", "range", map[string]string{"Ambient Temperature": "error (intermittent): ambient temperature 95.0 is outside"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, fmt.Sprintf(`
[publisher]
sensors = ["temperature", "relative_humidity"]
attempts = 1
[sensors.temperature]
iio_device = %q
`, filepath.Join(dht, tc.dir)))
			r := run(t, nil, "apd", "sensors", "--config", cfg)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			got := sensorBlocks(r.stdout)
			for title, want := range tc.want {
				if !strings.HasPrefix(got[title], want) {
					t.Errorf("%s = %q, want %q…\n%s", title, got[title], want, r.stdout)
				}
			}
		})
	}
	// DS18B20 probes from a fake 1-Wire bus, one sensor each, one named.
	cfg := writeConfig(t, `
[publisher]
sensors = ["ds18b20"]
attempts = 1
[sensors.ds18b20]
names = { "28-0316a2791aff" = "greenhouse" }
titles = { "28-0316a2791aff" = "Greenhouse" }
`)
	r := run(t, nil, "apd", "sensors", "--config", cfg, "--sys-root", w1, "--json")
	var readings []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &readings); err != nil || len(readings) != 4 {
		t.Fatalf("ds18b20: %v, %d readings: %s %s", err, len(readings), r.stdout, r.stderr)
	}
	if readings[0]["sensor"] != "greenhouse" || readings[0]["human"] != "21.4 °C (70.6 °F)" || readings[1]["sensor"] != "ds18b20_28-0416b3a2c4ff" {
		t.Errorf("ds18b20 readings: %v", readings[:2])
	}
	// One probe, selected by its own name.
	r = run(t, nil, "apd", "sensors", "--config", cfg, "--sys-root", w1, "--sensor", "greenhouse")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "Greenhouse\n21.4 °C (70.6 °F)" {
		t.Errorf("--sensor greenhouse: exit %d: %q %s", r.code, r.stdout, r.stderr)
	}
}

func TestExecSensors(t *testing.T) {
	cfg := writeConfig(t, `
[publisher]
attempts = 1

[[sensors.exec]]
name = "solar_cumulative_output"
title = "Solar panel cumulative output"
command = ["echo", "14070867"]
unit = "Wh"

[[sensors.exec]]
name = "stuck"
command = ["sh", "-c", "sleep 60"]
timeout = "500ms"
`)
	start := time.Now()
	r := run(t, nil, "apd", "sensors", "--config", cfg, "--sensor", "solar_cumulative_output", "--sensor", "stuck")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	got := sensorBlocks(r.stdout)
	if got["Solar panel cumulative output"] != "14070.867 kWh" {
		t.Errorf("solar = %q\n%s", got["Solar panel cumulative output"], r.stdout)
	}
	if !strings.Contains(got["stuck"], "no result within 500ms") {
		t.Errorf("hanging program = %q", got["stuck"])
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("apd sensors took %s with a hanging program", took)
	}

	bad := writeConfig(t, "[[sensors.exec]]\nname = \"x\"\ncommand = [\"true\"]\nkind = \"often\"\n")
	if r := run(t, nil, "apd", "sensors", "--config", bad); r.code != 18 || !strings.Contains(r.stderr, "sensors.exec[0]: kind") {
		t.Errorf("bad exec sensor: exit %d: %s", r.code, r.stderr)
	}
	typo := writeConfig(t, "[sensors.temperatur]\niio_device = \"/x\"\n")
	if r := run(t, nil, "apd", "sensors", "--config", typo); r.code != 17 || !strings.Contains(r.stderr, "known: ") {
		t.Errorf("table of an unknown sensor: exit %d: %s", r.code, r.stderr)
	}
}

// TestStreamSensorPublishesEachLine runs apd-publish with a stream-mode
// program against apd serve: every line it prints is stored.
func TestStreamSensorPublishesEachLine(t *testing.T) {
	s := startServe(t)
	cfg := writeConfig(t, `
[publisher]
sensors = ["meter"]

[[sensors.exec]]
name = "meter"
command = ["sh", "-c", "for w in 120 135.5 99; do echo $w; sleep 0.2; done; sleep 60"]
mode = "stream"
unit = "W"
`)
	var log testutil.SyncBuffer
	pub := exec.Command(filepath.Join(binDir, "apd-publish"), "--config", cfg, "--broker", "tcp://"+s.mqtt, "--host", "meterbox",
		"--interval", "1h", "--spool", filepath.Join(t.TempDir(), "spool.db"))
	pub.Stdout, pub.Stderr = &log, &log
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pub.Process.Signal(syscall.SIGTERM); _ = pub.Wait() }()
	var values []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "meter", "--format", "ndjson")
		values = nil
		for _, row := range ndjsonLines(t, q.stdout) {
			values = append(values, row["human"].(string))
		}
		if len(values) >= 3 {
			break
		}
	}
	if strings.Join(values, " ") != "120.0 W 135.5 W 99.0 W" {
		t.Fatalf("stored %q, want the three lines\n%s", values, log.String())
	}
}

// TestHomeAssistantDiscovery: apd-publish --ha-discovery --once leaves
// retained configs that a real mosquitto_sub receives, and removes the
// config of a sensor no longer configured.
func TestHomeAssistantDiscovery(t *testing.T) {
	sub, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Skip("needs mosquitto_sub (apt-get install mosquitto-clients)")
	}
	pubTool, _ := exec.LookPath("mosquitto_pub")
	s := startServe(t)
	host, port, _ := net.SplitHostPort(s.mqtt)
	if out, err := exec.Command(pubTool, "-h", host, "-p", port, "-r", "-t", "homeassistant/sensor/pi-kitchen/old_sensor/config", "-m", `{"name":"old"}`).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	dht, _ := filepath.Abs("../../publisher/sensors/dht/testdata/good")
	cfg := writeConfig(t, fmt.Sprintf("[publisher]\nsensors = [\"temperature\", \"relative_humidity\", \"uptime\"]\n[sensors.temperature]\niio_device = %q\n", dht))
	r := run(t, nil, "apd-publish", "--config", cfg, "--broker", "tcp://"+s.mqtt, "--host", "pi-kitchen", "--ha-discovery", "--once",
		"--spool", filepath.Join(t.TempDir(), "spool.db"))
	if r.code != 0 {
		t.Fatalf("apd-publish: exit %d: %s", r.code, r.stderr)
	}
	out, err := exec.Command(sub, "-h", host, "-p", port, "-t", "homeassistant/#", "-v", "-W", "2").Output()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 27) { // 27: -W timeout
		t.Fatalf("mosquitto_sub: %v", err)
	}
	configs := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		topic, payload, _ := strings.Cut(line, " ")
		var m map[string]any
		if err := json.Unmarshal([]byte(payload), &m); err != nil {
			t.Fatalf("%s: %q: %v", topic, payload, err)
		}
		configs[topic] = m
	}
	temp := configs["homeassistant/sensor/pi-kitchen/temperature/config"]
	if temp["state_topic"] != "apd/pi-kitchen/temperature" || temp["unit_of_measurement"] != "°C" || temp["availability_topic"] != "apd/pi-kitchen/$status" {
		t.Errorf("temperature config = %v", temp)
	}
	if configs["homeassistant/sensor/pi-kitchen/relative_humidity/config"]["device_class"] != "humidity" {
		t.Errorf("humidity config = %v", configs["homeassistant/sensor/pi-kitchen/relative_humidity/config"])
	}
	if _, ok := configs["homeassistant/sensor/pi-kitchen/uptime/config"]; !ok {
		t.Errorf("no uptime config: %v", configs)
	}
	if _, ok := configs["homeassistant/sensor/pi-kitchen/old_sensor/config"]; ok {
		t.Errorf("the config of a sensor no longer configured is still retained")
	}
	// The discovery messages are not apd readings: nothing went to the
	// dead letters.
	if dl := run(t, nil, "apd", "deadletters", "--server", "http://"+s.http); strings.Contains(dl.stdout, "homeassistant") {
		t.Errorf("discovery messages dead-lettered:\n%s", dl.stdout)
	}
}

// TestHangingSensorDoesNotDelayOthers runs apd-publish with a program that
// never answers beside a built-in sensor: the built-in one keeps its
// one-second schedule, and the hung one is published as a failed reading
// once its timeout cuts it off.
func TestHangingSensorDoesNotDelayOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes for several seconds")
	}
	s := startServe(t)
	cfg := writeConfig(t, `
[publisher]
sensors = ["uptime", "hung"]
attempts = 1

[[sensors.exec]]
name = "hung"
command = ["sleep", "600"]
timeout = "2s"
`)
	var log testutil.SyncBuffer
	pub := exec.Command(filepath.Join(binDir, "apd-publish"), "--config", cfg, "--broker", "tcp://"+s.mqtt, "--host", "hangs",
		"--interval", "1s", "--spool", filepath.Join(t.TempDir(), "spool.db"))
	pub.Stdout, pub.Stderr = &log, &log
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pub.Process.Signal(syscall.SIGTERM); _ = pub.Wait() }()
	time.Sleep(4500 * time.Millisecond)
	q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "uptime", "--host", "hangs", "--format", "ndjson")
	if n := len(ndjsonLines(t, q.stdout)); n < 3 {
		t.Errorf("%d uptime readings in 4.5 s beside a hung sensor, want at least 3\n%s", n, log.String())
	}
	q = run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "hung", "--host", "hangs", "--format", "ndjson")
	rows := ndjsonLines(t, q.stdout)
	if len(rows) == 0 {
		t.Fatalf("no reading of the hung sensor\n%s", log.String())
	}
	if e, _ := rows[0]["error"].(map[string]any); e == nil || !strings.Contains(e["message"].(string), "no result within 2s") {
		t.Errorf("hung sensor reading: %v", rows[0])
	}
}

// TestMisspeltConfigKeys: a misspelt key in any table of the config file
// — a built-in sensor's parameters, a family's, an exec sensor, a rule —
// exits 18 naming the key and its table; every duration takes days.
func TestMisspeltConfigKeys(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		args         []string
		want         []string
	}{
		{"sensor parameter", "[sensors.disk_usage]\npth = \"/nope\"\n", []string{"apd-publish", "--dry-run", "--sensors", "disk_usage"},
			[]string{"[sensors.disk_usage]", "unknown key pth", "known: path"}},
		{"sensor without parameters", "[sensors.uptime]\nformat = \"long\"\n", []string{"apd-publish", "--dry-run", "--sensors", "uptime"},
			[]string{"[sensors.uptime]", "unknown key format"}},
		{"family parameter", "[sensors.ds18b20]\nnmes = { x = \"y\" }\n", []string{"apd", "sensors", "--sensor", "ds18b20"},
			[]string{"[sensors.ds18b20]", "unknown key nmes", "known: names, titles"}},
		{"exec table", "[[sensors.exec]]\nname = \"solar\"\ncommand = [\"echo\", \"1\"]\ntimout = \"15s\"\n", []string{"apd-publish", "--dry-run", "--sensors", "solar"},
			[]string{"sensors.exec[0]", "unknown key timout"}},
		{"rule", "[[rules]]\nname = \"cold\"\nsensor = \"temperature\"\nwhen = \"value < 5\"\nactons = [\"log\"]\n", []string{"apd", "rules", "check", ""},
			[]string{`rules[0] "cold"`, "unknown key actons"}},
	} {
		cfg := writeConfig(t, tc.config)
		args := append([]string{"--config", cfg}, tc.args[1:]...)
		if tc.args[len(tc.args)-1] == "" { // apd rules check FILE
			args = append(tc.args[1:len(tc.args)-1], cfg)
		}
		r := run(t, nil, tc.args[0], args...)
		if r.code != 18 {
			t.Errorf("%s: exit %d, want 18: %s", tc.name, r.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, r.stderr, w)
			}
		}
	}
	cfg := writeConfig(t, "[sensors.uptime]\ninterval = \"1d\"\n")
	if r := run(t, nil, "apd-publish", "--config", cfg, "--dry-run", "--sensors", "uptime", "--interval", "1d"); r.code != 0 {
		t.Errorf("interval of 1d in a sensor table and a flag: exit %d %s", r.code, r.stderr)
	}
}
