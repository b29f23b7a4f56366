package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest/ingesttest"

	bolt "go.etcd.io/bbolt"

	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/store"
)

// failingStore fails its first commits, as a full disk does, then passes
// them to a real store.
type failingStore struct {
	store.Store
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
	t.Parallel()
	fs := &failingStore{failures: 3, Store: ingesttest.OpenStore(t)}
	var acks atomic.Int32
	in := ingest.New(fs, func(string, []byte) error { acks.Add(1); return nil }, ingest.Options{})
	defer in.Close()
	var done atomic.Int32
	for i := 1; i <= 5; i++ {
		if _, err := in.SubmitMessage("apd/pi/t", ingesttest.Payload("pi", "t", uint64(i), i, 1), func() { done.Add(1) }); err != nil {
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

// TestCorruptChunkQuarantined: a stored chunk that does not decode (which
// fails every commit that touches its series, on every retry) is set
// aside; readings of that series and of others go on being stored and
// acknowledged, the failure is logged once and counted on the metrics.
func TestCorruptChunkQuarantined(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "apd.db")
	// Heads sealed at every commit: readings reach their chunks at once.
	opts := engine.Options{HeadAge: time.Nanosecond}
	st, err := engine.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Hour)
	at := func(host string, minute int, seq uint64) schema.Reading {
		return schema.Reading{Host: host, Sensor: "temperature", Seq: seq, Time: t0.Add(time.Duration(minute) * time.Minute),
			Value: schema.Quantity{Magnitude: 20, Unit: "degC"}.Raw()}
	}
	if _, err := st.Commit(&store.Batch{Readings: []schema.Reading{at("bad", 0, 0), at("bad", 1, 0), at("good", 0, 0)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(&store.Batch{}); err != nil { // seals them
		t.Fatal(err)
	}
	st.Close()
	// Damage the one chunk of temperature/bad.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		hb := tx.Bucket([]byte("readings")).Bucket([]byte("temperature")).Bucket([]byte("bad"))
		k, v := hb.Cursor().First()
		return hb.Put(k, bytes.Repeat([]byte{0xff}, len(v)))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	st, err = engine.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var log testutil.SyncBuffer
	acks := make(chan string, 100)
	in := ingest.New(st, func(topic string, _ []byte) error { acks <- topic; return nil },
		ingest.Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	defer in.Close()
	for i, r := range []schema.Reading{at("bad", 2, 1), at("good", 1, 1), at("bad", 3, 2), at("good", 2, 2)} {
		if _, err := in.SubmitMessage("apd/"+r.Host+"/temperature", r.AppendJSON(nil, schema.WithIdentity), nil); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			time.Sleep(50 * time.Millisecond) // a second commit
		}
	}
	waitFor(t, "both hosts' readings stored", func() bool { return in.Metrics().Stored.Value() == 4 })
	if got := ingesttest.Count(t, st, store.Query{Hosts: []string{"bad"}}); got != 2 {
		t.Errorf("readings of the damaged series: %d, want the 2 new ones", got)
	}
	if got := ingesttest.Count(t, st, store.Query{Hosts: []string{"good"}}); got != 3 {
		t.Errorf("readings of the other series: %d, want 3", got)
	}
	if n := in.Metrics().Quarantined.Value(); n != 1 {
		t.Errorf("quarantined %d chunks, want 1", n)
	}
	if n := strings.Count(log.String(), "quarantined"); n != 1 {
		t.Errorf("logged %d times:\n%s", n, log.String())
	}
	seen := map[string]bool{}
	for len(acks) > 0 {
		seen[<-acks] = true
	}
	if !seen["apd/bad/$ack"] || !seen["apd/good/$ack"] {
		t.Errorf("acknowledged %v, want both hosts", seen)
	}
}

// TestAcksCoalesced: a commit after a quiet spell is acknowledged at
// once; the commits that follow within AckEvery are acknowledged together
// at its end, each host once with its latest watermark.
func TestAcksCoalesced(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var acks []string
	got := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(acks) }
	in := ingest.New(ingesttest.OpenStore(t), func(topic string, p []byte) error {
		var a schema.Ack
		_ = json.Unmarshal(p, &a)
		mu.Lock()
		acks = append(acks, fmt.Sprintf("%s=%d", topic, a.Seq))
		mu.Unlock()
		return nil
	}, ingest.Options{AckEvery: 2 * time.Second})
	defer in.Close()
	stored := uint64(0)
	commit := func(host string, seq uint64) {
		t.Helper()
		if _, err := in.SubmitMessage("apd/"+host+"/t", ingesttest.Payload(host, "t", seq, int(seq), 1), nil); err != nil {
			t.Fatal(err)
		}
		stored++
		waitFor(t, "the commit", func() bool { return in.Metrics().Stored.Value() == stored })
	}
	commit("pi", 1)
	waitFor(t, "the first acknowledgement", func() bool { return len(got()) == 1 })
	commit("pi", 2)
	commit("zero", 1)
	commit("pi", 3)
	if a := got(); len(a) != 1 {
		t.Fatalf("within the window: %v, want only the first", a)
	}
	waitFor(t, "the window's acknowledgements", func() bool { return len(got()) >= 3 })
	// What is under test: no fourth acknowledgement follows (each host
	// once per window), so let a little time pass for one to show.
	time.Sleep(100 * time.Millisecond)
	a := got()
	slices.Sort(a[1:])
	if want := []string{"apd/pi/$ack=1", "apd/pi/$ack=3", "apd/zero/$ack=1"}; !slices.Equal(a, want) {
		t.Errorf("acknowledgements %v, want %v", a, want)
	}
}

// TestOnCommitOnlyWhenWanted: OnCommit sees a commit's readings, in time
// order, only while WantCommits says someone listens.
func TestOnCommitOnlyWhenWanted(t *testing.T) {
	t.Parallel()
	var want atomic.Bool
	var mu sync.Mutex
	var seen [][]string
	in := ingest.New(ingesttest.OpenStore(t), func(string, []byte) error { return nil }, ingest.Options{
		WantCommits: want.Load,
		OnCommit: func(rs []schema.Reading) {
			var ts []string
			for _, r := range rs {
				ts = append(ts, fmt.Sprint(r.Seq))
			}
			mu.Lock()
			seen = append(seen, ts)
			mu.Unlock()
		},
	})
	defer in.Close()
	stored := uint64(0)
	submit := func(seqs ...uint64) {
		t.Helper()
		for _, q := range seqs {
			if _, err := in.SubmitMessage("apd/pi/t", ingesttest.Payload("pi", "t", q, int(q), 1), nil); err != nil {
				t.Fatal(err)
			}
		}
		stored += uint64(len(seqs))
		waitFor(t, "the commit", func() bool { return in.Metrics().Stored.Value() == stored })
	}
	submit(1)
	mu.Lock()
	n := len(seen)
	mu.Unlock()
	if n != 0 {
		t.Fatalf("OnCommit called with nobody listening: %v", seen)
	}
	want.Store(true)
	submit(3, 2)
	waitFor(t, "OnCommit", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range seen {
			n += len(s)
		}
		return n == 2
	})
	mu.Lock()
	defer mu.Unlock()
	var all []string
	for _, s := range seen {
		if !slices.IsSorted(s) { // one-digit seqs: text order is time order
			t.Errorf("a commit's readings out of time order: %v", s)
		}
		all = append(all, s...)
	}
	slices.Sort(all)
	if strings.Join(all, ",") != "2,3" {
		t.Errorf("OnCommit saw %v, want 2 and 3", seen)
	}
}

// TestAcknowledgeStored: every host's stored watermark is published
// again, by the time AcknowledgeStored returns; a named aggregator
// publishes only those of the hosts it committed last.
func TestAcknowledgeStored(t *testing.T) {
	t.Parallel()
	st := ingesttest.OpenStore(t)
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	for i, host := range []string{"mine", "theirs"} {
		b := &store.Batch{Aggregator: map[string]string{"mine": "a", "theirs": "b"}[host]}
		for seq := uint64(1); seq <= uint64(i+2); seq++ {
			b.Readings = append(b.Readings, schema.Reading{Host: host, Sensor: "t", Seq: seq,
				Time: t0.Add(time.Duration(seq) * time.Second), Value: json.RawMessage("1")})
		}
		if _, err := st.Commit(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"", []string{"apd/mine/$ack=2", "apd/theirs/$ack=3"}},
		{"a", []string{"apd/mine/$ack=2"}},
	} {
		var mu sync.Mutex
		var acks []string
		in := ingest.New(st, func(topic string, p []byte) error {
			var a schema.Ack
			_ = json.Unmarshal(p, &a)
			mu.Lock()
			acks = append(acks, fmt.Sprintf("%s=%d", topic, a.Seq))
			mu.Unlock()
			return nil
		}, ingest.Options{Name: tc.name})
		in.AcknowledgeStored(context.Background())
		mu.Lock()
		got := slices.Sorted(slices.Values(acks))
		mu.Unlock()
		in.Close()
		if !slices.Equal(got, tc.want) {
			t.Errorf("aggregator %q acknowledged %v, want %v", tc.name, got, tc.want)
		}
	}
}
