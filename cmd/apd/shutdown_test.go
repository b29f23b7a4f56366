package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	bolt "go.etcd.io/bbolt"
)

// load publishes readings with seqs 1, 2, … for each of hosts, QoS 1, as
// fast as the broker takes them, until stop is closed or the connection
// fails. wait waits for the publishers to end and returns each host's
// last seq the broker acknowledged.
func load(t *testing.T, broker string, hosts []string, stop <-chan struct{}) (wait func() map[string]uint64) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]uint64{}
	for _, h := range hosts {
		c, err := mqttc.Dial(mqttc.Options{URL: broker, ClientID: "load-" + h, QoS: 1, ConnectTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			ctx := context.Background()
			st, _ := json.Marshal(schema.Status{State: "online", FirstSeq: 1, Spool: "spool" + h})
			_ = c.Publish(ctx, "apd/"+h+"/$status", st, true)
			start := time.Now().Add(-time.Hour).Truncate(time.Second)
			for seq := uint64(1); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				r := schema.Reading{Host: h, Sensor: "s", Time: start.Add(time.Duration(seq) * time.Millisecond), Seq: seq, Value: json.RawMessage(fmt.Sprint(seq))}
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := c.Publish(pctx, "apd/"+h+"/s", r.AppendJSON(nil, schema.WithIdentity), false)
				cancel()
				if err != nil {
					return
				}
				mu.Lock()
				acked[h] = seq
				mu.Unlock()
			}
		}()
	}
	return func() map[string]uint64 {
		wg.Wait()
		return acked
	}
}

