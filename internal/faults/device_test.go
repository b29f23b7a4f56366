package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

// deviceInterval is a device's 10 s tick in fast time. apd-publish takes
// any positive --interval (1ns included); 100 ms is the shortest at which
// it works as it does at 10 s. Its batcher gathers samples for 50 ms
// after a tick's first, so at 50 ms and less the next tick's can join
// them in one spool record, and at 10 ms sensors still busy skip ticks.
const deviceInterval = 100 * time.Millisecond

// deviceSensors are the 13 sensors of a Raspberry Pi with a UPS hat, a
// DHT22 and a DS18B20 probe: the built-ins every Linux machine has, and
// programs (deviceExecSensors) standing in for those that need the Pi's
// hardware, with their titles and units, so their payloads have the
// real ones' sizes.
var deviceSensors = []string{
	"version", "ip_addresses", "cpu_load", "ram_available", "disk_usage", "load_average", "uptime",
	"soc_temperature", "mains_connected", "battery", "ambient_temperature", "ambient_humidity", "probe_temperature",
}

const deviceExecSensors = `
[[sensors.exec]]
name = "soc_temperature"
title = "CPU Temperature"
command = ["echo", "48.3"]
unit = "degC"

[[sensors.exec]]
name = "mains_connected"
title = "AC Connected"
command = ["echo", "true"]

[[sensors.exec]]
name = "battery"
title = "Battery Level"
command = ["echo", "87"]
unit = "percent"

[[sensors.exec]]
name = "ambient_temperature"
title = "Ambient Temperature"
command = ["echo", "21.3"]
unit = "degC"

[[sensors.exec]]
name = "ambient_humidity"
title = "Relative Humidity"
command = ["echo", "45.2"]
unit = "percent"

[[sensors.exec]]
name = "probe_temperature"
title = "DS18B20 Temperature"
command = ["echo", "19.812"]
unit = "degC"
`

// startDevice runs apd-publish as host with deviceSensors every
// deviceInterval, its spool at spool, resending after 3 s as the other
// fault tests' publishers do; extra flags follow (a later one wins).
func startDevice(t *testing.T, dir, brokerAddr, host, spool string, extra ...string) *proc {
	t.Helper()
	cfg := filepath.Join(dir, host+"-sensors.toml")
	if err := os.WriteFile(cfg, []byte(deviceExecSensors), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfg, "--sensors", strings.Join(deviceSensors, ","), "--interval", deviceInterval.String(),
		"--host", host, "--spool", spool, "--broker", "tcp://" + brokerAddr, "--resend-after", "3s",
		"--spool-staging", stagingBase(t, spool)}
	return start(t, "apd-publish", "publishing", append(args, extra...)...)
}

// stagings maps a device's spool to the tmpfs directory it stages its
// newest segments in (apd-publish --spool-staging).
var stagings sync.Map

// stagingBase returns a tmpfs directory of the test's own for spool's
// staging tier, removed when the test ends (a publisher killed and never
// restarted leaves a segment there), or "none" where no tmpfs is at hand.
func stagingBase(t *testing.T, spool string) string {
	t.Helper()
	if base, ok := stagings.Load(spool); ok {
		return base.(string)
	}
	base := "none"
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() && onTmpfs(t, "/dev/shm") {
		d, err := os.MkdirTemp("/dev/shm", "apd-faults-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		base = d
	}
	stagings.Store(spool, base)
	return base
}

// logsOnFailure shows every run's log of procs once the test has failed.
func logsOnFailure(t *testing.T, procs ...*proc) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range procs {
			t.Logf("--- %s %s log:\n%s", p.name, strings.Join(p.args[:1], " "), tail(p.log(), 8000))
		}
	})
}

// published is a reading as a device published it.
type published struct {
	sensor  string
	ts      time.Time
	payload []byte
	times   int // publications seen: more than one when it was resent
}

// deviceWatch is a subscriber at the broker to one device's topics: it
// keeps, by seq, what the device published, and the highest $ack the
// aggregator published for it.
type deviceWatch struct {
	mu       sync.Mutex
	readings map[uint64]*published
	sensors  map[string]bool
	maxSeq   uint64
	acked    uint64
	latest   time.Time      // the ts of the latest tick seen
	ticks    chan time.Time // a tick later than any before has begun to arrive
	differ   int            // publications of a seq whose payload was not the first one's
}

