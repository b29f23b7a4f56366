package server_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/server"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// claimingStore is a store that keeps partition claims, in memory, for
// one aggregator.
type claimingStore struct {
	store.Store
	claims *memClaims
}

func (s claimingStore) Claims(context.Context, string) (store.Claims, error) { return s.claims, nil }

// memClaims is the claims of the only aggregator.
type memClaims struct {
	mu     sync.Mutex
	held   map[int]bool
	closed bool
}

func (c *memClaims) Live(context.Context) (int, error) { return 1, nil }

func (c *memClaims) TryClaim(_ context.Context, p int) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held[p] = true
	return true, nil
}

func (c *memClaims) Release(_ context.Context, p int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.held, p)
	return nil
}

func (c *memClaims) Alone(_ context.Context, fn func() error) error { return fn() }

func (c *memClaims) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

var _ store.Claimer = claimingStore{}

// TestRunNATS: apd aggregate --source's lifecycle in process, on a
// three-node NATS cluster — a paho client publishes to a node's MQTT
// gateway, the reading is read from the stream partition this
// aggregator claims, stored, and its $ack arrives through the gateway;
// a cancel stops and drains.
func TestRunNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster")
	}
	t.Parallel()
	cluster := testutil.StartNATSCluster(t, 3)
	path := filepath.Join(t.TempDir(), "apd.db")
	st, err := engine.Open(path, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	claims := &memClaims{held: map[int]bool{}}
	srv := newServer(t, claimingStore{st, claims}, ingest.Options{})
	gateway := cluster.Nodes[0].MQTTAddr
	r := run(t, srv, &server.NATS{URL: cluster.ClientURLs(), Partitions: 4,
		Acks: mqttc.Options{URL: cluster.MQTTURLs(), ClientID: "apd-aggregator-a"}})
	acked := watchAcks(t, gateway, "pi")
	device := dial(t, gateway, "device")
	for seq := uint64(1); seq <= 3; seq++ {
		if err := device.Publish(context.Background(), "apd/pi/t", reading("pi", seq), false); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "$ack of seq 3 through the gateway", 30*time.Second, func() bool { return acked() == 3 })
	r.stop(t)
	if got := stored(t, path, "pi"); got != 3 {
		t.Errorf("%d readings stored, want 3", got)
	}
	claims.mu.Lock()
	defer claims.mu.Unlock()
	if !claims.closed || len(claims.held) != 4 {
		t.Errorf("claims closed %v holding %d partitions, want closed after holding all 4", claims.closed, len(claims.held))
	}
}
