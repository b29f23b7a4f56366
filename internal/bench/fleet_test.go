package bench

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/fleetsim"
	"github.com/apd-telemetry/apd/internal/testutil"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// The fleet simulator: the shape of SPEC §9 — N devices, each its own
// MQTT connection, S sensors, every device publishing on the same
// clock-aligned tick (spread over about a second, as real clocks are),
// QoS 1, v1 payloads with seq — against apd serve, and the same traffic
// against Mosquitto alone (routing to one subscriber) as the reference.
//
// APD_FLEET=1000x10 sets devices × sensors (default 1000x10),
// APD_FLEET_TICKS the ticks (default 6), APD_FLEET_INTERVAL the tick
// (default 10s).

type fleetShape struct {
	devices, sensors, ticks int
	interval                time.Duration
}

func fleetFromEnv(b *testing.B) fleetShape {
	f := fleetShape{devices: 1000, sensors: 10, ticks: 6, interval: 10 * time.Second}
	if v := os.Getenv("APD_FLEET"); v != "" {
		d, s, ok := strings.Cut(v, "x")
		var err1, err2 error
		f.devices, err1 = strconv.Atoi(d)
		f.sensors, err2 = strconv.Atoi(s)
		if !ok || err1 != nil || err2 != nil {
			b.Fatalf("APD_FLEET=%q: want DEVICESxSENSORS", v)
		}
	}
	if v := os.Getenv("APD_FLEET_TICKS"); v != "" {
		f.ticks, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("APD_FLEET_INTERVAL"); v != "" {
		f.interval, _ = time.ParseDuration(v)
	}
	return f
}

// fleetRun is what one run measured.
type fleetRun struct {
	readings  int
	cpu       time.Duration   // of the server processes, over the ticks and their acknowledgement
	rssMaxKiB int64           // the largest of theirs
	acked     int             // readings covered by an $ack
	latencies []time.Duration // publish → $ack, one per acknowledged reading
}

// runFleet connects the devices (fo: the broker or a cluster's nodes,
// with or without acknowledgements), runs the ticks and waits for the
// acknowledgements (fo.Acks) or for the subscriber to have received every
// reading (got), sampling the CPU and memory of the server processes.
func runFleet(b *testing.B, fo fleetsim.Options, f fleetShape, pids []int, got *atomic.Int64) fleetRun {
	b.Helper()
	fo.Devices, fo.Sensors = f.devices, f.sensors
	fleet, err := fleetsim.Connect(fo)
	if err != nil {
		b.Fatal(err)
	}
	defer fleet.Close()

	var rssMax atomic.Int64
	stopSampling := make(chan struct{})
	go func() {
		for {
			for _, pid := range pids {
				if kib := rssKiB(b, pid); kib > rssMax.Load() {
					rssMax.Store(kib)
				}
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	defer close(stopSampling)
	cpu := func() time.Duration {
		var sum time.Duration
		for _, pid := range pids {
			sum += cpuTime(b, pid)
		}
		return sum
	}

	// Ticks aligned to the clock, like apd-publish's.
	first := time.Now().Truncate(f.interval).Add(f.interval)
	time.Sleep(time.Until(first) - 50*time.Millisecond) // the schedule: CPU counted from just before the first tick
	cpu0 := cpu()
	for tick := range f.ticks {
		fleet.Tick(first.Add(time.Duration(tick)*f.interval), time.Second)
	}
	total := f.devices * f.sensors * f.ticks
	done := func() int {
		if fo.Acks {
			return fleet.Acked()
		}
		return int(got.Load())
	}
	// What is not done within the deadline counts against acked-fraction.
	testutil.Eventually(f.interval+60*time.Second, func() bool { return done() >= total })
	return fleetRun{readings: total, cpu: cpu() - cpu0, rssMaxKiB: rssMax.Load(),
		acked: done(), latencies: fleet.Latencies()}
}

// startMosquitto runs Debian's mosquitto on a free port with limits high
// enough for the fleet, or skips.
// ok is false when mosquitto is not installed.
func startMosquitto(b *testing.B) (addr string, pid int, ok bool) {
	b.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/mosquitto"); err != nil {
			return "", 0, false
		}
		bin = "/usr/sbin/mosquitto"
	}
	// A port chosen before: mosquitto cannot be told port 0 and say
	// which it bound.
	addr = testutil.FreeAddr(b)
	_, port, _ := strings.Cut(addr, ":")
	conf := filepath.Join(b.TempDir(), "mosquitto.conf")
	_ = os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\nmax_inflight_messages 0\npersistence false\nlog_type error\n"), 0o600)
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testutil.WaitFor(b, "mosquitto", 10*time.Second, func() bool {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("probe"))
		tok := c.Connect()
		ok := tok.WaitTimeout(time.Second) && tok.Error() == nil
		if ok {
			c.Disconnect(0)
		}
		return ok
	})
	return addr, cmd.Process.Pid, true
}

// BenchmarkFleet runs the fleet against apd serve and, on the same
// traffic, against Mosquitto routing it to one subscriber; it reports
// server CPU per reading for both, their ratio, apd's RSS and its
// publish→$ack latency. APD_FLEET_STORE=postgres stores into a
// throwaway PostgreSQL on this machine (fsync on) instead of the file;
// the server's CPU is then apd's alone, PostgreSQL's beside it.
//
//	APD_FLEET=1000x10 go test -run '^$' -bench Fleet -benchtime 1x -timeout 30m ./internal/bench/
func BenchmarkFleet(b *testing.B) {
	f := fleetFromEnv(b)
	bin := buildApd(b)
	var serveArgs []string
	if os.Getenv("APD_FLEET_STORE") == "postgres" {
		pg := testutil.StartPostgres(b, "fsync=on", "synchronous_commit=on", "full_page_writes=on")
		serveArgs = []string{"--store", pg.NewDatabase(b)}
	}
	for range b.N {
		// Mosquitto alone: the reference for routing the same traffic.
		ref, haveRef := mosquittoReference(b, f)
		// apd's broker alone (mochi with apd's hooks and ACL, nothing
		// stored): what of apd serve's cost is the broker's.
		brk := brokerReference(b, bin, f)
		brkPer := brk.cpu / time.Duration(brk.readings)
		b.ReportMetric(float64(brkPer.Nanoseconds())/1000, "broker-µs/reading")
		b.ReportMetric(float64(brk.rssMaxKiB)/1024, "broker-RSS-MiB")
		b.ReportMetric(float64(brk.acked)/float64(brk.readings), "broker-delivered-fraction")

		srv, addr, _ := startServeOn(b, bin, b.TempDir(), serveArgs...)
		run := runFleet(b, fleetsim.Options{Broker: addr, Acks: true}, f, []int{srv.Process.Pid}, nil)

		apdPer := run.cpu / time.Duration(run.readings)
		b.ReportMetric(float64(apdPer.Nanoseconds())/1000, "apd-µs/reading")
		b.ReportMetric(float64(run.rssMaxKiB)/1024, "apd-RSS-MiB")
		b.ReportMetric(float64(fleetsim.Percentile(run.latencies, 0.5).Milliseconds()), "ack-p50-ms")
		b.ReportMetric(float64(fleetsim.Percentile(run.latencies, 0.99).Milliseconds()), "ack-p99-ms")
		b.ReportMetric(float64(run.acked)/float64(run.readings), "acked-fraction")
		if !haveRef {
			continue
		}
		refPer := ref.cpu / time.Duration(ref.readings)
		b.ReportMetric(float64(refPer.Nanoseconds())/1000, "mosquitto-µs/reading")
		if refPer > 0 {
			b.ReportMetric(float64(apdPer)/float64(refPer), "cpu-ratio")
		}
		if refPer > 0 {
			b.ReportMetric(float64(brkPer)/float64(refPer), "broker-cpu-ratio")
		}
		b.ReportMetric(float64(ref.rssMaxKiB)/1024, "mosquitto-RSS-MiB")
		b.ReportMetric(float64(ref.acked)/float64(ref.readings), "mosquitto-delivered-fraction")
	}
}

// mosquittoReference runs the fleet against Mosquitto routing it to one
// subscriber, or says (once) that there is no reference without it.
func mosquittoReference(b *testing.B, f fleetShape) (fleetRun, bool) {
	b.Helper()
	maddr, mpid, ok := startMosquitto(b)
	if !ok {
		b.Log("mosquitto not installed (apt-get install mosquitto): apd alone, no reference figures")
		return fleetRun{}, false
	}
	return subscribedRun(b, maddr, mpid, f), true
}

// brokerReference runs the fleet against apd broker routing it to one
// subscriber, as mosquittoReference does against Mosquitto.
func brokerReference(b *testing.B, bin string, f fleetShape) fleetRun {
	b.Helper()
	cmd := exec.Command(bin, "broker", "--data", b.TempDir(), "--mqtt-addr", anyPort)
	a := startApd(b, cmd, "apd broker running")
	return subscribedRun(b, a["mqtt"], cmd.Process.Pid, f)
}

// subscribedRun runs the fleet against the broker at addr (process pid)
// with one subscriber to every reading, counting what it receives.
func subscribedRun(b *testing.B, addr string, pid int, f fleetShape) fleetRun {
	b.Helper()
	var got atomic.Int64
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("aggregator").SetOrderMatters(false))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(0)
	sub.Subscribe("apd/+/+", 1, func(_ paho.Client, m paho.Message) {
		if !strings.HasSuffix(m.Topic(), "$status") {
			got.Add(1)
		}
	}).Wait()
	return runFleet(b, fleetsim.Options{Broker: addr}, f, []int{pid}, &got)
}

