package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store/engine"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
	paho "github.com/eclipse/paho.mqtt.golang"
	bolt "go.etcd.io/bbolt"
)

// buildApd builds the apd binary into a temporary directory.
func buildApd(b *testing.B) string { return buildRelease(b, "apd") }

// buildRelease builds cmd/<name> the way make cross does (stripped,
// trimmed paths) into a temporary directory.
func buildRelease(b *testing.B, name string) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/apd-telemetry/apd/cmd/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v: %s", name, err, out)
	}
	return bin
}

// anyPort asks for a loopback port the kernel picks: apd says which in
// the line it logs once running.
const anyPort = "127.0.0.1:0"

// startServe runs apd serve on loopback ports it picks until the
// benchmark ends and returns it once it is ready.
func startServe(b *testing.B, bin string) (srv *exec.Cmd, mqttAddr, httpAddr string) {
	return startServeOn(b, bin, b.TempDir())
}

// startServeOn is startServe on an existing data directory.
func startServeOn(b *testing.B, bin, data string, args ...string) (srv *exec.Cmd, mqttAddr, httpAddr string) {
	b.Helper()
	srv = exec.Command(bin, append([]string{"serve", "--data", data, "--mqtt-addr", anyPort, "--http-addr", anyPort}, args...)...)
	a := startApd(b, srv, "apd serve running")
	mqttAddr, httpAddr = a["mqtt"], strings.TrimPrefix(a["http"], "http://")
	testutil.WaitReady(b, httpAddr, 10*time.Second)
	return srv, mqttAddr, httpAddr
}

// startApd starts an apd command (cmd, told to listen on anyPort) that
// runs until the benchmark ends, and returns the attributes of the line
// it logs once running (msg), which name the addresses it bound. That
// line is logged at info level, so apd runs at it; what it logs above
// info is passed on when it stops, as it was on stderr under --log-level
// warn.
func startApd(b *testing.B, cmd *exec.Cmd, msg string) map[string]string {
	b.Helper()
	p, m := testutil.StartProcess(b, cmd, testutil.LogLine(msg), 30*time.Second)
	b.Cleanup(func() {
		_ = p.Stop(time.Minute)
		for _, line := range strings.Split(p.Log.String(), "\n") {
			if line != "" && !strings.Contains(line, " level=INFO ") && !strings.Contains(line, " level=DEBUG ") {
				b.Logf("%s: %s", filepath.Base(cmd.Path), line)
			}
		}
	})
	return testutil.ParseLogLine(m[0])
}

// cpuTime returns the user+system CPU time of a process from /proc.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// utime and stime are the 14th and 15th fields of the line; count from
	// after the parenthesised command name, which may contain spaces.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// storedTotal reads apd_stored_total, written as a float: a million is
// 1e+06.
func storedTotal(b *testing.B, httpAddr string) uint64 {
	b.Helper()
	return uint64(testutil.ScrapeMetrics(b, "http://"+httpAddr+"/metrics")["apd_stored_total"])
}

const (
	publishers = 8
	perOp      = 100_000 // readings per benchmark iteration
	window     = 256     // unacknowledged QoS 1 publishes per client
)

// BenchmarkIngestEndToEnd drives a real apd serve process: publishers in
// this process send QoS 1 readings over loopback TCP to its embedded
// broker; an iteration ends when the server reports all of them committed.
// It reports readings/s and the server process's CPU time per reading.
func BenchmarkIngestEndToEnd(b *testing.B) {
	srv, mqttAddr, httpAddr := startServe(b, buildApd(b))
	clients := make([]paho.Client, publishers)
	for i := range clients {
		o := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(fmt.Sprintf("bench-%d", i))
		clients[i] = paho.NewClient(o)
		if tok := clients[i].Connect(); tok.Wait() && tok.Error() != nil {
			b.Fatal(tok.Error())
		}
		defer clients[i].Disconnect(100)
	}
	// Recent timestamps: the aggregator rejects readings outside its window.
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var seq, total uint64
	var cpu, wall time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		startCPU, start := cpuTime(b, srv.Process.Pid), time.Now()
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inflight := make(chan paho.Token, window)
				host := fmt.Sprintf("bench-%d", c)
				for i := 0; i < perOp/publishers; i++ {
					s := seq + uint64(i) + 1
					r := schema.Reading{Host: host, Sensor: "temperature", Seq: s,
						Time:  base.Add(time.Duration(s) * 10 * time.Millisecond),
						Value: schema.Quantity{Magnitude: 20 + float64(i%100)/10, Unit: "degC"}.Raw()}
					if len(inflight) == window {
						(<-inflight).Wait()
					}
					inflight <- clients[c].Publish("apd/"+host+"/temperature", 1, false, r.AppendJSON(nil, schema.WithIdentity))
				}
				for len(inflight) > 0 {
					(<-inflight).Wait()
				}
			}()
		}
		wg.Wait()
		seq += perOp / publishers
		total += perOp
		testutil.WaitFor(b, "every reading stored", 5*time.Minute, func() bool { return storedTotal(b, httpAddr) >= total })
		wall += time.Since(start)
		cpu += cpuTime(b, srv.Process.Pid) - startCPU
	}
	b.StopTimer()
	n := float64(b.N * perOp)
	b.ReportMetric(n/wall.Seconds(), "readings/s")
	b.ReportMetric(float64(cpu.Microseconds())/n, "server-cpu-µs/reading")
}