// storedWatermarks reads each host's watermark from a stopped aggregator's
// database.
func storedWatermarks(t *testing.T, db string) map[string]uint64 {
	t.Helper()
	r := run(t, nil, "apd", "hosts", "--db", db, "--json")
	if r.code != 0 {
		t.Fatalf("apd hosts: %s", r.stderr)
	}
	var hosts []struct {
		Host      string `json:"host"`
		Watermark uint64 `json:"watermark"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &hosts); err != nil {
		t.Fatalf("apd hosts --json: %v\n%s", err, r.stdout)
	}
	out := map[string]uint64{}
	for _, h := range hosts {
		out[h.Host] = h.Watermark
	}
	return out
}

// waitStored waits until every load host's watermark on the apd HTTP API
// at addr is at least want[host].
func waitStored(t *testing.T, addr string, want map[string]uint64) {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf("watermarks of at least %v", want), 20*time.Second, func() bool {
		var hosts []struct {
			Host      string `json:"host"`
			Watermark uint64 `json:"watermark"`
		}
		if err := json.Unmarshal([]byte(httpGet(t, "http://"+addr+"/api/v1/hosts")), &hosts); err != nil {
			return false
		}
		stored := map[string]uint64{}
		for _, h := range hosts {
			stored[h.Host] = h.Watermark
		}
		for h, n := range want {
			if stored[h] < n {
				return false
			}
		}
		return true
	})
}

// each is n for every load host.
func each(n uint64) map[string]uint64 {
	m := map[string]uint64{}
	for _, h := range loadHosts {
		m[h] = n
	}
	return m
}

// checkAcks checks that the retained $ack of every load host on broker
// equals its stored watermark (above 0), as a new subscriber reads them:
// they arrive after the subscription, within 10 s.
func checkAcks(t *testing.T, what, broker string, stored map[string]uint64) {
	t.Helper()
	for _, h := range loadHosts {
		if stored[h] == 0 {
			t.Errorf("%s: host %s has nothing stored", what, h)
		}
	}
	c, err := mqttc.Dial(mqttc.Options{URL: broker, ClientID: "ack-reader", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	acked := map[string]uint64{}
	for _, h := range loadHosts {
		err := c.Subscribe("apd/"+h+"/$ack", func(_ string, p []byte) {
			var a schema.Ack
			_ = json.Unmarshal(p, &a)
			mu.Lock()
			acked[h] = a.Seq
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	equal := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range loadHosts {
			if acked[h] != stored[h] {
				return false
			}
		}
		return true
	}
	if testutil.Eventually(10*time.Second, equal) {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range loadHosts {
		if acked[h] != stored[h] {
			t.Errorf("%s: host %s stored watermark %d, retained $ack %d; want equal", what, h, stored[h], acked[h])
		}
	}
}

// brokerStateAcks reads the retained acknowledgements a stopped broker
// kept in its state (the retained bucket of broker.db.inflight).
func brokerStateAcks(t *testing.T, path string, hosts []string) map[string]uint64 {
	t.Helper()
	db, err := bolt.Open(path+".inflight", 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]uint64{}
	_ = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("retained"))
		for _, h := range hosts {
			var m storage.Message
			if v := b.Get([]byte("apd/" + h + "/$ack")); v != nil && json.Unmarshal(v, &m) == nil {
				var a schema.Ack
				_ = json.Unmarshal(m.Payload, &a)
				out[h] = a.Seq
			}
		}
		return nil
	})
	return out
}

// sigterm stops p with SIGTERM; it must exit cleanly within 15 s.
func sigterm(t *testing.T, p *testutil.Process) {
	t.Helper()
	if err := p.Stop(15 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, p.Log)
	}
}

var loadHosts = []string{"l1", "l2", "l3", "l4"}

// TestServeShutdownKeepsLastAck: SIGTERM under load commits what is
// queued, and after a restart the retained $ack on the wire equals the
// stored watermark. (apd serve does not keep its $acks in the broker's
// state file: it publishes every stored watermark again at start.)
func TestServeShutdownKeepsLastAck(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	stop := make(chan struct{})
	wait := load(t, "tcp://"+s.mqtt, loadHosts, stop)
	waitStored(t, s.http, each(50)) // under load
	sigterm(t, s.proc)
	close(stop)
	wait()
	for _, line := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(line, "db file not open") || strings.Contains(line, "publish acknowledgement") {
			t.Errorf("shutdown log: %s", line)
		}
	}
	stored := storedWatermarks(t, filepath.Join(s.data, "apd.db"))
	for h, seq := range brokerStateAcks(t, filepath.Join(s.data, "broker.db"), loadHosts) {
		t.Errorf("host %s: the broker's state file kept apd serve's $ack %d", h, seq)
	}
	again := startServeIn(t, s.data)
	checkAcks(t, "after restart", "tcp://"+again.mqtt, stored)
}

// TestAggregateShutdownKeepsLastAck: the same for apd aggregate against
// apd broker: after SIGTERM the broker (still running) holds retained
// acknowledgements equal to the stored watermarks.
func TestAggregateShutdownKeepsLastAck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	brk, m := testutil.StartProcess(t, exec.Command(filepath.Join(binDir, "apd"), "broker", "--data", filepath.Join(dir, "broker"), "--mqtt-addr", anyPort),
		testutil.LogLine("apd broker running"), 20*time.Second)
	defer func() { _ = brk.Stop(10 * time.Second) }()
	broker := "tcp://" + testutil.ParseLogLine(m[0])["mqtt"]
	// startAggregate runs apd aggregate and returns it once ready, with
	// the address of its HTTP API.
	startAggregate := func() (*testutil.Process, string) {
		agg, m := testutil.StartProcess(t, exec.Command(filepath.Join(binDir, "apd"), "aggregate", "--broker", broker,
			"--data", filepath.Join(dir, "agg"), "--http-addr", anyPort), testutil.LogLine("apd aggregate running"), 20*time.Second)
		addr := strings.TrimPrefix(testutil.ParseLogLine(m[0])["http"], "http://")
		if err := testutil.Ready(addr, 10*time.Second); err != nil {
			t.Fatalf("%v: %s", err, agg.Log)
		}
		return agg, addr
	}
	agg, addr := startAggregate()
	stop := make(chan struct{})
	wait := load(t, broker, loadHosts, stop)
	waitStored(t, addr, each(50)) // under load
	sigterm(t, agg)
	close(stop)
	published := wait()
	stored := storedWatermarks(t, filepath.Join(dir, "agg", "apd.db"))
	checkAcks(t, "after SIGTERM", broker, stored)

	// Restarted, it takes the rest of its session's queue (all the
	// broker acknowledged) and acknowledges up to the new watermarks.
	agg, addr = startAggregate()
	waitStored(t, addr, published)
	sigterm(t, agg)
	stored = storedWatermarks(t, filepath.Join(dir, "agg", "apd.db"))
	checkAcks(t, "after restart", broker, stored)
}
