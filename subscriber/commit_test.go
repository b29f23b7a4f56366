package subscriber_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/apd-telemetry/apd/internal/store/boltdb"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/subscriber"
)

// failingStore fails its first commits, as a full disk does, then passes
// them to a real store.
type failingStore struct {
	*boltdb.Store
	mu       sync.Mutex
	failures int
}

func (f *failingStore) Commit(b *store.Batch) (store.CommitResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		return store.CommitResult{}, errors.New("write apd.db: no space left on device")
	}
	return f.Store.Commit(b)
}

// TestCommitFailureHoldsAcknowledgements: while commits fail nothing is
// acknowledged (to the broker or on $ack), the failure shows on the
// metrics, and everything is stored and acknowledged once commits succeed.
func TestCommitFailureHoldsAcknowledgements(t *testing.T) {
	fs := &failingStore{failures: 3, Store: openStore(t)}
	var acks atomic.Int32
	in := subscriber.New(fs, func(string, []byte) error { acks.Add(1); return nil }, subscriber.Options{})
	defer in.Close()
	var done atomic.Int32
	for i := 1; i <= 5; i++ {
		if err := in.Submit("apd/pi/t", payload("pi", "t", uint64(i), i, 1), func() { done.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a failed commit", func() bool { return in.Metrics().CommitErrors.Value() > 0 })
	if in.Metrics().CommitFailing.Value() != 1 || done.Load() != 0 || acks.Load() != 0 {
		t.Fatalf("while failing: failing=%d, broker acks %d, $ack %d",
			in.Metrics().CommitFailing.Value(), done.Load(), acks.Load())
	}
	waitFor(t, "recovery", func() bool { return done.Load() == 5 })
	if in.Metrics().CommitFailing.Value() != 0 || in.Metrics().Stored.Value() != 5 || acks.Load() == 0 {
		t.Fatalf("after recovery: failing=%d stored=%d $acks=%d",
			in.Metrics().CommitFailing.Value(), in.Metrics().Stored.Value(), acks.Load())
	}
}