// watchDevice subscribes to host's topics at the broker, in a persistent
// session that comes back after a broker restart.
func watchDevice(t *testing.T, brokerAddr, host string) *deviceWatch {
	t.Helper()
	w := &deviceWatch{readings: map[uint64]*published{}, sensors: map[string]bool{}, ticks: make(chan time.Time, 1)}
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brokerAddr, ClientID: "faults-watch-" + host, QoS: 1, Persistent: true, Retry: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Subscribe("apd/"+host+"/+", w.receive); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *deviceWatch) receive(topic string, payload []byte) {
	var m struct {
		Seq    uint64 `json:"seq"`
		TS     string `json:"ts"`
		Sensor string `json:"sensor"`
	}
	if json.Unmarshal(payload, &m) != nil || m.Seq == 0 {
		return // the $status
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.HasSuffix(topic, "/$ack") {
		w.acked = max(w.acked, m.Seq)
		return
	}
	ts, err := schema.ParseTime(m.TS)
	if err != nil {
		return
	}
	if r := w.readings[m.Seq]; r != nil {
		r.times++
		if !bytes.Equal(r.payload, payload) {
			w.differ++
		}
		return
	}
	w.readings[m.Seq] = &published{sensor: m.Sensor, ts: ts, payload: bytes.Clone(payload), times: 1}
	w.sensors[m.Sensor] = true
	w.maxSeq = max(w.maxSeq, m.Seq)
	if ts.After(w.latest) {
		w.latest = ts
		select {
		case w.ticks <- ts:
		default:
		}
	}
}

// last returns the highest seq published and the highest acknowledged.
func (w *deviceWatch) last() (seq, acked uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxSeq, w.acked
}

// waitAcked waits until the aggregator has acknowledged seq.
func (w *deviceWatch) waitAcked(t *testing.T, what string, seq uint64, timeout time.Duration) {
	t.Helper()
	testutil.WaitFor(t, what, timeout, func() bool { _, acked := w.last(); return acked >= seq })
}

// waitSteady waits until the device publishes every sensor and the
// aggregator acknowledges what it publishes.
func (w *deviceWatch) waitSteady(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, "every sensor of the device published", 60*time.Second, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.sensors) == len(deviceSensors)
	})
	seq, _ := w.last()
	w.waitAcked(t, "the aggregator acknowledging the device", seq, 60*time.Second)
}

// nextTick waits until the first reading of a tick later than any seen
// so far arrives, and returns the tick's time.
func (w *deviceWatch) nextTick(t *testing.T) time.Time {
	t.Helper()
	select {
	case <-w.ticks: // a tick already under way
	default:
	}
	select {
	case ts := <-w.ticks:
		return ts
	case <-time.After(time.Minute):
		t.Fatal("the device published no new tick within a minute")
		return time.Time{}
	}
}

// ticksAfter counts the ticks stamped after since that the device published.
func (w *deviceWatch) ticksAfter(since time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	ticks := map[time.Time]bool{}
	for _, r := range w.readings {
		if r.ts.After(since) {
			ticks[r.ts] = true
		}
	}
	return len(ticks)
}

// readingsOf counts the readings published at ts.
func (w *deviceWatch) readingsOf(ts time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, r := range w.readings {
		if r.ts.Equal(ts) {
			n++
		}
	}
	return n
}

// publishedSet is a summary of readings a device published.
type publishedSet struct {
	readings, ticks int
	bytes           int // of their payloads
	resent          int // readings published more than once
	publications    int // in all, resends included
	differ          int // publications of any seq whose payload was not the first one's
}

// payloads sums up the readings the device published for which keep
// holds.
func (w *deviceWatch) payloads(keep func(seq uint64, r *published) bool) publishedSet {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := publishedSet{differ: w.differ}
	ticks := map[time.Time]bool{}
	for seq, r := range w.readings {
		if keep(seq, r) {
			s.readings++
			ticks[r.ts] = true
			s.bytes += len(r.payload)
			s.publications += r.times
			if r.times > 1 {
				s.resent++
			}
		}
	}
	s.ticks = len(ticks)
	return s
}

// segments returns the names of the spool's segment files.
func segments(t *testing.T, spool string) []string {
	t.Helper()
	dirs := []string{spool}
	if base, ok := stagings.Load(spool); ok && base != "none" {
		staging, err := publisher.ChooseStagingDir(spool, base.(string))
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, staging)
	}
	var names []string
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".seg") && !slices.Contains(names, e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	return names
}
