package brokerhook_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest/ingesttest"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/store"
)

// gatedStore holds every commit until the test opens its gate, and says
// when one is waiting.
type gatedStore struct {
	store.Store
	waiting chan struct{}
	gate    chan struct{}
}

func (g *gatedStore) Commit(b *store.Batch) (store.CommitResult, error) {
	select {
	case g.waiting <- struct{}{}:
	default:
	}
	<-g.gate
	return g.Store.Commit(b)
}

// TestPubackAfterCommit: a QoS 1 publish is not acknowledged to its
// client while the commit that stores it has not returned, and is once
// it has.
func TestPubackAfterCommit(t *testing.T) {
	t.Parallel()
	st := &gatedStore{Store: ingesttest.OpenStore(t), waiting: make(chan struct{}, 1), gate: make(chan struct{})}
	_, brk := startEmbedded(t, st, ingest.Options{}, broker.Options{})
	var open sync.Once
	release := func() { open.Do(func() { close(st.gate) }) }
	t.Cleanup(release) // before the ingester's: its last commit must pass
	device := dial(t, brk.Addr(), "device")
	acked := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		acked <- device.Publish(ctx, "apd/pi/t", ingesttest.Payload("pi", "t", 1, 1, 20), false)
	}()
	select {
	case <-st.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("no commit began")
	}
	select {
	case err := <-acked:
		t.Fatalf("PUBACK while the commit waits (publish returned %v)", err)
	default:
	}
	if n := ingesttest.Count(t, st, store.Query{Hosts: []string{"pi"}}); n != 0 {
		t.Fatalf("%d stored before the commit", n)
	}
	release()
	select {
	case err := <-acked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no PUBACK after the commit")
	}
	if n := ingesttest.Count(t, st, store.Query{Hosts: []string{"pi"}}); n != 1 {
		t.Errorf("%d stored once acknowledged, want 1", n)
	}
}
