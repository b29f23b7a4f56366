package publisher

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// newTestRand returns a seeded random source and prints the seed if the
// test fails; APD_SPOOL_SEED=<seed> replays it.
func newTestRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("APD_SPOOL_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("APD_SPOOL_SEED %q: %v", s, err)
		}
		seed = n
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("random seed %d: APD_SPOOL_SEED=%d go test -run '%s' ./publisher/ replays it", seed, seed, t.Name())
		}
	})
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// spoolEvent is one call of the workload, with the file system
// operations it made (those numbered opStart to opEnd, of both file
// systems) and what the spool said after.
type spoolEvent struct {
	kind           string // open, append, ack, advance, close
	opStart, opEnd int64
	at             time.Time
	out            []Spooled // of an append
	floorAfter     uint64    // FirstSeq()-1: everything up to it acknowledged or dropped
	ackedAfter     uint64
}

// crashWorkload is a recorded run of a spool: two runs of apd-publish,
// each opened and closed, through ticks acknowledged at once, an outage
// (size rotations, the size bound dropping ticks), a recovery with
// partial acknowledgements, and segments replaced for their age.
type crashWorkload struct {
	t        *testing.T
	e        *spoolEnv
	rng      *rand.Rand
	s        *Spool
	events   []spoolEvent
	payloads map[uint64]Spooled
	lastOut  []Spooled
	id       string
}

func (w *crashWorkload) do(kind string, fn func()) {
	w.t.Helper()
	ev := spoolEvent{kind: kind, opStart: w.e.opCount(), at: w.e.clock.Now()}
	fn()
	ev.opEnd = w.e.opCount()
	if w.s != nil && kind != "close" {
		ev.floorAfter, ev.ackedAfter = w.s.FirstSeq()-1, w.s.Acked()
	} else if n := len(w.events); n > 0 {
		ev.floorAfter, ev.ackedAfter = w.events[n-1].floorAfter, w.events[n-1].ackedAfter
	}
	if kind == "append" {
		ev.out = w.lastOut
	}
	w.events = append(w.events, ev)
}

func (w *crashWorkload) open() {
	w.do("open", func() { w.s = w.e.open() })
	if w.id == "" {
		w.id = w.s.ID()
	} else if w.s.ID() != w.id {
		w.t.Fatalf("the workload's spool changed id across a clean restart")
	}
}

func (w *crashWorkload) close() {
	w.do("close", func() {
		if err := w.s.Close(); err != nil {
			w.t.Fatal(err)
		}
	})
	w.s = nil
}

// tick advances the clock by step and appends a tick of readings with
// payloads of random sizes; it returns the tick's last seq.
func (w *crashWorkload) tick(step time.Duration) uint64 {
	w.advance(step)
	readings := make([]schema.Reading, 2+w.rng.IntN(2))
	for i := range readings {
		v, _ := json.Marshal(strings.Repeat("x", 10+w.rng.IntN(90)))
		readings[i] = schema.Reading{Host: "pi", Sensor: fmt.Sprintf("s%d", i), Time: w.e.clock.Now(), Value: v}
	}
	w.do("append", func() { w.lastOut = mustAppend(w.t, w.s, readings) })
	for _, sp := range w.lastOut {
		w.payloads[sp.Seq] = sp
	}
	return w.lastOut[len(w.lastOut)-1].Seq
}

func (w *crashWorkload) ack(upTo uint64) { w.do("ack", func() { mustAck(w.t, w.s, upTo) }) }

func (w *crashWorkload) advance(d time.Duration) { w.do("advance", func() { w.e.clock.Advance(d) }) }

