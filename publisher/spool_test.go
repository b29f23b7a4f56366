package publisher

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// spoolEnv is a spool's surroundings in a test: a recorded file system,
// a clock that moves when told, a boot id.
type spoolEnv struct {
	t       *testing.T
	fs      *memFS
	staging *memFS // the staging directory's file system (a tmpfs)
	clock   *fakeClock
	path    string
	boot    string
	opts    SpoolOptions
}

var spoolEpoch = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func newSpoolEnv(t *testing.T, opts SpoolOptions) *spoolEnv {
	t.Helper()
	clock := newFakeClock(spoolEpoch)
	var seq atomic.Int64
	card, staging := newMemFS(clock.Now), newMemFS(clock.Now)
	card.seq, staging.seq = &seq, &seq
	e := &spoolEnv{t: t, fs: card, staging: staging, clock: clock, path: "/state/apd-spool.db", boot: "boot-1", opts: opts}
	return e
}

// testStagingDir is where the tests that stage put the staging directory
// (on spoolEnv.staging).
const testStagingDir = "/run/apd/spool-0123456789abcdef"

// opCount returns how many operations both file systems made.
func (e *spoolEnv) opCount() int64 { return e.fs.seq.Load() }

func (e *spoolEnv) open() *Spool {
	e.t.Helper()
	s, err := e.tryOpen()
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *spoolEnv) tryOpen() (*Spool, error) {
	opts := e.opts
	opts.FS, opts.Clock = e.fs, e.clock
	if e.staging == nil {
		e.staging = newMemFS(nil)
	}
	opts.StagingFS = e.staging
	boot := e.boot
	opts.BootID = func() string { return boot }
	return OpenSpool(e.path, opts)
}