// synthetic fills a store with hosts×perHost temperature readings at 10 s
// intervals: a slow random walk with one decimal, like a DHT22.
func synthetic(b *testing.B, path string, hosts, perHost int) {
	b.Helper()
	syntheticSeries(b, path, hosts, []string{"temperature"}, perHost, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 10*time.Second)
}

// syntheticSeries writes perHost readings of each sensor of each host
// (pi-000 …), one every interval from start: random walks of one
// decimal, each host and sensor its own series.
func syntheticSeries(b *testing.B, path string, hosts int, sensors []string, perHost int, start time.Time, interval time.Duration) {
	b.Helper()
	st, err := engine.Open(path, engine.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	fillSynthetic(b, st, hosts, sensors, perHost, start, interval)
}

// fillSynthetic commits syntheticSeries's readings into st.
func fillSynthetic(b *testing.B, st store.Store, hosts int, sensors []string, perHost int, start time.Time, interval time.Duration) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for h := 0; h < hosts; h++ {
		host := fmt.Sprintf("pi-%03d", h)
		for _, sensor := range sensors {
			v := 20.0
			var batch store.Batch
			for i := 0; i < perHost; i++ {
				v += (rng.Float64() - 0.5) * 0.2
				batch.Readings = append(batch.Readings, schema.Reading{Host: host, Sensor: sensor,
					Time: start.Add(time.Duration(i) * interval), Seq: uint64(i + 1),
					Value: json.RawMessage(strconv.FormatFloat(float64(int(v*10))/10, 'f', 1, 64))})
				if len(batch.Readings) == 20000 {
					if _, err := st.Commit(&batch); err != nil {
						b.Fatal(err)
					}
					batch.Reset()
				}
			}
			if _, err := st.Commit(&batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	if s, ok := st.(store.Sealer); ok {
		if err := s.SealAll(); err != nil {
			b.Fatal(err)
		}
	}
}

// syntheticStore opens, read-only, a database of readings/100,000 hosts
// × 100,000 readings; it is closed when the benchmark ends.
func syntheticStore(b *testing.B, readings int) store.Store {
	b.Helper()
	path := filepath.Join(b.TempDir(), "apd.db")
	synthetic(b, path, max(readings/100_000, 1), 100_000)
	st, err := engine.Open(path, engine.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// BenchmarkBytesPerReading reports the database size per stored numeric
// reading, as written and after a bbolt compaction.
func BenchmarkBytesPerReading(b *testing.B) {
	const hosts, perHost = 10, 100_000
	for it := 0; it < b.N; it++ {
		dir := b.TempDir()
		path := filepath.Join(dir, "apd.db")
		synthetic(b, path, hosts, perHost)
		fi, _ := os.Stat(path)
		src, err := bolt.Open(path, 0o644, nil)
		if err != nil {
			b.Fatal(err)
		}
		dst, err := bolt.Open(filepath.Join(dir, "compact.db"), 0o644, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := bolt.Compact(dst, src, 64<<20); err != nil {
			b.Fatal(err)
		}
		src.Close()
		dst.Close()
		cfi, _ := os.Stat(filepath.Join(dir, "compact.db"))
		b.ReportMetric(float64(fi.Size())/float64(hosts*perHost), "bytes/reading")
		b.ReportMetric(float64(cfi.Size())/float64(hosts*perHost), "compacted-bytes/reading")
	}
}

// BenchmarkQueryOneHour measures one hour of one sensor of one host (360
// readings at 10 s) from a database of 1,000,000 readings, or of
// APD_QUERY_READINGS (the target's 50,000,000: 500 hosts; building it
// takes a few minutes):
//
//	APD_QUERY_READINGS=50000000 go test -run '^$' -bench QueryOneHour -benchtime 200x -timeout 30m ./internal/bench/
func BenchmarkQueryOneHour(b *testing.B) {
	readings := 1_000_000
	if n, err := strconv.Atoi(os.Getenv("APD_QUERY_READINGS")); err == nil && n > 0 {
		readings = n
	}
	st := syntheticStore(b, readings)
	since := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	q := store.Query{Sensor: "temperature", Hosts: []string{"pi-005"}, Since: since, Until: since.Add(time.Hour)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		if err := st.Scan(q, func(*schema.Reading) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != 360 {
			b.Fatalf("got %d readings", n)
		}
	}
}

// BenchmarkScanAll reports the rate of a full scan, every reading decoded.
func BenchmarkScanAll(b *testing.B) {
	st := syntheticStore(b, 1_000_000)
	b.ResetTimer()
	start := time.Now()
	total := 0
	for i := 0; i < b.N; i++ {
		if err := st.Scan(store.Query{Sensor: "temperature"}, func(*schema.Reading) error { total++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "readings/s")
}