func runCrashWorkload(t *testing.T, policy SyncPolicy, rng *rand.Rand) *crashWorkload {
	t.Helper()
	e := newSpoolEnv(t, SpoolOptions{Sync: policy, SegmentBytes: 1000, MaxBytes: 2000, SegmentAge: 20 * time.Second, StagingDir: testStagingDir})
	// The state directory exists, durably, before apd-publish runs.
	_ = e.fs.MkdirAll("/state", 0o755)
	_ = e.fs.SyncDir("/")
	w := &crashWorkload{t: t, e: e, rng: rng, payloads: map[uint64]Spooled{}}

	w.open()
	for range 3 { // acknowledged within a second
		last := w.tick(10 * time.Second)
		w.advance(time.Second)
		w.ack(last)
	}
	for range 9 { // outage: segments rotated for size, ticks dropped
		w.tick(10 * time.Second)
	}
	if _, dropped := w.s.Stats(); dropped == 0 {
		t.Fatal("the outage dropped nothing: the workload does not reach the size bound")
	}
	w.advance(5 * time.Second) // recovery: acknowledged in steps
	w.ack(w.s.FirstSeq())
	w.advance(2 * time.Second)
	w.ack(w.s.LastSeq() - 3)
	w.advance(2 * time.Second)
	w.ack(w.s.LastSeq())
	for range 3 { // acknowledged a tick late
		prev := w.s.LastSeq()
		w.tick(10 * time.Second)
		w.advance(time.Second)
		w.ack(prev)
	}
	w.close()

	w.open() // the same boot: a restart of the service
	for range 3 {
		last := w.tick(10 * time.Second)
		w.advance(time.Second)
		w.ack(last)
	}
	w.advance(25 * time.Second) // the acknowledged segment is replaced
	last := w.tick(10 * time.Second)
	w.advance(40 * time.Second) // acknowledged late: a window's sync first
	w.ack(last)
	w.tick(10 * time.Second)
	w.close()
	made, removed, moved := 0, 0, 0
	for _, op := range slices.Concat(e.fs.ops, e.staging.ops) {
		if strings.HasSuffix(op.path, segmentExt) && op.kind == opCreate {
			made++
		}
		if strings.HasSuffix(op.path, segmentExt) && op.kind == opRemove {
			removed++
		}
	}
	for _, op := range e.fs.ops {
		if strings.HasSuffix(op.path, segmentExt) && op.kind == opWrite && op.off == 0 && len(op.data) > segmentHeaderSize {
			moved++
		}
	}
	if made < 5 || removed < 4 {
		t.Fatalf("the workload made %d segments and removed %d: too few rotations", made, removed)
	}
	if policy.Mode == SyncWindow && moved < 2 {
		t.Fatalf("the workload moved %d staged segments to the spool directory: too few", moved)
	}
	return w
}

// opRef names an operation of the workload: the index in the ops of the
// spool directory's file system, or of the staging directory's.
type opRef struct {
	staging bool
	i       int
}

// allOps returns the operations of both file systems in the order they
// were made.
func (w *crashWorkload) allOps() []opRef {
	refs := make([]opRef, 0, len(w.e.fs.ops)+len(w.e.staging.ops))
	for i := range w.e.fs.ops {
		refs = append(refs, opRef{i: i})
	}
	for i := range w.e.staging.ops {
		refs = append(refs, opRef{staging: true, i: i})
	}
	slices.SortFunc(refs, func(a, b opRef) int { return cmp.Compare(w.op(a).n, w.op(b).n) })
	return refs
}

func (w *crashWorkload) op(r opRef) fsOp {
	if r.staging {
		return w.e.staging.ops[r.i]
	}
	return w.e.fs.ops[r.i]
}

var crashCRC = crc32.MakeTable(crc32.Castagnoli)

// frameSeqs reads the seqs of a record frame as the workload wrote it,
// without the spool's code.
func frameSeqs(data []byte) (first uint64, count uint32, ok bool) {
	if len(data) < 20 || int(binary.LittleEndian.Uint32(data)) != len(data)-8 ||
		crc32.Checksum(data[8:], crashCRC) != binary.LittleEndian.Uint32(data[4:]) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(data[8:]), binary.LittleEndian.Uint32(data[16:]), true
}