// segments returns the names of the spool's segment files.
func (e *spoolEnv) segments() []string {
	e.t.Helper()
	names, err := e.fs.ReadDir(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	return slices.DeleteFunc(names, func(n string) bool { return !strings.HasSuffix(n, segmentExt) })
}

// syncsOf counts the file syncs of segment files among ops[from:].
func (e *spoolEnv) segmentSyncs(from int) int {
	e.fs.mu.Lock()
	defer e.fs.mu.Unlock()
	n := 0
	for _, op := range e.fs.ops[from:] {
		if op.kind == opSync && strings.HasSuffix(op.path, segmentExt) {
			n++
		}
	}
	return n
}

func tick(host string, n int, at time.Time) []schema.Reading {
	out := make([]schema.Reading, n)
	for i := range out {
		out[i] = schema.Reading{Host: host, Sensor: fmt.Sprintf("s%d", i), Time: at, Value: json.RawMessage(fmt.Sprint(i * 7))}
	}
	return out
}

func mustAppend(t *testing.T, s *Spool, readings []schema.Reading) []Spooled {
	t.Helper()
	out, _, err := s.Append(readings)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustAck(t *testing.T, s *Spool, upTo uint64) int {
	t.Helper()
	n, err := s.Ack(upTo)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// allPending pages through Pending, limit at a time.
func allPending(t *testing.T, s *Spool, limit int) []Spooled {
	t.Helper()
	var out []Spooled
	after := uint64(0)
	for {
		page, err := s.Pending(after, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("Pending(%d, %d) returned %d", after, limit, len(page))
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Seq
	}
}

func seqsOf(sp []Spooled) []uint64 {
	out := make([]uint64, len(sp))
	for i, s := range sp {
		out[i] = s.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for q := from; q <= to; q++ {
		out = append(out, q)
	}
	return out
}

func TestParseSyncPolicy(t *testing.T) {
	tests := []struct {
		in   string
		want SyncPolicy
		str  string
		bad  bool
	}{
		{in: "every", want: SyncPolicy{Mode: SyncEvery}, str: "every"},
		{in: "os", want: SyncPolicy{Mode: SyncOS}, str: "os"},
		{in: "30s", want: SyncPolicy{Mode: SyncWindow, Window: 30 * time.Second}, str: "30s"},
		{in: "2m", want: SyncPolicy{Mode: SyncWindow, Window: 2 * time.Minute}, str: "2m0s"},
		{in: "1d", want: SyncPolicy{Mode: SyncWindow, Window: 24 * time.Hour}, str: "24h0m0s"},
		{in: "0s", bad: true},
		{in: "-5s", bad: true},
		{in: "always", bad: true},
		{in: "", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSyncPolicy(tc.in)
			if tc.bad {
				if err == nil || !strings.Contains(err.Error(), "want every, os or a duration") {
					t.Fatalf("ParseSyncPolicy(%q) = %v, %v; want an error naming the choices", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want || got.String() != tc.str {
				t.Fatalf("ParseSyncPolicy(%q) = %+v (%s), %v; want %+v (%s)", tc.in, got, got, err, tc.want, tc.str)
			}
		})
	}
	if got := (SyncPolicy{}).String(); got != "30s" {
		t.Errorf("the zero policy is %s, want 30s", got)
	}
}

// TestSpoolPendingAcrossSegments: Pending pages through readings held in
// several segments, in seq order, from any seq, with the payloads
// Append returned.
func TestSpoolPendingAcrossSegments(t *testing.T) {
	e := newSpoolEnv(t, SpoolOptions{SegmentBytes: 700})
	s := e.open()
	defer s.Close()
	want := map[uint64]Spooled{}
	for i := range 20 {
		for _, sp := range mustAppend(t, s, tick("pi", 3, spoolEpoch.Add(time.Duration(i)*10*time.Second))) {
			want[sp.Seq] = sp
		}
	}
	if n := len(e.segments()); n < 4 {
		t.Fatalf("%d segments, want the readings spread over several", n)
	}
	for _, limit := range []int{1, 7, 256} {
		got := allPending(t, s, limit)
		if !slices.Equal(seqsOf(got), seqRange(1, 60)) {
			t.Fatalf("limit %d: seqs %v", limit, seqsOf(got))
		}
		for _, g := range got {
			w := want[g.Seq]
			if g.Sensor != w.Sensor || string(g.Payload) != string(w.Payload) || !strings.Contains(string(g.Payload), fmt.Sprintf(`"seq":%d,`, g.Seq)) {
				t.Fatalf("seq %d: got %s %s, want %s %s", g.Seq, g.Sensor, g.Payload, w.Sensor, w.Payload)
			}
		}
	}
	// From the middle of a record (seqs 31–33 are one tick).
	page, err := s.Pending(31, 4)
	if err != nil || !slices.Equal(seqsOf(page), []uint64{32, 33, 34, 35}) {
		t.Fatalf("Pending(31, 4) = %v, %v", seqsOf(page), err)
	}
	if page, _ := s.Pending(60, 10); len(page) != 0 {
		t.Errorf("Pending past the last seq: %v", seqsOf(page))
	}
}

// TestSpoolAckDeletesSegments: an acknowledgement writes nothing; a
// segment whose readings are all acknowledged is deleted, the active one
// once it is SegmentAge old.
func TestSpoolAckDeletesSegments(t *testing.T) {
	e := newSpoolEnv(t, SpoolOptions{SegmentBytes: 700})
	s := e.open()
	defer s.Close()
	for i := range 12 {
		mustAppend(t, s, tick("pi", 3, spoolEpoch.Add(time.Duration(i)*time.Second)))
	}
	before := e.segments()
	if len(before) < 3 {
		t.Fatalf("segments %v, want several", before)
	}
	ops := e.fs.opCount()
	// Up to the middle of the second segment's first record.
	second, _ := parseSegmentName(before[1])
	if n := mustAck(t, s, second+1); n != int(second+1) {
		t.Errorf("Ack(%d) removed %d", second+1, n)
	}
	if got := e.segments(); !slices.Equal(got, before[1:]) {
		t.Errorf("after acknowledging the first segment: %v, want %v", got, before[1:])
	}
	e.fs.mu.Lock()
	for _, op := range e.fs.ops[ops:] {
		if op.kind != opRemove {
			t.Errorf("an acknowledgement did %s", op)
		}
	}
	e.fs.mu.Unlock()
	if d, first := s.Depth(), s.FirstSeq(); d != 36-int(second+1) || first != second+2 {
		t.Errorf("depth %d, first seq %d; want %d, %d", d, first, 36-int(second+1), second+2)
	}
	if n := mustAck(t, s, 36); n != 36-int(second+1) {
		t.Errorf("Ack(36) removed %d", n)
	}
	last := before[len(before)-1]
	if got := e.segments(); !slices.Equal(got, []string{last}) {
		t.Errorf("after acknowledging everything: %v, want the active %s alone", got, last)
	}
	if b, _ := s.Stats(); b != 0 || s.Depth() != 0 || s.FirstSeq() != 37 {
		t.Errorf("bytes %d, depth %d, first seq %d; want 0, 0, 37", b, s.Depth(), s.FirstSeq())
	}
	// The active segment is replaced once it is SegmentAge old (the
	// timer), by an empty one holding the seq counter.
	e.clock.Advance(DefaultSegmentAge)
	if got := e.segments(); !slices.Equal(got, []string{segmentName(37)}) {
		t.Errorf("SegmentAge later: %v, want %s", got, segmentName(37))
	}
	if got := mustAppend(t, s, tick("pi", 1, spoolEpoch)); got[0].Seq != 37 {
		t.Errorf("next seq %d, want 37", got[0].Seq)
	}
}

// TestSpoolRotation: a segment is rotated for its size while readings
// wait (after syncing them, whatever the policy), and for its age once
// acknowledged — never while it holds readings waiting, nor while young.
func TestSpoolRotation(t *testing.T) {
	tests := []struct {
		name  string
		sync  SyncPolicy
		ack   bool          // acknowledge each tick
		step  time.Duration // between ticks
		ticks int
		// wantSeg are the segments at the end; nil: several, rotated for
		// their size.
		wantSeg []string
	}{
		{name: "size, window", sync: SyncPolicy{}, step: time.Second, ticks: 9},
		{name: "size, os", sync: SyncPolicy{Mode: SyncOS}, step: time.Second, ticks: 9},
		{name: "size, every", sync: SyncPolicy{Mode: SyncEvery}, step: time.Second, ticks: 9},
		{name: "young and acknowledged: kept", sync: SyncPolicy{}, ack: true, step: time.Second, ticks: 2,
			wantSeg: []string{segmentName(1)}},
		{name: "old and acknowledged: replaced", sync: SyncPolicy{}, ack: true, step: 10 * time.Second, ticks: 4,
			wantSeg: []string{segmentName(10)}},
		{name: "old, not acknowledged: kept", sync: SyncPolicy{}, step: 15 * time.Second, ticks: 2,
			wantSeg: []string{segmentName(1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSpoolEnv(t, SpoolOptions{Sync: tc.sync, SegmentBytes: 700, SegmentAge: 20 * time.Second})
			s := e.open()
			defer s.Close()
			for range tc.ticks {
				e.clock.Advance(tc.step)
				out := mustAppend(t, s, tick("pi", 3, e.clock.Now()))
				if tc.ack {
					mustAck(t, s, out[len(out)-1].Seq)
				}
			}
			segs := e.segments()
			if tc.wantSeg != nil && !slices.Equal(segs, tc.wantSeg) {
				t.Fatalf("segments %v, want %v", segs, tc.wantSeg)
			}
			if tc.wantSeg == nil && len(segs) < 3 {
				t.Fatalf("segments %v, want several", segs)
			}
			// Named by their first seq; never grown past their
			// preallocated size.
			for _, name := range segs {
				first, _ := parseSegmentName(name)
				page, err := s.Pending(first-1, 1)
				if !tc.ack && (err != nil || len(page) != 1 || page[0].Seq != first) {
					t.Errorf("%s: the first reading pending from it is %v, %v", name, page, err)
				}
				if fi, _ := e.fs.Stat(filepath.Join(e.path, name)); fi.Size() != 700 {
					t.Errorf("%s: %d bytes, want 700", name, fi.Size())
				}
			}
			// A segment holding readings that wait is synced before the
			// next one is made.
			e.fs.mu.Lock()
			defer e.fs.mu.Unlock()
			dirty := map[int]bool{}
			prev := -1
			for _, op := range e.fs.ops {
				switch op.kind {
				case opWrite:
					dirty[op.ino] = true
				case opSync:
					dirty[op.ino] = false
				case opCreate:
					if !strings.HasSuffix(op.path, segmentExt) {
						continue
					}
					if prev >= 0 && dirty[prev] && !tc.ack {
						t.Errorf("%s made while the segment before it was not synced", op.path)
					}
					prev = op.ino
				}
			}
		})
	}
}

// TestSpoolDropsOldestTicks: past MaxBytes whole ticks go, oldest first,
// counted; FirstSeq moves up; acknowledged space is given back; the count
// survives a restart.
func TestSpoolDropsOldestTicks(t *testing.T) {
	r := tick("pi", 3, spoolEpoch)
	// held is what the spool counts for the ticks holding seqs from..to.
	content := map[uint64]uint64{}
	held := func(from, to uint64) uint64 {
		n := uint64(0)
		for q := from; q <= to; q++ {
			n += content[q]
		}
		return n
	}
	e := newSpoolEnv(t, SpoolOptions{SegmentBytes: 700})
	e.opts.MaxBytes = 1100 // four ticks and about a half
	s := e.open()
	total := 0
	for range 10 {
		out, dropped, err := s.Append(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range out {
			content[sp.Seq] = uint64(len(sp.Sensor) + 1 + len(sp.Payload))
		}
		total += dropped
	}
	if held(19, 30) > 1100 || held(16, 30) <= 1100 {
		t.Fatalf("the test's bound does not hold four ticks: %d, %d", held(19, 30), held(16, 30))
	}
	if total != 18 || s.Depth() != 12 || s.FirstSeq() != 19 {
		t.Fatalf("dropped %d, depth %d, first seq %d; want 18, 12, 19", total, s.Depth(), s.FirstSeq())
	}
	if b, d := s.Stats(); b != held(19, 30) || d != 18 {
		t.Errorf("stats %d bytes, %d dropped; want %d, 18", b, d, held(19, 30))
	}
	if got := allPending(t, s, 100); !slices.Equal(seqsOf(got), seqRange(19, 30)) {
		t.Errorf("pending %v", seqsOf(got))
	}
	// A partial acknowledgement leaves its tick's bytes held; a whole one
	// gives them back.
	mustAck(t, s, 20)
	if b, _ := s.Stats(); b != held(19, 30) || s.Depth() != 10 {
		t.Errorf("after ack 20: %d bytes, depth %d", b, s.Depth())
	}
	mustAck(t, s, 24)
	if b, _ := s.Stats(); b != held(25, 30) || s.Depth() != 6 {
		t.Errorf("after ack 24: %d bytes, depth %d", b, s.Depth())
	}
	if _, dropped, _ := s.Append(r); dropped != 0 {
		t.Errorf("dropped %d with room", dropped)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = e.open()
	defer s.Close()
	if _, d := s.Stats(); d != 18 || s.FirstSeq() != 25 || s.Depth() != 9 {
		t.Errorf("reopened: dropped %d, first seq %d, depth %d; want 18, 25, 9", d, s.FirstSeq(), s.Depth())
	}
}

// TestSpoolReopenAfterCleanClose: a clean close keeps everything, the
// acknowledged mark too: nothing acknowledged comes back.
func TestSpoolReopenAfterCleanClose(t *testing.T) {
	for _, policy := range []SyncPolicy{{Mode: SyncEvery}, {}, {Mode: SyncOS}} {
		t.Run(policy.String(), func(t *testing.T) {
			e := newSpoolEnv(t, SpoolOptions{Sync: policy, SegmentBytes: 700})
			s := e.open()
			for i := range 10 {
				mustAppend(t, s, tick("pi", 3, spoolEpoch.Add(time.Duration(i)*time.Second)))
			}
			mustAck(t, s, 13)
			id, pending := s.ID(), allPending(t, s, 100)
			bytes, dropped := s.Stats()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			e.boot = "boot-2" // a reboot after a clean shutdown changes nothing
			s = e.open()
			defer s.Close()
			if s.ID() != id || s.Acked() != 13 || s.LastSeq() != 30 || s.FirstSeq() != 14 || s.Depth() != 17 {
				t.Errorf("reopened: id %s (was %s), acked %d, last %d, first %d, depth %d", s.ID(), id, s.Acked(), s.LastSeq(), s.FirstSeq(), s.Depth())
			}
			if b, d := s.Stats(); b != bytes || d != dropped {
				t.Errorf("stats %d, %d; were %d, %d", b, d, bytes, dropped)
			}
			got := allPending(t, s, 100)
			if len(got) != len(pending) {
				t.Fatalf("pending %v, was %v", seqsOf(got), seqsOf(pending))
			}
			for i := range got {
				if got[i].Seq != pending[i].Seq || got[i].Sensor != pending[i].Sensor || string(got[i].Payload) != string(pending[i].Payload) {
					t.Fatalf("pending[%d] = %+v, was %+v", i, got[i], pending[i])
				}
			}
			if out := mustAppend(t, s, tick("pi", 1, spoolEpoch)); out[0].Seq != 31 {
				t.Errorf("next seq %d, want 31", out[0].Seq)
			}
		})
	}
}

// TestSpoolSyncPolicies: when each policy syncs a segment, over six
// ticks 10 s apart, acknowledged a second later or not at all.
func TestSpoolSyncPolicies(t *testing.T) {
	tests := []struct {
		name string
		sync SyncPolicy
		ack  bool
		// wantTicks counts the segment syncs over the ticks besides one per
		// segment made (every syncs a new segment before using it).
		wantTicks int
		// wantMade: every syncs each segment it makes.
		syncsMade bool
		wantClose int // segment syncs at Close
	}{
		{name: "every", sync: SyncPolicy{Mode: SyncEvery}, wantTicks: 6, syncsMade: true},
		{name: "every, acknowledged", sync: SyncPolicy{Mode: SyncEvery}, ack: true, wantTicks: 6, syncsMade: true},
		// The first unsynced tick (0 s) is synced at 30 s with those after
		// it; the next (30 s) would be at 60 s: after the run.
		{name: "30s", sync: SyncPolicy{Window: 30 * time.Second}, wantTicks: 1, wantClose: 1},
		{name: "30s, acknowledged", sync: SyncPolicy{Window: 30 * time.Second}, ack: true, wantClose: 1},
		{name: "os", sync: SyncPolicy{Mode: SyncOS}, wantClose: 1},
		{name: "os, acknowledged", sync: SyncPolicy{Mode: SyncOS}, ack: true, wantClose: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSpoolEnv(t, SpoolOptions{Sync: tc.sync})
			s := e.open()
			ops := e.fs.opCount()
			for i := range 6 {
				if i > 0 {
					e.clock.Advance(9 * time.Second)
				}
				out := mustAppend(t, s, tick("pi", 3, e.clock.Now()))
				e.clock.Advance(time.Second)
				if tc.ack {
					mustAck(t, s, out[len(out)-1].Seq)
				}
			}
			made := 0
			for _, op := range e.fs.ops[ops:] {
				if op.kind == opCreate && strings.HasSuffix(op.path, segmentExt) {
					made++
				}
			}
			if tc.ack && made == 0 {
				t.Error("no segment replaced in 50 s of acknowledged ticks")
			}
			want := tc.wantTicks
			if tc.syncsMade {
				want += made
			}
			if got := e.segmentSyncs(ops); got != want {
				t.Errorf("%d segment syncs over the ticks, want %d", got, want)
			}
			ops = e.fs.opCount()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := e.segmentSyncs(ops); got != tc.wantClose {
				t.Errorf("%d segment syncs at Close, want %d", got, tc.wantClose)
			}
		})
	}
}

// TestSpoolWear: the counters count what the spool wrote and synced.
func TestSpoolWear(t *testing.T) {
	e := newSpoolEnv(t, SpoolOptions{Sync: SyncPolicy{Window: 30 * time.Second}})
	s := e.open()
	defer s.Close()
	w0 := s.Wear()
	if w0.BytesWritten == 0 || w0.Syncs == 0 || !w0.Since.Equal(spoolEpoch) {
		t.Fatalf("after open %+v: the state file and the first segment are written and synced", w0)
	}
	out := mustAppend(t, s, tick("pi", 3, spoolEpoch))
	w1 := s.Wear()
	if w1.BytesWritten <= w0.BytesWritten || w1.Syncs != w0.Syncs {
		t.Errorf("after an append %+v (was %+v): bytes up, no sync", w1, w0)
	}
	mustAck(t, s, out[len(out)-1].Seq)
	if w := s.Wear(); w != w1 {
		t.Errorf("an acknowledgement wrote: %+v (was %+v)", w, w1)
	}
	mustAppend(t, s, tick("pi", 3, spoolEpoch))
	e.clock.Advance(31 * time.Second)
	if w := s.Wear(); w.Syncs <= w1.Syncs {
		t.Errorf("30 s after an unacknowledged append: %+v, want a sync more than %+v", w, w1)
	}
	// What the memFS saw written is what Wear counts.
	var written uint64
	e.fs.mu.Lock()
	for _, op := range e.fs.ops {
		if op.kind == opWrite {
			written += uint64(len(op.data))
		}
	}
	e.fs.mu.Unlock()
	if w := s.Wear(); w.BytesWritten != written {
		t.Errorf("wear says %d bytes written, the file system saw %d", w.BytesWritten, written)
	}
}

// TestSpoolIdentityAcrossCrashes: the id is kept after a clean close and
// after a kill, and changes after an unclean shutdown followed by a boot
// unless every append was synced.
func TestSpoolIdentityAcrossCrashes(t *testing.T) {
	tests := []struct {
		name   string
		sync   SyncPolicy
		clean  bool
		boot   string
		keepID bool
	}{
		{name: "clean close, reboot", sync: SyncPolicy{}, clean: true, boot: "boot-2", keepID: true},
		{name: "kill", sync: SyncPolicy{}, boot: "boot-1", keepID: true},
		{name: "kill, os", sync: SyncPolicy{Mode: SyncOS}, boot: "boot-1", keepID: true},
		{name: "power cut, window", sync: SyncPolicy{}, boot: "boot-2"},
		{name: "power cut, os", sync: SyncPolicy{Mode: SyncOS}, boot: "boot-2"},
		{name: "power cut, every", sync: SyncPolicy{Mode: SyncEvery}, boot: "boot-2", keepID: true},
		{name: "unknown boot id", sync: SyncPolicy{}, boot: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSpoolEnv(t, SpoolOptions{Sync: tc.sync})
			s := e.open()
			id := s.ID()
			mustAppend(t, s, tick("pi", 3, spoolEpoch))
			if tc.clean {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				// The process is gone: its lock with it, nothing of it runs.
				e.clock.dropTimers()
				e.fs.locks = map[string]bool{}
			}
			e.boot = tc.boot
			s2 := e.open()
			defer s2.Close()
			if got := s2.ID() == id; got != tc.keepID {
				t.Errorf("id %s after %s (was %s): kept %v, want %v", s2.ID(), tc.name, id, got, tc.keepID)
			}
			// The readings stay, with their seqs, whatever the id.
			if got := allPending(t, s2, 10); !slices.Equal(seqsOf(got), []uint64{1, 2, 3}) || s2.LastSeq() != 3 {
				t.Errorf("pending %v, last seq %d", seqsOf(got), s2.LastSeq())
			}
		})
	}
}

// TestSpoolTornTail: a torn record ends the log; the next append never
// follows garbage.
func TestSpoolTornTail(t *testing.T) {
	e := newSpoolEnv(t, SpoolOptions{Sync: SyncPolicy{Mode: SyncOS}})
	s := e.open()
	mustAppend(t, s, tick("pi", 3, spoolEpoch))
	mustAppend(t, s, tick("pi", 3, spoolEpoch))
	mustAppend(t, s, tick("pi", 3, spoolEpoch))
	torn := -1
	for j, op := range e.fs.ops {
		if op.kind == opWrite {
			torn = j // the third tick's record
		}
	}
	for _, keep := range []int{0, 1, 5, len(e.fs.ops[torn].data) - 1} {
		t.Run(fmt.Sprintf("%d bytes", keep), func(t *testing.T) {
			// A kill in the middle of the write: everything else stays.
			st := newMemState()
			for j, op := range e.fs.ops {
				tear := -1
				if j == torn {
					tear = keep
				}
				st.apply(op, tear)
			}
			img := withBase(st, e.fs.nino, nil)
			e2 := &spoolEnv{t: t, fs: img, clock: newFakeClock(spoolEpoch), path: e.path, boot: "boot-1", opts: e.opts}
			s2 := e2.open()
			if got := allPending(t, s2, 100); !slices.Equal(seqsOf(got), seqRange(1, 6)) || s2.LastSeq() != 6 {
				t.Fatalf("pending %v, last %d; want 1–6", seqsOf(got), s2.LastSeq())
			}
			mustAppend(t, s2, tick("pi", 2, spoolEpoch))
			// Zeros after the last record: appended in place; anything
			// else: a new segment takes the appends.
			want := []string{segmentName(1)}
			if keep > 0 {
				want = append(want, segmentName(7))
			}
			if got := e2.segments(); !slices.Equal(got, want) {
				t.Errorf("segments %v, want %v", got, want)
			}
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			s3 := e2.open()
			defer s3.Close()
			if got := allPending(t, s3, 100); !slices.Equal(seqsOf(got), seqRange(1, 8)) {
				t.Errorf("after the next append and a restart: %v, want 1–8", seqsOf(got))
			}
		})
	}
}

// TestSpoolLocked: a second apd-publish on the same spool is refused.
func TestSpoolLocked(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t, SpoolOptions{})
	s := e.open()
	defer s.Close()
	if _, err := e.tryOpen(); err == nil || !strings.Contains(err.Error(), "in use by another apd-publish") {
		t.Fatalf("second open: %v", err)
	}
}

// TestSpoolOnDisk runs the spool on the real file system: preallocated
// segments, acknowledged ones deleted, a restart keeping everything.
func TestSpoolOnDisk(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state", "apd-spool.db")
	clock := newFakeClock(spoolEpoch)
	opts := SpoolOptions{Sync: SyncPolicy{Mode: SyncEvery}, SegmentBytes: 4096, Clock: clock}
	s, err := OpenSpool(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 40 {
		clock.Advance(time.Second)
		mustAppend(t, s, tick("pi", 3, clock.Now()))
	}
	segs, _ := filepath.Glob(filepath.Join(path, "*.seg"))
	if len(segs) < 3 {
		t.Fatalf("segments %v", segs)
	}
	for _, seg := range segs {
		fi, err := os.Stat(seg)
		if err != nil || fi.Size() < 4096 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v", seg, fi, err)
		}
	}
	mustAck(t, s, 100)
	if _, err := os.Stat(segs[0]); !os.IsNotExist(err) {
		t.Errorf("the acknowledged %s is still there: %v", segs[0], err)
	}
	if _, err := OpenSpool(path, opts); err == nil || !strings.Contains(err.Error(), "in use by another apd-publish") {
		t.Errorf("second open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSpool(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := allPending(t, s, 256); !slices.Equal(seqsOf(got), seqRange(101, 120)) || s.LastSeq() != 120 {
		t.Errorf("reopened: pending %v, last %d", seqsOf(got), s.LastSeq())
	}
}
