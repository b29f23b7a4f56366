package boltdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/storetest"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "apd.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenLockedAndReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	if _, err := Open(path, Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(&store.Batch{Readings: storetest.Fixture()}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ro, err := Open(path, Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	n := 0
	_ = ro.Scan(store.Query{}, func(*schema.Reading) error { n++; return nil })
	if n != 9 {
		t.Errorf("read-only scan saw %d", n)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("99")) })
	s.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("err = %v, want ErrNewerSchema", err)
	}
}

func TestCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(&store.Batch{Readings: storetest.Fixture()}); err != nil {
		t.Fatal(err)
	}
	count := func(q store.Query) int {
		n := 0
		_ = s.Scan(q, func(*schema.Reading) error { n++; return nil })
		return n
	}
	if _, err := s.Delete(store.Query{Hosts: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	// Compaction gives back the space of deleted readings.
	var big store.Batch
	for i := 0; i < 20000; i++ {
		// Values that compress badly, so the host takes real space.
		r := storetest.Reading("z", "temperature", i, 0, 0)
		r.Value = json.RawMessage(fmt.Sprintf(`"%x"`, uint64(i)*0x9E3779B97F4A7C15))
		big.Readings = append(big.Readings, r)
	}
	if _, err := s.Commit(&big); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(store.Query{Hosts: []string{"z"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	before, after, err := Compact(path)
	if err != nil {
		t.Fatal(err)
	}
	if after >= before/2 {
		t.Errorf("compaction %d → %d bytes", before, after)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if count(store.Query{}) != 6 {
		t.Errorf("after compaction %d readings, want 6", count(store.Query{}))
	}
}

// TestWatermarkWritesNoPendingInOrder: an in-order batch advances the
// watermark without leaving anything in the pending bucket; a gap leaves
// exactly the seqs above it.
func TestWatermarkWritesNoPendingInOrder(t *testing.T) {
	s := openTemp(t)
	var b store.Batch
	for q := uint64(1); q <= 100; q++ {
		b.Readings = append(b.Readings, storetest.Reading("pi", "s", int(q), 1, q))
	}
	res, err := s.Commit(&b)
	if err != nil || res.Acks["pi"].Seq != 100 {
		t.Fatalf("ack %d, %v", res.Acks["pi"].Seq, err)
	}
	pending := func() int {
		n := 0
		_ = s.db.View(func(tx *bolt.Tx) error {
			if pb := tx.Bucket(bucketPending).Bucket([]byte("pi")); pb != nil {
				n = pb.Stats().KeyN
			}
			return nil
		})
		return n
	}
	if n := pending(); n != 0 {
		t.Errorf("%d seqs pending after an in-order batch", n)
	}
	res, _ = s.Commit(&store.Batch{Readings: []schema.Reading{storetest.Reading("pi", "s", 102, 1, 102), storetest.Reading("pi", "s", 103, 1, 103)}})
	if len(res.Acks) != 0 || pending() != 2 {
		t.Errorf("gap: acks %v, %d pending", res.Acks, pending())
	}
	res, _ = s.Commit(&store.Batch{Readings: []schema.Reading{storetest.Reading("pi", "s", 101, 1, 101)}})
	if res.Acks["pi"].Seq != 103 || pending() != 0 {
		t.Errorf("gap filled: ack %d, %d pending", res.Acks["pi"].Seq, pending())
	}
}

// TestConformance runs the storage contract's suite against the engine.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, limits store.Limits) store.Store {
		s, err := Open(filepath.Join(t.TempDir(), "apd.db"), Options{NoSync: true, Limits: limits})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestConformanceSealingAlways runs the suite with heads sealed at every
// commit, so that every reading also goes the way of the chunks.
func TestConformanceSealingAlways(t *testing.T) {
	storetest.Run(t, func(t *testing.T, limits store.Limits) store.Store {
		s, err := Open(filepath.Join(t.TempDir(), "apd.db"), Options{NoSync: true, Limits: limits, HeadAge: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
