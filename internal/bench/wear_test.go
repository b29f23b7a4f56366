package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Targets of bytes written per day (SD-card wear) at the shapes below.
const (
	wearTargetPublishMBPerDay = 10
	wearTargetServeMBPerDay   = 64
)

// BenchmarkSDCardWear measures what wears a Pi's SD card: the bytes each
// process causes to be written to storage (/proc/<pid>/io write_bytes:
// page write-back and fsyncs), scaled to a day. The shape is a home
// fleet on one machine: apd serve and APD_WEAR_DEVICES (default 10)
// release builds of apd-publish, each with every sensor available here
// at a 10 s interval, the aggregator acknowledging; counted over
// APD_WEAR_DURATION (default 10m) after the first tick, so the files'
// creation is not in the figure.
//
//	APD_WEAR_DURATION=10m go test -run '^$' -bench SDCardWear -benchtime 1x -timeout 30m ./internal/bench/
func BenchmarkSDCardWear(b *testing.B) {
	duration := envDuration(b, "APD_WEAR_DURATION", 10*time.Minute)
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
		srv, mqttAddr, _ := startServe(b, apd)
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
		// Past the first tick: spools and series made, the steady state.
		time.Sleep(time.Until(time.Now().Truncate(10 * time.Second).Add(12 * time.Second)))
		serveStart := writeBytes(b, srv.Process.Pid)
		pubStart := make([]int64, len(pubs))
		for d, p := range pubs {
			pubStart[d] = writeBytes(b, p.Process.Pid)
		}
		start := time.Now()
		time.Sleep(duration) // what is measured: the processes running
		wall := time.Since(start)
		perDay := func(n int64) float64 { return float64(n) / 1e6 * (24 * time.Hour).Seconds() / wall.Seconds() }
		serve := perDay(writeBytes(b, srv.Process.Pid) - serveStart)
		var pub []float64
		for d, p := range pubs {
			pub = append(pub, perDay(writeBytes(b, p.Process.Pid)-pubStart[d]))
			_ = p.Process.Signal(syscall.SIGTERM)
			if err := p.Wait(); err != nil {
				b.Errorf("apd-publish: %v", err)
			}
		}
		slices.Sort(pub)
		b.ReportMetric(serve, "serve-MB/day")
		b.ReportMetric(pub[len(pub)/2], "publish-median-MB/day")
		b.ReportMetric(pub[len(pub)-1], "publish-max-MB/day")
		b.Logf("over %s, %d devices: apd serve %.1f MB/day (target ≤ %d), apd-publish median %.1f, highest %.1f MB/day (target ≤ %d)",
			wall.Round(time.Second), devices, serve, wearTargetServeMBPerDay, pub[len(pub)/2], pub[len(pub)-1], wearTargetPublishMBPerDay)
	}
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
