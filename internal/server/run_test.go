package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/server"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// gatedStore passes commits to a real store, or holds each until the
// test opens the gate once it is shut; it says when one waits.
type gatedStore struct {
	store.Store
	shut    atomic.Bool
	waiting chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func newGatedStore(t *testing.T, path string) *gatedStore {
	t.Helper()
	st, err := engine.Open(path, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedStore{Store: st, waiting: make(chan struct{}, 1), gate: make(chan struct{})}
	t.Cleanup(g.open) // a failed test must not leave a commit waiting
	return g
}

func (g *gatedStore) Commit(b *store.Batch) (store.CommitResult, error) {
	if g.shut.Load() {
		select {
		case g.waiting <- struct{}{}:
		default:
		}
		<-g.gate
	}
	return g.Store.Commit(b)
}

func (g *gatedStore) open() { g.once.Do(func() { close(g.gate) }) }

// ackRecorder is a transport whose acknowledgements are recorded, and
// which fails the test if one is sent after it closed.
type ackRecorder struct {
	server.Transport
	t      *testing.T
	mu     sync.Mutex
	last   map[string]uint64
	closed bool
}

func (a *ackRecorder) Acknowledge(topic string, payload []byte) error {
	var ack schema.Ack
	if err := json.Unmarshal(payload, &ack); err != nil {
		a.t.Errorf("acknowledgement %s: %v", payload, err)
	}
	a.mu.Lock()
	if a.closed {
		a.t.Errorf("acknowledgement %s %s after the transport closed", topic, payload)
	}
	a.last[topic] = ack.Seq
	a.mu.Unlock()
	return a.Transport.Acknowledge(topic, payload)
}

func (a *ackRecorder) Close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.Transport.Close()
}

func (a *ackRecorder) lastAck(topic string) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last[topic]
}

// running is a server running in the background, as a command runs it.
type running struct {
	srv     *server.Server
	cancel  context.CancelFunc
	done    chan error
	stopped chan struct{} // closed by Stopping
}

// run runs srv on tr until the test stops it, and returns once the
// server says it is ready.
func run(t *testing.T, srv *server.Server, tr server.Transport) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{srv: srv, cancel: cancel, done: make(chan error, 1), stopped: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		r.done <- srv.Run(ctx, tr, server.RunOptions{Name: "test",
			Started: func() error { close(started); return nil }, Stopping: func() { close(r.stopped) }})
	}()
	t.Cleanup(func() { r.stop(t) })
	select {
	case <-started:
	case err := <-r.done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started within 20 s")
	}
	testutil.WaitFor(t, "ready", 10*time.Second, func() bool { return readyz(srv) == http.StatusOK })
	return r
}

// stop cancels the run and waits for Run to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.done <- err // for a later stop
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s of the cancel")
	}
}

func readyz(srv *server.Server) int {
	resp, err := http.Get(srv.HTTPURL() + "/readyz")
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func newServer(t *testing.T, st store.Store, opts ingest.Options) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{Store: st, HTTPAddr: "127.0.0.1:0", Ingest: opts})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func reading(host string, seq uint64) []byte {
	r := schema.Reading{Host: host, Sensor: "t", Seq: seq, Time: time.Now().UTC().Add(-time.Hour).Truncate(time.Second).Add(time.Duration(seq) * time.Second),
		Value: schema.Quantity{Magnitude: float64(seq), Unit: "degC"}.Raw()}
	return r.AppendJSON(nil, schema.WithIdentity)
}