// writtenRecord is a record a write holds: its bytes in the write's
// data, its seqs.
type writtenRecord struct {
	from, to    int
	first, last uint64
}

// writeRecords returns the records a write holds: one appended, or those
// of a segment copied whole (header and records) from the staging
// directory.
func writeRecords(op fsOp) []writtenRecord {
	at := 0
	if op.off == 0 && len(op.data) >= segmentHeaderSize && string(op.data[:len(segmentMagic)]) == segmentMagic {
		at = segmentHeaderSize
	}
	var recs []writtenRecord
	for len(op.data)-at >= 8 {
		n := int(binary.LittleEndian.Uint32(op.data[at:]))
		if n == 0 || at+8+n > len(op.data) {
			break
		}
		first, count, ok := frameSeqs(op.data[at : at+8+n])
		if !ok {
			break
		}
		recs = append(recs, writtenRecord{from: at, to: at + 8 + n, first: first, last: first + uint64(count) - 1})
		at += 8 + n
	}
	return recs
}

// TestSpoolCrashConsistency takes a crash after every file system
// operation of a recorded workload, under each sync policy, and checks
// what the spool finds when it opens again:
//   - every reading synced and not acknowledged (or dropped) is pending,
//     exactly once, with the payload it was published with; with every
//     each reading Append returned is, with a window each that waited the
//     window unacknowledged is; after a kill each that was appended is;
//   - a torn record is never returned;
//   - acknowledged readings come back only from the segments that
//     survived (never below the mark the state file recorded);
//   - the pending seqs run without a gap from FirstSeq to LastSeq, and
//     LastSeq is at least the highest seq that reached the disk;
//   - the id stays after a kill and a clean close, and changes after a
//     power cut unless every append was synced;
//   - the spool appends and restarts cleanly after it.
func TestSpoolCrashConsistency(t *testing.T) {
	policies := []SyncPolicy{{Mode: SyncEvery}, {Mode: SyncWindow, Window: 30 * time.Second}, {Mode: SyncOS}}
	modes := []crashMode{crashKill, crashDropUnsynced, crashPrefix, crashTear, crashLoseRename}
	for _, policy := range policies {
		t.Run(policy.String(), func(t *testing.T) {
			t.Parallel()
			rng := newTestRand(t)
			w := runCrashWorkload(t, policy, rng)
			refs := w.allOps()
			t.Logf("%d operations (%d on the staging directory), %d events", len(refs), len(w.e.staging.ops), len(w.events))
			for cut := 0; cut <= len(refs); cut++ {
				for _, mode := range modes {
					w.checkCrash(t, policy, refs, cut, mode, rng)
					if t.Failed() {
						return
					}
				}
			}
		})
	}
}

