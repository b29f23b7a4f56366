package boltdb

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/storetest"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// TestConformanceDeferred runs the storage contract's suite with deferred
// commits: whatever goes through the write-ahead file must read as if
// committed to the file.
func TestConformanceDeferred(t *testing.T) {
	storetest.Run(t, func(t *testing.T, limits store.Limits) store.Store {
		s, err := Open(filepath.Join(t.TempDir(), "apd.db"), Options{NoSync: true, Limits: limits, CheckpointEvery: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// tick is one reading of each of sensors for each of hosts at minute m,
// with seq m+1 per host and sensor index (hosts publish their sensors in
// one tick with consecutive seqs).
func tick(hosts, sensors []string, m int) []schema.Reading {
	var rs []schema.Reading
	for _, h := range hosts {
		for i, s := range sensors {
			rs = append(rs, storetest.Reading(h, s, m, float64(m)+0.5, uint64(m*len(sensors)+i+1)))
		}
	}
	return rs
}

// copyFile copies a file as a crash would leave it: what was written to
// it so far.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

func scanAll(t *testing.T, s *Store) []schema.Reading {
	t.Helper()
	var out []schema.Reading
	err := s.Scan(store.Query{}, func(r *schema.Reading) error {
		out = append(out, *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hostsOf(t *testing.T, s *Store) []store.Host {
	t.Helper()
	hs, err := s.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// TestDeferredCommitsSurviveACrash commits a fleet's ticks deferred,
// checks that readers see them before any checkpoint, then opens what a
// crash at that moment leaves on disk (the file without the open
// transaction, and the write-ahead file) and finds the same readings and
// host records. A record torn by the crash is dropped with everything
// after it; the commits before it are all there.
func TestDeferredCommitsSurviveACrash(t *testing.T) {
	clock := &fakeClock{t: storetest.T0.Add(time.Hour)}
	dir := t.TempDir()
	path := filepath.Join(dir, "apd.db")
	s, err := Open(path, Options{CheckpointEvery: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hosts, sensors := []string{"pi-a", "pi-b"}, []string{"temperature", "humidity", "cpu_load"}
	// The first tick makes the series: committed to the file at once.
	if _, err := s.Commit(&store.Batch{Readings: tick(hosts, sensors, 0), Aggregator: "agg"}); err != nil {
		t.Fatal(err)
	}
	if got := s.WriteStats(); got.Deferred != 0 {
		t.Fatalf("a batch making series went to the write-ahead file: %+v", got)
	}
	const ticks = 12
	var acks map[string]store.HostAck
	for m := 1; m <= ticks; m++ {
		clock.Add(10 * time.Second)
		b := &store.Batch{Readings: tick(hosts, sensors, m), Aggregator: "agg"}
		if m == 6 { // a device reconnecting: its status goes the same way
			b.Statuses = []store.StatusUpdate{{Host: "pi-b", Status: schema.Status{State: schema.StateOnline, Version: "0.9.1", Time: clock.Now()}}}
		}
		res, err := s.Commit(b)
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != len(hosts)*len(sensors) {
			t.Fatalf("tick %d stored %d", m, res.Stored)
		}
		acks = res.Acks
	}
	if got := s.WriteStats(); got.Deferred != ticks || got.Checkpoints != 0 {
		t.Fatalf("write stats %+v, want %d write-ahead records and no checkpoint", got, ticks)
	}
	wantSeq := uint64((ticks + 1) * len(sensors))
	for _, h := range hosts {
		if acks[h].Seq != wantSeq {
			t.Fatalf("ack of %s: %d, want %d", h, acks[h].Seq, wantSeq)
		}
	}
	// Readers see the deferred commits: readings and host records.
	readings, hs := scanAll(t, s), hostsOf(t, s)
	if len(readings) != (ticks+1)*len(hosts)*len(sensors) {
		t.Fatalf("scan found %d readings before a checkpoint", len(readings))
	}
	if hs[1].Name != "pi-b" || hs[1].Version != "0.9.1" || hs[1].State != schema.StateOnline {
		t.Fatalf("the deferred status is not seen: %+v", hs[1])
	}
	for _, h := range hs {
		if h.Watermark != wantSeq || !h.LastSeen.Equal(storetest.T0.Add(ticks*time.Minute)) {
			t.Fatalf("host %s before a checkpoint: watermark %d last seen %s", h.Name, h.Watermark, h.LastSeen)
		}
	}

	crash := func(t *testing.T, tear func(wal string)) *Store {
		t.Helper()
		cdir := t.TempDir()
		cpath := filepath.Join(cdir, "apd.db")
		copyFile(t, path, cpath)
		copyFile(t, walPath(path), walPath(cpath))
		if tear != nil {
			tear(walPath(cpath))
		}
		c, err := Open(cpath, Options{CheckpointEvery: time.Hour, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	t.Run("killed", func(t *testing.T) {
		c := crash(t, nil)
		if got := scanAll(t, c); !reflect.DeepEqual(got, readings) {
			t.Fatalf("after the crash %d readings, want %d", len(got), len(readings))
		}
		if got := hostsOf(t, c); !reflect.DeepEqual(got, hs) {
			t.Fatalf("after the crash hosts\n%+v\nwant\n%+v", got, hs)
		}
		// Applied once: a second open finds nothing more to apply.
		if _, err := os.Stat(walPath(c.path)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("torn last record", func(t *testing.T) {
		c := crash(t, func(wal string) {
			// Each record takes a page: cut the last in the middle, as a
			// write the power cut interrupted.
			f, err := os.OpenFile(wal, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := make([]byte, walPage-20)
			for i := range junk {
				junk[i] = 0xa5
			}
			if _, err := f.WriteAt(junk, (ticks-1)*walPage+20); err != nil {
				t.Fatal(err)
			}
		})
		got := scanAll(t, c)
		if len(got) != len(readings)-len(hosts)*len(sensors) {
			t.Fatalf("after a torn last record %d readings, want %d", len(got), len(readings)-len(hosts)*len(sensors))
		}
		for _, h := range hostsOf(t, c) {
			if h.Watermark != wantSeq-uint64(len(sensors)) {
				t.Fatalf("host %s after a torn last record: watermark %d, want %d", h.Name, h.Watermark, wantSeq-uint64(len(sensors)))
			}
		}
	})
	t.Run("checkpoint whose emptying was lost", func(t *testing.T) {
		// The write-ahead file as it was before a checkpoint, beside the
		// file after it: its records are applied already and must not be
		// applied again.
		cdir := t.TempDir()
		old := filepath.Join(cdir, "old-wal")
		copyFile(t, walPath(path), old)
		if err := s.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		if recs, err := readWAL(walPath(path), 0); err != nil || len(recs) != 0 {
			t.Fatalf("write-ahead file after a checkpoint: %d records, %v", len(recs), err)
		}
		cpath := filepath.Join(cdir, "apd.db")
		copyFile(t, path, cpath)
		copyFile(t, old, walPath(cpath))
		c, err := Open(cpath, Options{CheckpointEvery: time.Hour, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := hostsOf(t, c); !reflect.DeepEqual(got, hs) {
			t.Fatalf("records applied twice: hosts\n%+v\nwant\n%+v", got, hs)
		}
	})
}

// TestDeferredCheckpoints: the deferred transaction is committed when its
// age is due, when a commit must be seen in the file, and on close; a
// read-only open of a file with records left refuses to guess.
func TestDeferredCheckpoints(t *testing.T) {
	clock := &fakeClock{t: storetest.T0.Add(time.Hour)}
	path := filepath.Join(t.TempDir(), "apd.db")
	// Heads old enough to seal at every checkpoint: the checkpoint's
	// sweep writes chunks.
	s, err := Open(path, Options{CheckpointEvery: time.Minute, Now: clock.Now, HeadAge: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hosts, sensors := []string{"pi"}, []string{"temperature", "humidity"}
	commit := func(rs []schema.Reading, sts ...store.StatusUpdate) {
		t.Helper()
		if _, err := s.Commit(&store.Batch{Readings: rs, Statuses: sts}); err != nil {
			t.Fatal(err)
		}
	}
	commit(tick(hosts, sensors, 0))
	for m := 1; m <= 5; m++ {
		clock.Add(10 * time.Second)
		commit(tick(hosts, sensors, m))
	}
	if got := s.WriteStats(); got.Deferred != 5 || got.Checkpoints != 0 {
		t.Fatalf("after 50 s: %+v", got)
	}
	if _, err := Open(path, Options{ReadOnly: true, Timeout: 50 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("read-only open while held: %v", err)
	}
	clock.Add(25 * time.Second)
	commit(tick(hosts, sensors, 6))
	if got := s.WriteStats(); got.Checkpoints != 1 {
		t.Fatalf("no checkpoint a minute after the first deferred commit: %+v", got)
	}
	clock.Add(10 * time.Second)
	commit(tick(hosts, sensors, 7))
	// A status is deferred too; readers see it at once.
	clock.Add(time.Second)
	commit(nil, store.StatusUpdate{Host: "pi", Status: schema.Status{State: schema.StateOffline, Time: clock.Now()}})
	if got := s.WriteStats(); got.Checkpoints != 1 || got.Deferred != 7 {
		t.Fatalf("a status was not deferred: %+v", got)
	}
	if hs := hostsOf(t, s); len(hs) != 1 || hs[0].State != schema.StateOffline {
		t.Fatalf("hosts after a deferred status: %+v", hs)
	}
	// A refused reading is a dead letter, which readers read in the file:
	// checkpointed at once.
	clock.Add(time.Second)
	jump := storetest.Reading("pi", "temperature", 7, 1, 8*2+store.MaxSeqJump+10)
	jump.Time = jump.Time.Add(30 * time.Second)
	commit([]schema.Reading{jump})
	if got := s.WriteStats(); got.Checkpoints != 2 {
		t.Fatalf("a dead letter did not checkpoint: %+v", got)
	}
	// A crash leaves a record: a read-only open says what to do.
	clock.Add(10 * time.Second)
	commit(tick(hosts, sensors, 8))
	cpath := filepath.Join(t.TempDir(), "apd.db")
	copyFile(t, path, cpath)
	copyFile(t, walPath(path), walPath(cpath))
	if _, err := Open(cpath, Options{ReadOnly: true}); err == nil || !errors.Is(err, ErrOldSchema) {
		t.Fatalf("read-only open of a file with write-ahead records: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(walPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("write-ahead file after close: %v", err)
	}
	r, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := len(scanAll(t, r)); got != 9*len(sensors) {
		t.Fatalf("after close %d readings, want %d", got, 9*len(sensors))
	}
	// The last checkpoint sealed every head: no log record is left in the
	// file for them (each one would be written there, a page's worth).
	_ = r.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketLog).Stats().KeyN; n != 0 {
			t.Errorf("%d log records left after the last checkpoint", n)
		}
		return nil
	})
}
