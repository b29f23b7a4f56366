package boltdb

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// fakeClock is a store clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var tick0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fleetTick is one clock-aligned tick of a fleet: every host, every
// sensor, one reading each, seq counting per host.
func fleetTick(hosts, sensors, tick int) []schema.Reading {
	var out []schema.Reading
	for h := 0; h < hosts; h++ {
		for s := 0; s < sensors; s++ {
			out = append(out, schema.Reading{Host: fmt.Sprintf("h%03d", h), Sensor: fmt.Sprintf("s%d", s),
				Time: tick0.Add(time.Duration(tick) * 10 * time.Second), Seq: uint64(tick*sensors + s + 1),
				Value: json.RawMessage(fmt.Sprintf(`{"magnitude":%d.%d,"unit":"degC"}`, 20+tick%5, h%10)), Title: "T"})
		}
	}
	return out
}

// dump returns every reading the store holds, in scan order, as JSON
// lines.
func dump(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	err := s.Scan(store.Query{}, func(r *schema.Reading) error {
		out = append(out, string(r.AppendJSON(nil, schema.WithIdentity)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d readings, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: reading %d is\n%s\nwant\n%s", what, i, got[i], want[i])
		}
	}
}

func logRecords(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketLog).Stats().KeyN; return nil })
	return n
}

func chunkCount(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReadings).ForEachBucket(func(sensor []byte) error {
			sb := tx.Bucket(bucketReadings).Bucket(sensor)
			return sb.ForEachBucket(func(host []byte) error { n += sb.Bucket(host).Stats().KeyN; return nil })
		})
	})
	return n
}

// TestHeadTakesFleetTicksAndReplays: ticks of one reading per series go
// to the head and the log, not to chunks; a reopened store replays them
// and holds every reading once; heads sealed by age move to chunks and
// take their log records with them; what is sealed is not replayed twice.
func TestHeadTakesFleetTicksAndReplays(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	clock := &fakeClock{t: tick0}
	open := func() *Store {
		s, err := Open(path, Options{NoSync: true, Now: clock.Now, HeadAge: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	var want []schema.Reading
	commitTick := func(tick int) {
		rs := fleetTick(20, 3, tick)
		res, err := s.Commit(&store.Batch{Readings: rs})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != len(rs) {
			t.Fatalf("tick %d: stored %d of %d", tick, res.Stored, len(rs))
		}
		want = append(want, rs...)
		clock.Add(10 * time.Second)
	}
	for tick := 0; tick < 4; tick++ {
		commitTick(tick)
	}
	if n := chunkCount(t, s); n != 0 {
		t.Errorf("%d chunks after 4 ticks within the head's age; want none", n)
	}
	if n := logRecords(t, s); n != 4 {
		t.Errorf("%d log records, want 4", n)
	}
	expect := func() []string {
		var lines []string
		s2 := openTemp(t)
		if _, err := s2.Commit(&store.Batch{Readings: want, Imported: true}); err != nil {
			t.Fatal(err)
		}
		lines = dump(t, s2)
		return lines
	}
	before := dump(t, s)
	sameLines(t, "live", before, expect())
	s.Close()

	s = open()
	sameLines(t, "replayed", dump(t, s), before)
	// Past twice the age every head is sealed (a commit does it), and the
	// log keeps only what the heads opened since need.
	for tick := 4; tick < 20; tick++ {
		commitTick(tick)
	}
	if n := chunkCount(t, s); n < 60 {
		t.Errorf("%d chunks after 20 ticks with a one-minute head age; want every series sealed", n)
	}
	if n := logRecords(t, s); n > 13 {
		t.Errorf("%d log records kept; want at most the two minutes' worth the open heads need", n)
	}
	all := dump(t, s)
	sameLines(t, "sealed and head", all, expect())
	s.Close()
	s = open()
	defer s.Close()
	sameLines(t, "reopened after seals", dump(t, s), all)
	// Every reading again: all duplicates, wherever they are kept.
	res, err := s.Commit(&store.Batch{Readings: want})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 0 || res.Duplicates != len(want) {
		t.Errorf("recommit: stored %d, duplicates %d; want 0 and %d", res.Stored, res.Duplicates, len(want))
	}
}

// TestHeadLateAndOutOfOrder: a reading before a series' head goes to its
// chunks, one inside the head's span into the head; duplicates of either
// are counted; scans stay in time order, before and after a reopen.
func TestHeadLateAndOutOfOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	at := func(sec int, v string) schema.Reading {
		return schema.Reading{Host: "h", Sensor: "s", Time: tick0.Add(time.Duration(sec) * time.Second), Value: json.RawMessage(v)}
	}
	steps := []struct {
		batch      []schema.Reading
		stored, du int
	}{
		{[]schema.Reading{at(100, "1"), at(110, "2"), at(130, "4")}, 3, 0},
		{[]schema.Reading{at(120, "3"), at(110, "9")}, 1, 1},             // inside the head, and a duplicate
		{[]schema.Reading{at(50, "0"), at(140, "5"), at(50, "8")}, 2, 1}, // late, new, and a duplicate within the batch
		{[]schema.Reading{at(50, "7")}, 0, 1},                            // the late one again: in the chunks now
	}
	for i, st := range steps {
		res, err := s.Commit(&store.Batch{Readings: st.batch})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != st.stored || res.Duplicates != st.du {
			t.Errorf("step %d: stored %d, duplicates %d; want %d, %d", i, res.Stored, res.Duplicates, st.stored, st.du)
		}
	}
	values := func() string {
		var out []string
		_ = s.Scan(store.Query{}, func(r *schema.Reading) error { out = append(out, string(r.Value)); return nil })
		return fmt.Sprint(out)
	}
	if got := values(); got != "[0 1 2 3 4 5]" {
		t.Errorf("scan %s", got)
	}
	if n := chunkCount(t, s); n != 1 {
		t.Errorf("%d chunks, want the late reading's one", n)
	}
	s.Close()
	if s, err = Open(path, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := values(); got != "[0 1 2 3 4 5]" {
		t.Errorf("after reopen: scan %s", got)
	}
	// A time range that cuts through chunks and head.
	var got []string
	_ = s.Scan(store.Query{Since: tick0.Add(50 * time.Second), Until: tick0.Add(130 * time.Second)}, func(r *schema.Reading) error {
		got = append(got, string(r.Value))
		return nil
	})
	if fmt.Sprint(got) != "[0 1 2 3]" {
		t.Errorf("range scan %v", got)
	}
}

// TestHeadFailedCommitChangesNothing: a commit that fails after putting
// readings into the head leaves the head as it was: they are not seen,
// and the retry stores them.
func TestHeadFailedCommitChangesNothing(t *testing.T) {
	s := openTemp(t)
	if _, err := s.Commit(&store.Batch{Readings: fleetTick(2, 1, 0)}); err != nil {
		t.Fatal(err)
	}
	// A host record that does not decode fails any commit that touches
	// its host, after the readings of hosts before it went in.
	// (Written behind the store's back, so its decoded copy is dropped.)
	_ = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketHosts).Put([]byte("h001"), []byte("{")) })
	delete(s.head.hosts, "h001")
	batch := fleetTick(2, 1, 1)
	// The status changes h000's record before the failure.
	failing := &store.Batch{Readings: batch, Statuses: []store.StatusUpdate{{Host: "h000", Status: schema.Status{State: "online", Version: "failed"}}}}
	if _, err := s.Commit(failing); err == nil {
		t.Fatal("commit with a corrupt host record succeeded")
	}
	if n := len(dump(t, s)); n != 2 {
		t.Fatalf("%d readings visible after the failed commit, want the 2 before it", n)
	}
	_ = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketHosts).Delete([]byte("h001")) })
	res, err := s.Commit(&store.Batch{Readings: batch})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 2 {
		t.Errorf("retry stored %d, want 2", res.Stored)
	}
	// h000's record was changed by the failed commit too: none of that
	// remains, and the readings are counted once.
	hosts, err := s.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	if h := hosts[0]; h.Name != "h000" || h.Sensors["s0"].Count != 2 || h.Watermark != 2 || h.Version != "" {
		t.Errorf("after the retry, %s: count %d, watermark %d, version %q; want 2, 2 and none (the failed commit's)",
			h.Name, h.Sensors["s0"].Count, h.Watermark, h.Version)
	}
}

