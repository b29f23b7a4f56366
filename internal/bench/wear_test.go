package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/procio"
	"github.com/apd-telemetry/apd/internal/testutil"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// Targets of bytes written per day (SD-card wear) at the shapes below.
const (
	wearTargetPublishMBPerDay = 10
	wearTargetServeMBPerDay   = 64
)

// BenchmarkSDCardWear measures what wears a Pi's SD card: the bytes each
// process causes to be written to storage, scaled to a day. The shape is a
// home fleet on one machine: apd serve and APD_WEAR_DEVICES (default 10)
// release builds of apd-publish, each with every sensor available here
// at a 10 s interval and the default --sync, the aggregator
// acknowledging; counted over APD_WEAR_DURATION (default 70m: apd serve
// checkpoints its write-ahead file into apd.db hourly, and the window
// must hold one) after the first ticks, so the files' creation is not in
// the figure. APD_WEAR_CHECKPOINT sets apd serve's --checkpoint-every
// (default: its own default).
//
// The figure is /proc/<pid>/io write_bytes less cancelled_write_bytes:
// the kernel counts a page when it is dirtied and takes it back when the
// page is dropped unwritten (its file deleted first), which is how the
// spool's acknowledged segments never reach the card; the raw
// write_bytes is printed beside it.
//
// It also measures what the fleet gets for it: each reading's time from
// reaching the broker to the $ack that covers it (p50, p99: the target is
// under 2 s), and the publishers' resident memory at the end.
//
//	go test -run '^$' -bench SDCardWear -benchtime 1x -timeout 2h ./internal/bench/
func BenchmarkSDCardWear(b *testing.B) {
	duration := envDuration(b, "APD_WEAR_DURATION", 70*time.Minute)
	var serveArgs []string
	checkpoint := "the default"
	if s := os.Getenv("APD_WEAR_CHECKPOINT"); s != "" {
		serveArgs, checkpoint = []string{"--checkpoint-every", s}, s
	}
	devices := 10
	if s := os.Getenv("APD_WEAR_DEVICES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("APD_WEAR_DEVICES %q: want a number of devices", s)
		}
		devices = n
	}
	apd, publish := buildApd(b), buildRelease(b, "apd-publish")
	for i := 0; i < b.N; i++ {
		srv, mqttAddr, httpAddr := startServeOn(b, apd, b.TempDir(), serveArgs...)
		acks := watchAcks(b, mqttAddr)
		var pubs []*exec.Cmd
		for d := range devices {
			pub := exec.Command(publish, "--broker", "tcp://"+mqttAddr, "--interval", "10s",
				"--spool", filepath.Join(b.TempDir(), "spool.db"), "--host", fmt.Sprintf("wear-%02d", d), "--log-level", "warn")
			pub.Stderr = os.Stderr
			if err := pub.Start(); err != nil {
				b.Fatal(err)
			}
			pubs = append(pubs, pub)
		}
		// Past the first ticks: spools and series made, the steady state.
		time.Sleep(time.Until(time.Now().Truncate(10 * time.Second).Add(22 * time.Second)))
		serveStart := ioCounters(b, srv.Process.Pid)
		pubStart := make([]procio.Counters, len(pubs))
		for d, p := range pubs {
			pubStart[d] = ioCounters(b, p.Process.Pid)
		}
		acks.start()
		before := testutil.ScrapeMetrics(b, "http://"+httpAddr+"/metrics")
		start := time.Now()
		time.Sleep(duration) // what is measured: the processes running
		wall := time.Since(start)
		perDay := func(n uint64) float64 { return float64(n) / 1e6 * (24 * time.Hour).Seconds() / wall.Seconds() }
		serveEnd := ioCounters(b, srv.Process.Pid)
		after := testutil.ScrapeMetrics(b, "http://"+httpAddr+"/metrics")
		checkpoints := after["apd_store_checkpoints_total"] - before["apd_store_checkpoints_total"]
		syncs := after["apd_store_syncs_total"] - before["apd_store_syncs_total"]
		serve := perDay(serveEnd.Written() - serveStart.Written())
		serveRaw := perDay(serveEnd.WriteBytes - serveStart.WriteBytes)
		var pub, pubRaw []float64
		var rssMax int64
		for d, p := range pubs {
			end := ioCounters(b, p.Process.Pid)
			pub = append(pub, perDay(end.Written()-min(end.Written(), pubStart[d].Written())))
			pubRaw = append(pubRaw, perDay(end.WriteBytes-pubStart[d].WriteBytes))
			rssMax = max(rssMax, rssKiB(b, p.Process.Pid))
			_ = p.Process.Signal(syscall.SIGTERM)
			if err := p.Wait(); err != nil {
				b.Errorf("apd-publish: %v", err)
			}
		}
		p50, p99, n := acks.stop()
		slices.Sort(pub)
		slices.Sort(pubRaw)
		b.ReportMetric(serve, "serve-MB/day")
		b.ReportMetric(pub[len(pub)/2], "publish-median-MB/day")
		b.ReportMetric(pub[len(pub)-1], "publish-max-MB/day")
		b.ReportMetric(p99.Seconds()*1000, "ack-p99-ms")
		b.ReportMetric(float64(rssMax)/1024, "publish-max-RSS-MiB")
		b.Logf("over %s, %d devices: apd serve %.1f MB/day written (target ≤ %d; %.1f dirtied; %.0f fsyncs, %.0f checkpoints with --checkpoint-every %s), apd-publish median %.1f, highest %.1f MB/day written (target ≤ %d; median %.1f dirtied)",
			wall.Round(time.Second), devices, serve, wearTargetServeMBPerDay, serveRaw, syncs, checkpoints, checkpoint,
			pub[len(pub)/2], pub[len(pub)-1], wearTargetPublishMBPerDay, pubRaw[len(pubRaw)/2])
		b.Logf("broker receipt → $ack over %d readings: p50 %s, p99 %s (target < 2s); apd-publish RSS at most %.1f MiB (target < 15)",
			n, p50.Round(time.Millisecond), p99.Round(time.Millisecond), float64(rssMax)/1024)
	}
}

