package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procField returns the number after "key:" in /proc/<pid>/<file>.
func procField(b *testing.B, pid int, file, key string) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/%s", key, pid, file)
	return 0
}

// rssKiB returns a process's resident set size.
func rssKiB(b *testing.B, pid int) int64 { return procField(b, pid, "status", "VmRSS") }

// writeBytes returns the bytes a process caused to be written to storage
// (pages dirtied less those dropped unwritten: procio.Counters.Written).
func writeBytes(b *testing.B, pid int) int64 { return int64(ioCounters(b, pid).Written()) }

// BenchmarkPublisherFootprint runs the release build of apd-publish with
// every built-in sensor at a 10 s interval against a real apd serve for
// APD_FOOTPRINT_DURATION (default 10m; make footprint), sampling its
// resident memory every interval. It reports the median and highest RSS,
// the CPU used as a percentage of one core over the whole run, and the
// bytes written to storage per minute (what wears a Pi's SD card).
func BenchmarkPublisherFootprint(b *testing.B) {
	duration := 10 * time.Minute
	if s := os.Getenv("APD_FOOTPRINT_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("APD_FOOTPRINT_DURATION: %v", err)
		}
		duration = d
	}
	_, mqttAddr, _ := startServe(b, buildApd(b))
	publish := buildRelease(b, "apd-publish")
	for i := 0; i < b.N; i++ {
		pub := exec.Command(publish, "--broker", "tcp://"+mqttAddr, "--interval", "10s",
			"--spool", filepath.Join(b.TempDir(), "spool.db"), "--host", "footprint", "--log-level", "warn")
		pub.Stderr = os.Stderr
		if err := pub.Start(); err != nil {
			b.Fatal(err)
		}
		pid := pub.Process.Pid
		startCPU, startWrites, start := cpuTime(b, pid), writeBytes(b, pid), time.Now()
		var rss []int64
		for time.Since(start) < duration {
			time.Sleep(10 * time.Second) // the sampling interval
			rss = append(rss, rssKiB(b, pid))
		}
		cpu, writes, wall := cpuTime(b, pid)-startCPU, writeBytes(b, pid)-startWrites, time.Since(start)
		_ = pub.Process.Signal(syscall.SIGTERM)
		if err := pub.Wait(); err != nil {
			b.Fatalf("apd-publish: %v", err)
		}
		slices.Sort(rss)
		b.ReportMetric(float64(rss[len(rss)/2])/1024, "rss-median-MiB")
		b.ReportMetric(float64(rss[len(rss)-1])/1024, "rss-max-MiB")
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
		b.ReportMetric(float64(writes)/1024/wall.Minutes(), "disk-write-KiB/min")
	}
}