func dial(t *testing.T, addr, id string) *mqttc.Client {
	t.Helper()
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + addr, ClientID: id, QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var watchers atomic.Int64

// watchAcks subscribes to host's $ack on the broker at addr and returns
// the latest seq seen.
func watchAcks(t *testing.T, addr, host string) func() uint64 {
	t.Helper()
	var last atomic.Uint64
	if err := dial(t, addr, fmt.Sprintf("watcher-%s-%d", host, watchers.Add(1))).Subscribe("apd/"+host+"/$ack", func(_ string, p []byte) {
		var a schema.Ack
		if json.Unmarshal(p, &a) == nil {
			last.Store(a.Seq)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return last.Load
}

func stored(t *testing.T, path, host string) int {
	t.Helper()
	st, err := engine.Open(path, engine.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	if err := st.Scan(store.Query{Hosts: []string{host}}, func(*schema.Reading) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// drainTest runs srv on tr, publishes one reading to the broker at
// brokerAddr (asked once the server runs) and sees it stored and its
// $ack at a subscriber; then it holds the commits, publishes n more (QoS
// 1, all at once), cancels the run while they wait in the queue, and
// checks that the stop committed every one and acknowledged it through
// the transport before closing it.
func drainTest(t *testing.T, srv *server.Server, st *gatedStore, path string, tr *ackRecorder, brokerAddr func() string) {
	t.Helper()
	const n = 20
	r := run(t, srv, tr)
	acked := watchAcks(t, brokerAddr(), "pi")
	publish := dial(t, brokerAddr(), "device")
	ctx := context.Background()
	if err := publish.Publish(ctx, "apd/pi/t", reading("pi", 1), false); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "$ack of seq 1 at a subscriber", 10*time.Second, func() bool { return acked() == 1 })

	st.shut.Store(true)
	for seq := uint64(2); seq <= n+1; seq++ {
		go func() {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_ = publish.Publish(pctx, "apd/pi/t", reading("pi", seq), false) // cut short by the stop
		}()
	}
	// One batch per reading: the first waits in its commit, the others
	// in the queue.
	m := srv.Ingester().Metrics()
	testutil.WaitFor(t, "the readings queued behind a waiting commit", 10*time.Second, func() bool {
		return len(st.waiting) == 1 && m.QueueDepth() == n-1
	})
	r.cancel()
	<-r.stopped
	testutil.WaitFor(t, "not ready while stopping", 10*time.Second, func() bool { return readyz(srv) == http.StatusServiceUnavailable })
	st.open()
	r.stop(t)
	if got := stored(t, path, "pi"); got != n+1 {
		t.Errorf("%d readings stored after the stop, want %d", got, n+1)
	}
	if got := tr.lastAck("apd/pi/$ack"); got != n+1 {
		t.Errorf("last acknowledgement through the transport: seq %d, want %d", got, n+1)
	}
	if code := readyz(srv); code != 0 {
		t.Errorf("the API still answers after Run returned (%d)", code)
	}
}

// TestRunEmbeddedBroker: apd serve's lifecycle in process — a paho client
// publishes to the embedded broker, the reading is stored and its $ack
// arrives; a cancel commits what is queued and acknowledges it through
// the broker before it closes.
func TestRunEmbeddedBroker(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "apd.db")
	st := newGatedStore(t, path)
	srv := newServer(t, st, ingest.Options{MaxBatch: 1})
	embedded := &server.EmbeddedBroker{Options: broker.Options{Addr: "127.0.0.1:0"}}
	tr := &ackRecorder{Transport: embedded, t: t, last: map[string]uint64{}}
	drainTest(t, srv, st, path, tr, func() string { return embedded.Broker().Addr() })
}

// TestRunExternalBroker: apd aggregate's lifecycle in process, on another
// broker (an embedded broker without the ingestion hook, on port 0), alone
// and as a member of a shared subscription group: a paho client
// publishes, the reading is stored and its $ack arrives; a cancel
// commits what the broker delivered, acknowledges it to the broker and
// on $ack, then disconnects.
func TestRunExternalBroker(t *testing.T) {
	t.Parallel()
	for _, share := range []string{"", "apd"} {
		t.Run(fmt.Sprintf("share=%q", share), func(t *testing.T) {
			t.Parallel()
			brk, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { brk.Close() })
			path := filepath.Join(t.TempDir(), "apd.db")
			st := newGatedStore(t, path)
			srv := newServer(t, st, ingest.Options{MaxBatch: 1})
			external := &server.ExternalBroker{Client: mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "apd-aggregator"}, Share: share}
			tr := &ackRecorder{Transport: external, t: t, last: map[string]uint64{}}
			drainTest(t, srv, st, path, tr, brk.Addr)
			// The broker keeps the last $ack for the devices.
			if got := watchAcks(t, brk.Addr(), "pi"); !testutil.Eventually(10*time.Second, func() bool { return got() == 21 }) {
				t.Errorf("retained $ack at the broker: seq %d, want 21", got())
			}
			// It got every reading acknowledged: the session, resumed,
			// brings none of them again before what is published next.
			again := filepath.Join(t.TempDir(), "apd.db")
			st2, err := engine.Open(again, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			srv2 := newServer(t, st2, ingest.Options{})
			r2 := run(t, srv2, &server.ExternalBroker{Client: external.Client, Share: share})
			if err := dial(t, brk.Addr(), "device-2").Publish(context.Background(), "apd/marker/t", reading("marker", 1), false); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, "the next reading stored", 10*time.Second, func() bool { return srv2.Ingester().Metrics().Stored.Value() == 1 })
			r2.stop(t)
			if got := stored(t, again, "pi"); got != 0 {
				t.Errorf("%d readings delivered again to the resumed session, want 0", got)
			}
		})
	}
}

// TestRunNATSNeedsClaims: a NATS source on a store that keeps no claims
// is refused with ErrNoClaims before anything runs, and the server is
// closed.
func TestRunNATSNeedsClaims(t *testing.T) {
	t.Parallel()
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, st, ingest.Options{})
	err = srv.Run(context.Background(), &server.NATS{URL: "nats://127.0.0.1:1", Acks: mqttc.Options{URL: "tcp://127.0.0.1:1", ClientID: "a"}},
		server.RunOptions{Name: "test"})
	if !errors.Is(err, server.ErrNoClaims) {
		t.Fatalf("Run: %v, want ErrNoClaims", err)
	}
	if code := readyz(srv); code != 0 {
		t.Errorf("the API answers after a refused Run (%d)", code)
	}
	if _, err := st.Hosts(); err == nil {
		t.Error("the store is still open after a refused Run")
	}
}

// TestEmbeddedBrokerNamesItsListeners: the running line names every
// listener with the port it bound.
func TestEmbeddedBrokerNamesItsListeners(t *testing.T) {
	t.Parallel()
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &server.EmbeddedBroker{Options: broker.Options{Addr: "127.0.0.1:0", WSAddr: "127.0.0.1:0"}}
	run(t, newServer(t, st, ingest.Options{}), tr)
	attrs := map[string]string{}
	got := tr.Running()
	for i := 0; i+1 < len(got); i += 2 {
		attrs[fmt.Sprint(got[i])] = fmt.Sprint(got[i+1])
	}
	for _, name := range []string{"mqtt", "ws"} {
		if a := attrs[name]; a == "" || strings.HasSuffix(a, ":0") {
			t.Errorf("%s listener named %q in %v, want its bound address", name, a, got)
		}
	}
	if _, ok := attrs["tls"]; ok {
		t.Errorf("a TLS listener named without one: %v", got)
	}
}