// TestHeadDeleteIsNotReplayed: readings deleted while in the head do not
// come back from the log at the next open.
func TestHeadDeleteIsNotReplayed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for tick := 0; tick < 3; tick++ {
		if _, err := s.Commit(&store.Batch{Readings: fleetTick(3, 2, tick)}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Delete(store.Query{Sensor: "s1", Hosts: []string{"h000"}, Since: tick0.Add(10 * time.Second)})
	if err != nil || n != 2 {
		t.Fatalf("delete: %d, %v; want 2", n, err)
	}
	left := dump(t, s)
	if len(left) != 16 {
		t.Fatalf("%d readings after the delete, want 16", len(left))
	}
	s.Close()
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sameLines(t, "reopened", dump(t, s), left)
}

// TestSealAll: after SealAll every reading is in a chunk, the log is
// empty, and the store reads the same, before and after a reopen.
func TestSealAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for tick := range 4 {
		if _, err := s.Commit(&store.Batch{Readings: fleetTick(5, 3, tick)}); err != nil {
			t.Fatal(err)
		}
	}
	before := dump(t, s)
	if chunkCount(t, s) != 0 {
		t.Fatal("readings in chunks before SealAll: the test tests nothing")
	}
	if err := s.SealAll(); err != nil {
		t.Fatal(err)
	}
	if n := chunkCount(t, s); n != 15 {
		t.Errorf("%d chunks after SealAll, want one per series (15)", n)
	}
	logRecords := func() int {
		n := 0
		_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketLog).Stats().KeyN; return nil })
		return n
	}
	if n := logRecords(); n != 0 || len(s.head.series) != 0 {
		t.Errorf("after SealAll: %d log records, %d heads; want none", n, len(s.head.series))
	}
	if got := dump(t, s); !slices.Equal(got, before) {
		t.Errorf("after SealAll the store reads differently")
	}
	s.Close()
	if s, err = Open(path, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := dump(t, s); !slices.Equal(got, before) {
		t.Errorf("after a reopen the store reads differently")
	}
}