// checkCrash takes a crash after the first cut operations of refs (of
// both file systems): the spool directory's image is crashImage's, the
// staging directory keeps everything through a kill and nothing through
// a power cut.
func (w *crashWorkload) checkCrash(t *testing.T, policy SyncPolicy, refs []opRef, globalCut int, mode crashMode, rng *rand.Rand) {
	t.Helper()
	ops := w.e.fs.ops
	cut, stagingCut := 0, 0 // of each file system's operations
	for _, r := range refs[:globalCut] {
		if r.staging {
			stagingCut++
		} else {
			cut++
		}
	}
	where := fmt.Sprintf("%s after operation %d of %d", mode, globalCut, len(refs))
	crashAt := spoolEpoch
	if globalCut > 0 {
		last := refs[globalCut-1]
		tier := ""
		if last.staging {
			tier = "staging "
		}
		where += fmt.Sprintf(" (%s%s)", tier, w.op(last))
		crashAt = w.op(last).at
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s", where, fmt.Sprintf(format, args...))
	}
	img, c := w.e.fs.crashImage(cut, mode, rng, nil)
	stagingImg := newMemFS(nil) // a reboot empties a tmpfs
	if mode == crashKill {
		stagingImg, _ = w.e.staging.crashImage(stagingCut, crashKill, rng, nil)
	}

	// What the workload knew at the crash.
	var floor, stateAcked, lastAppended uint64
	openDone, closeDone := int64(-1), int64(-1) // the last open and close completed
	var appended []Spooled                      // by appends that returned
	inClose := false                            // the crash came while Close wrote the clean state
	gcut := int64(globalCut)
	var closes []int64
	for _, ev := range w.events {
		if ev.opStart <= gcut {
			floor = max(floor, ev.floorAfter)
		}
		if ev.kind == "close" {
			closes = append(closes, ev.opEnd)
			inClose = inClose || ev.opStart < gcut && gcut < ev.opEnd
		}
		if ev.opEnd > gcut {
			continue
		}
		switch ev.kind {
		case "open":
			openDone, stateAcked = ev.opEnd, ev.ackedAfter
		case "close":
			closeDone, stateAcked = ev.opEnd, ev.ackedAfter
		case "append":
			appended = append(appended, ev.out...)
			lastAppended = ev.out[len(ev.out)-1].Seq
		}
	}
	// The records that reached the disk: written, synced, in a file that
	// is reachable after the crash.
	durable := map[uint64]bool{}
	var maxDurable uint64
	torn := map[uint64]bool{}
	for j := range cut {
		op := ops[j]
		if op.kind != opWrite {
			continue
		}
		recs := writeRecords(op)
		reachable := img.st.names[op.path] == op.ino && img.st.dirs[w.e.path]
		for _, r := range recs {
			if c.synced[j] && reachable {
				for q := r.first; q <= r.last; q++ {
					durable[q] = true
				}
				maxDurable = max(maxDurable, r.last)
			}
			if j == c.torn {
				d, from, to := img.st.data[op.ino], op.off+int64(r.from), op.off+int64(r.to)
				if int64(len(d)) < to || !bytes.Equal(d[from:to], op.data[r.from:r.to]) {
					for q := r.first; q <= r.last; q++ {
						torn[q] = true
					}
				}
			}
		}
	}
	want := map[uint64]string{} // seq → why it must be pending
	for q := range durable {
		if q > floor {
			want[q] = "synced"
		}
	}
	if mode == crashKill {
		for _, sp := range appended {
			if sp.Seq > floor {
				want[sp.Seq] = "appended before a kill"
			}
		}
	}
	if policy.Mode == SyncEvery {
		for _, sp := range appended {
			if sp.Seq > floor && !durable[sp.Seq] && mode != crashKill {
				fail("seq %d: Append returned under --sync every, but it is not on the disk", sp.Seq)
			}
		}
	}
	if policy.Mode == SyncWindow {
		for _, ev := range w.events {
			if ev.kind != "append" || ev.opEnd > gcut || ev.at.Add(policy.Window+10*time.Second).After(crashAt) {
				continue
			}
			for _, sp := range ev.out {
				if sp.Seq > floor && !durable[sp.Seq] {
					fail("seq %d: appended at %s, unacknowledged %s later, not on the disk", sp.Seq, ev.at.Format(time.TimeOnly), crashAt.Sub(ev.at))
				}
			}
		}
	}

	boot := "boot-2"
	if mode == crashKill {
		boot = "boot-1"
	}
	e2 := &spoolEnv{t: t, fs: img, staging: stagingImg, clock: newFakeClock(crashAt.Add(time.Minute)), path: w.e.path, boot: boot, opts: w.e.opts}
	s, err := e2.tryOpen()
	if err != nil {
		fail("open: %v", err)
		return
	}
	pending, err := s.Pending(0, 1<<20)
	if err != nil {
		fail("pending: %v", err)
	}
	got := map[uint64]bool{}
	for i, p := range pending {
		if i > 0 && p.Seq <= pending[i-1].Seq {
			fail("pending out of order or twice: %d after %d", p.Seq, pending[i-1].Seq)
		}
		got[p.Seq] = true
		orig, ok := w.payloads[p.Seq]
		if !ok || orig.Sensor != p.Sensor || !bytes.Equal(orig.Payload, p.Payload) {
			fail("seq %d: pending %s %s, appended %s %s", p.Seq, p.Sensor, p.Payload, orig.Sensor, orig.Payload)
		}
		if torn[p.Seq] {
			fail("seq %d of the torn record is pending", p.Seq)
		}
		if p.Seq <= stateAcked {
			fail("seq %d is pending, below the acknowledgement %d the state file holds", p.Seq, stateAcked)
		}
	}
	for q, why := range want {
		if !got[q] {
			fail("seq %d (%s) is not pending; pending %v", q, why, seqsOf(pending))
		}
	}
	first, last, depth := s.FirstSeq(), s.LastSeq(), s.Depth()
	if len(pending) > 0 && (pending[0].Seq != first || pending[len(pending)-1].Seq != last || uint64(len(pending)) != last-first+1) ||
		len(pending) == 0 && first != last+1 || depth != len(pending) {
		fail("pending %v with first seq %d, last seq %d, depth %d: want them to run from first to last without a gap", seqsOf(pending), first, last, depth)
	}
	if last < maxDurable {
		fail("last seq %d below seq %d, which reached the disk", last, maxDurable)
	}
	if (mode == crashKill || policy.Mode == SyncEvery) && last < lastAppended {
		fail("last seq %d below seq %d, which Append returned", last, lastAppended)
	}

	// The identity, where the workload's state says what it must be.
	id := s.ID()
	steady := openDone > closeDone && !inClose // between an open and a close
	cleanEnd := gcut >= closes[len(closes)-1]
	switch {
	case openDone < 0:
	case mode == crashKill || policy.Mode == SyncEvery || cleanEnd:
		if steady || cleanEnd {
			if id != w.id {
				fail("id changed to %s (was %s)", id, w.id)
			}
		}
	case steady:
		if id == w.id {
			fail("id %s kept after a power cut under --sync %s", id, policy)
		}
	}

	// What a restart found is on the disk before anything builds on it:
	// a power cut right after a kill's restart loses none of it.
	if mode == crashKill {
		img2, _ := img.crashImage(img.opCount(), crashDropUnsynced, rng, nil)
		e3 := &spoolEnv{t: t, fs: img2, staging: newMemFS(nil), clock: newFakeClock(crashAt.Add(2 * time.Minute)), path: w.e.path, boot: "boot-3", opts: w.e.opts}
		s3, err := e3.tryOpen()
		if err != nil {
			fail("open after a kill and a power cut: %v", err)
			return
		}
		after, err := s3.Pending(0, 1<<20)
		if err != nil || !slices.Equal(seqsOf(after), seqsOf(pending)) || s3.LastSeq() < last {
			fail("a power cut after the restart that followed a kill: pending %v, last seq %d (%v); want %v, %d", seqsOf(after), s3.LastSeq(), err, seqsOf(pending), last)
		}
		s3.Close()
	}

	// It goes on: the next append follows, and survives a restart.
	out, dropped, err := s.Append([]schema.Reading{{Host: "pi", Sensor: "after", Time: crashAt, Value: json.RawMessage("1")}})
	if err != nil || out[0].Seq != last+1 {
		fail("append after reopening: %v, %v; want seq %d", out, err, last+1)
		return
	}
	wantAgain := append(seqsOf(pending)[min(dropped, len(pending)):], last+1)
	if err := s.Close(); err != nil {
		fail("close: %v", err)
	}
	s, err = e2.tryOpen()
	if err != nil {
		fail("open again: %v", err)
		return
	}
	defer s.Close()
	again, err := s.Pending(0, 1<<20)
	if err != nil || !slices.Equal(seqsOf(again), wantAgain) || s.ID() != id {
		fail("after a clean restart: pending %v, id %s (%v); want %v, %s", seqsOf(again), s.ID(), err, wantAgain, id)
	}
}