// ioCounters reads a process's storage write counters.
func ioCounters(b *testing.B, pid int) procio.Counters {
	b.Helper()
	c, err := procio.Of(strconv.Itoa(pid))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// ackWatch times each reading from the moment a subscriber sees it at the
// broker to the $ack that covers its seq.
type ackWatch struct {
	mu        sync.Mutex
	measuring bool
	seen      map[string]map[uint64]time.Time // host → seq → first seen
	latencies []time.Duration
	client    paho.Client
}

func watchAcks(b *testing.B, mqttAddr string) *ackWatch {
	b.Helper()
	w := &ackWatch{seen: map[string]map[uint64]time.Time{}}
	o := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("wear-ack-watch")
	w.client = paho.NewClient(o)
	if t := w.client.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("connect the $ack watcher: %v", t.Error())
	}
	t := w.client.Subscribe("apd/+/+", 0, func(_ paho.Client, m paho.Message) {
		now := time.Now()
		parts := strings.Split(m.Topic(), "/")
		if len(parts) != 3 {
			return
		}
		var p struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(m.Payload(), &p) != nil || p.Seq == 0 {
			return
		}
		host := parts[1]
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.measuring {
			return
		}
		seqs := w.seen[host]
		if seqs == nil {
			seqs = map[uint64]time.Time{}
			w.seen[host] = seqs
		}
		if parts[2] != "$ack" {
			if _, ok := seqs[p.Seq]; !ok {
				seqs[p.Seq] = now
			}
			return
		}
		for seq, at := range seqs {
			if seq <= p.Seq {
				w.latencies = append(w.latencies, now.Sub(at))
				delete(seqs, seq)
			}
		}
	})
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("subscribe the $ack watcher: %v", t.Error())
	}
	b.Cleanup(func() { w.client.Disconnect(100) })
	return w
}

func (w *ackWatch) start() { w.mu.Lock(); w.measuring = true; w.mu.Unlock() }

// stop ends the measurement and returns the median and 99th percentile,
// and how many readings they are of.
func (w *ackWatch) stop() (p50, p99 time.Duration, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.measuring = false
	l := slices.Clone(w.latencies)
	if len(l) == 0 {
		return 0, 0, 0
	}
	slices.Sort(l)
	return l[len(l)/2], l[len(l)*99/100], len(l)
}

// envDuration reads a duration from the environment variable name,
// def when it is unset.
func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		b.Fatalf("%s %q: want a duration like 10m", name, s)
	}
	return d
}