// BenchmarkFleetNATS runs the fleet through a three-node NATS cluster
// (JetStream, the MQTT gateway on each node; the devices spread over the
// nodes) into two apd aggregate --source nats://… on one PostgreSQL (fsync
// on), everything on this machine. It reports the aggregators' CPU per
// reading (both together) beside the NATS nodes' (all three), the largest
// RSS of each kind and the publish→$ack latency.
//
//	APD_FLEET=1000x10 go test -run '^$' -bench FleetNATS -benchtime 1x -timeout 30m ./internal/bench/
func BenchmarkFleetNATS(b *testing.B) {
	f := fleetFromEnv(b)
	bin := buildApd(b)
	for range b.N {
		cluster := testutil.StartNATSCluster(b, 3)
		pg := testutil.StartPostgres(b, "fsync=on", "synchronous_commit=on", "full_page_writes=on")
		url := pg.NewDatabase(b)
		var aggPids, natsPids []int
		var mqtt []string
		for _, n := range cluster.Nodes {
			natsPids = append(natsPids, n.Pid())
			mqtt = append(mqtt, n.MQTTAddr)
		}
		var aggHTTP []string
		for _, id := range []string{"agg-1", "agg-2"} {
			agg, httpAddr := startAggregate(b, bin, "--source", cluster.ClientURLs(), "--broker", cluster.MQTTURLs(), "--store", url, "--client-id", id)
			aggPids, aggHTTP = append(aggPids, agg.Process.Pid), append(aggHTTP, httpAddr)
		}
		testutil.WaitFor(b, "the partitions divided", 30*time.Second, func() bool {
			for _, a := range aggHTTP {
				if len(heldPartitions(b, a)) != natsPartitions/len(aggHTTP) {
					return false
				}
			}
			return true
		})
		var natsCPU0 time.Duration
		for _, pid := range natsPids {
			natsCPU0 += cpuTime(b, pid)
		}
		run := runFleet(b, fleetsim.Options{Brokers: mqtt, Acks: true}, f, aggPids, nil)
		var natsCPU time.Duration
		for _, pid := range natsPids {
			natsCPU += cpuTime(b, pid)
		}
		natsCPU -= natsCPU0
		b.ReportMetric(float64((run.cpu/time.Duration(run.readings)).Nanoseconds())/1000, "apd-µs/reading")
		b.ReportMetric(float64((natsCPU/time.Duration(run.readings)).Nanoseconds())/1000, "nats-µs/reading")
		b.ReportMetric(float64(run.rssMaxKiB)/1024, "apd-RSS-MiB")
		b.ReportMetric(float64(fleetsim.Percentile(run.latencies, 0.5).Milliseconds()), "ack-p50-ms")
		b.ReportMetric(float64(fleetsim.Percentile(run.latencies, 0.99).Milliseconds()), "ack-p99-ms")
		b.ReportMetric(float64(run.acked)/float64(run.readings), "acked-fraction")
	}
}

// natsPartitions is how many partitions apd aggregate --source gives
// the stream by default (--partitions).
const natsPartitions = 8

// startAggregate runs apd aggregate with args, on an HTTP port it picks,
// and returns it and that address once it is ready.
func startAggregate(b *testing.B, bin string, args ...string) (*exec.Cmd, string) {
	b.Helper()
	cmd := exec.Command(bin, append([]string{"aggregate", "--data", b.TempDir(), "--http-addr", anyPort}, args...)...)
	httpAddr := strings.TrimPrefix(startApd(b, cmd, "apd aggregate running")["http"], "http://")
	testutil.WaitReady(b, httpAddr, 30*time.Second)
	return cmd, httpAddr
}

// heldPartitions asks the aggregator at httpAddr which stream partitions
// it reads; none while it does not answer.
func heldPartitions(b *testing.B, httpAddr string) []int {
	var held struct {
		Partitions []int `json:"partitions"`
	}
	resp, err := http.Get("http://" + httpAddr + "/api/v1/held")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&held); err != nil {
		b.Fatalf("%s /api/v1/held: %v", httpAddr, err)
	}
	return held.Partitions
}
