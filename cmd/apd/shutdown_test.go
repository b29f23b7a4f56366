package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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
// fails.
func load(t *testing.T, broker string, hosts []string, stop <-chan struct{}) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
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
			}
		}()
	}
	return &wg
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

// retainedAcks reads the retained acknowledgements of hosts from a
// running broker.
func retainedAcks(t *testing.T, broker string, hosts []string) map[string]uint64 {
	t.Helper()
	c, err := mqttc.Dial(mqttc.Options{URL: broker, ClientID: "ack-reader", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	out := map[string]uint64{}
	for _, h := range hosts {
		err := c.Subscribe("apd/"+h+"/$ack", func(_ string, p []byte) {
			var a schema.Ack
			_ = json.Unmarshal(p, &a)
			mu.Lock()
			out[h] = a.Seq
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // retained messages follow the subscription at once
	mu.Lock()
	defer mu.Unlock()
	return out
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

func sigterm(t *testing.T, cmd *exec.Cmd, log fmt.Stringer) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, log)
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("no exit within 15 s of SIGTERM\n%s", log)
	}
}

var loadHosts = []string{"l1", "l2", "l3", "l4"}

func checkAcks(t *testing.T, what string, stored, acked map[string]uint64) {
	t.Helper()
	for _, h := range loadHosts {
		if stored[h] == 0 || acked[h] != stored[h] {
			t.Errorf("%s: host %s stored watermark %d, retained $ack %d; want equal and above 0", what, h, stored[h], acked[h])
		}
	}
}

// TestServeShutdownKeepsLastAck: SIGTERM under load commits what is
// queued, and after a restart the retained $ack on the wire equals the
// stored watermark. (apd serve does not keep its $acks in the broker's
// state file: it publishes every stored watermark again at start.)
func TestServeShutdownKeepsLastAck(t *testing.T) {
	s := startServe(t)
	stop := make(chan struct{})
	wg := load(t, "tcp://"+s.mqtt, loadHosts, stop)
	time.Sleep(1500 * time.Millisecond)
	sigterm(t, s.cmd, s.log)
	close(stop)
	wg.Wait()
	for _, line := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(line, "db file not open") || strings.Contains(line, "publish acknowledgement") {
			t.Errorf("shutdown log: %s", line)
		}
	}
	stored := storedWatermarks(t, filepath.Join(s.data, "apd.db"))
	for h, seq := range brokerStateAcks(t, filepath.Join(s.data, "broker.db"), loadHosts) {
		t.Errorf("host %s: the broker's state file kept apd serve's $ack %d", h, seq)
	}
	again := restartServe(t, s)
	checkAcks(t, "after restart", stored, retainedAcks(t, "tcp://"+again.mqtt, loadHosts))
}

// restartServe starts apd serve again on s's data and addresses.
func restartServe(t *testing.T, s *server) *server {
	t.Helper()
	return startServeOn(t, s.data, s.mqtt, s.http)
}

// TestAggregateShutdownKeepsLastAck: the same for apd aggregate against
// apd broker: after SIGTERM the broker (still running) holds retained
// acknowledgements equal to the stored watermarks.
func TestAggregateShutdownKeepsLastAck(t *testing.T) {
	dir := t.TempDir()
	mqttAddr := testutil.FreeAddr(t)
	var blog testutil.SyncBuffer
	brk := exec.Command(filepath.Join(binDir, "apd"), "broker", "--data", filepath.Join(dir, "broker"), "--mqtt-addr", mqttAddr)
	brk.Stdout, brk.Stderr = &blog, &blog
	if err := brk.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = brk.Process.Signal(syscall.SIGTERM); _ = brk.Wait() }()
	testutil.WaitFor(t, "apd broker", 10*time.Second, func() bool { return strings.Contains(blog.String(), "apd broker running") })
	broker := "tcp://" + mqttAddr
	startAggregate := func() (*exec.Cmd, *testutil.SyncBuffer) {
		httpAddr := testutil.FreeAddr(t)
		var log testutil.SyncBuffer
		agg := exec.Command(filepath.Join(binDir, "apd"), "aggregate", "--broker", broker, "--data", filepath.Join(dir, "agg"), "--http-addr", httpAddr)
		agg.Stdout, agg.Stderr = &log, &log
		if err := agg.Start(); err != nil {
			t.Fatal(err)
		}
		if err := testutil.Ready(httpAddr, 10*time.Second); err != nil {
			t.Fatalf("%v: %s", err, log.String())
		}
		return agg, &log
	}
	agg, log := startAggregate()
	stop := make(chan struct{})
	wg := load(t, broker, loadHosts, stop)
	time.Sleep(1500 * time.Millisecond)
	sigterm(t, agg, log)
	close(stop)
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	stored := storedWatermarks(t, filepath.Join(dir, "agg", "apd.db"))
	checkAcks(t, "after SIGTERM", stored, retainedAcks(t, broker, loadHosts))

	// Restarted, it takes the rest of its session's queue and
	// acknowledges up to the new watermarks.
	agg, log = startAggregate()
	time.Sleep(time.Second)
	sigterm(t, agg, log)
	stored = storedWatermarks(t, filepath.Join(dir, "agg", "apd.db"))
	checkAcks(t, "after restart", stored, retainedAcks(t, broker, loadHosts))
}
