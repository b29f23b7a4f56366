package publisher

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// stagingEnv is a spool environment that stages under the window policy.
func stagingEnv(t *testing.T, opts SpoolOptions) *spoolEnv {
	t.Helper()
	opts.StagingDir = testStagingDir
	return newSpoolEnv(t, opts)
}

// stagedSegments returns the names of the segment files in the staging
// directory.
func (e *spoolEnv) stagedSegments() []string {
	e.t.Helper()
	names, err := e.staging.ReadDir(testStagingDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return slices.DeleteFunc(names, func(n string) bool { return !strings.HasSuffix(n, segmentExt) })
}

// cardOps returns the spool directory's operations from from on.
func (e *spoolEnv) cardOps(from int) []fsOp {
	e.fs.mu.Lock()
	defer e.fs.mu.Unlock()
	return slices.Clone(e.fs.ops[from:])
}

// kill plays the death of the process: its timers and lock go, its
// files stay, on both file systems.
func (e *spoolEnv) kill() {
	e.clock.dropTimers()
	e.fs.locks = map[string]bool{}
}

// powerCut returns the environment a power cut and a reboot leave: the
// spool directory keeps what was synced, the staging directory nothing.
func (e *spoolEnv) powerCut() *spoolEnv {
	e.kill()
	img, _ := e.fs.crashImage(e.fs.opCount(), crashDropUnsynced, nil, nil)
	return &spoolEnv{t: e.t, fs: img, staging: newMemFS(nil), clock: newFakeClock(e.clock.Now().Add(time.Minute)), path: e.path, boot: "boot-2", opts: e.opts}
}

// TestSpoolStagingAcknowledgedNeverReachesCard: with the window policy
// and a staging directory, ticks acknowledged within a second make no
// operation at all in the spool directory, for many rotations; Close
// writes the state file only. Wear counts none of the staged writes.
func TestSpoolStagingAcknowledgedNeverReachesCard(t *testing.T) {
	e := stagingEnv(t, SpoolOptions{SegmentBytes: 2000})
	s := e.open()
	ops, wear := e.fs.opCount(), s.Wear()
	stagedOps := e.staging.opCount()
	for range 60 { // ten minutes of 10 s ticks
		e.clock.Advance(9 * time.Second)
		out := mustAppend(t, s, tick("pi", 13, e.clock.Now()))
		e.clock.Advance(time.Second)
		mustAck(t, s, out[len(out)-1].Seq)
	}
	if got := e.cardOps(ops); len(got) != 0 {
		t.Errorf("acknowledged ticks made %d operations in the spool directory, first %s", len(got), got[0])
	}
	if w := s.Wear(); w != wear {
		t.Errorf("wear moved from %+v to %+v: staged writes are not the storage's", wear, w)
	}
	made := 0
	for _, op := range e.staging.ops[stagedOps:] {
		if op.kind == opCreate && strings.HasSuffix(op.path, segmentExt) {
			made++
		}
	}
	if made < 20 || len(e.stagedSegments()) != 1 {
		t.Errorf("%d segments made in the staging directory, %v there now: want them replaced every 20 s, one left", made, e.stagedSegments())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, op := range e.cardOps(ops) {
		if !strings.HasPrefix(filepath.Base(op.path), stateFile) && op.kind != opSyncDir {
			t.Errorf("Close did %s in the spool directory: only the state file is written", op)
		}
	}
	if segs, staged := e.segments(), e.stagedSegments(); len(segs)+len(staged) != 0 {
		t.Errorf("after Close: segments %v, staged %v; want none, everything was acknowledged", segs, staged)
	}
	// The seq counter is in the state file.
	e.boot = "boot-2"
	e.staging = newMemFS(nil)
	s = e.open()
	defer s.Close()
	if got := mustAppend(t, s, tick("pi", 1, e.clock.Now())); got[0].Seq != 60*13+1 {
		t.Errorf("after a clean stop and a reboot the next seq is %d, want %d", got[0].Seq, 60*13+1)
	}
}

// TestSpoolStagingMovesUnacknowledged: readings not acknowledged within
// the window have their segment moved to the spool directory: copied
// under the same name, synced with the directory, the staged file
// removed; later appends to it go to the copy; the next segment is
// staged again. Nothing younger than the window is moved.
func TestSpoolStagingMovesUnacknowledged(t *testing.T) {
	e := stagingEnv(t, SpoolOptions{SegmentBytes: 700, Sync: SyncPolicy{Window: 30 * time.Second}})
	s := e.open()
	defer s.Close()
	ops := e.fs.opCount()
	mustAppend(t, s, tick("pi", 3, e.clock.Now()))
	e.clock.Advance(29 * time.Second)
	if got := e.cardOps(ops); len(got) != 0 || len(e.segments()) != 0 {
		t.Fatalf("within the window: %v in the spool directory", got)
	}
	e.clock.Advance(time.Second)
	name := segmentName(1)
	if got := e.segments(); !slices.Equal(got, []string{name}) {
		t.Fatalf("a window later: segments %v, want %s moved", got, name)
	}
	if got := e.stagedSegments(); len(got) != 0 {
		t.Errorf("the staged copy is still there: %v", got)
	}
	var synced, dirSynced bool
	for _, op := range e.cardOps(ops) {
		switch {
		case op.kind == opSync && filepath.Base(op.path) == name:
			synced = true
		case op.kind == opSyncDir && op.path == e.path && synced:
			dirSynced = true
		}
	}
	if !synced || !dirSynced {
		t.Errorf("the move synced the copy %v and then the directory %v: want both", synced, dirSynced)
	}
	if fi, _ := e.fs.Stat(filepath.Join(e.path, name)); fi.Size() != 700 {
		t.Errorf("the copy is %d bytes, want preallocated to 700: it takes appends", fi.Size())
	}
	// It goes on in the copy, with the window's syncs.
	mustAppend(t, s, tick("pi", 3, e.clock.Now()))
	if got := e.stagedSegments(); len(got) != 0 {
		t.Errorf("an append after the move made %v in the staging directory", got)
	}
	if got := allPending(t, s, 100); !slices.Equal(seqsOf(got), seqRange(1, 6)) {
		t.Errorf("pending %v", seqsOf(got))
	}
	syncs := e.segmentSyncs(ops)
	e.clock.Advance(30 * time.Second)
	if e.segmentSyncs(ops) != syncs+1 {
		t.Errorf("the append to the moved segment was not synced a window later")
	}
	// Rotated for its size, the next segment is staged.
	for range 3 {
		mustAppend(t, s, tick("pi", 3, e.clock.Now()))
	}
	if staged := e.stagedSegments(); len(staged) == 0 || len(e.segments()) != 1 {
		t.Fatalf("after a rotation: segments %v, staged %v; want the new one staged", e.segments(), staged)
	}
	// Acknowledged, the moved segment goes; the staged one never moved.
	mustAck(t, s, s.LastSeq())
	e.clock.Advance(time.Minute)
	if segs := e.segments(); len(segs) != 0 {
		t.Errorf("acknowledged: segments %v left in the spool directory", segs)
	}
}

// TestSpoolStagingMovesInSeqOrder: staged segments are moved oldest
// first, and those whose readings are younger than the window stay.
func TestSpoolStagingMovesInSeqOrder(t *testing.T) {
	e := stagingEnv(t, SpoolOptions{SegmentBytes: 400, Sync: SyncPolicy{Window: 30 * time.Second}})
	s := e.open()
	defer s.Close()
	for range 6 { // a segment a tick, 10 s apart
		mustAppend(t, s, tick("pi", 3, e.clock.Now()))
		e.clock.Advance(10 * time.Second)
	}
	// At 60 s the ticks of 0–30 s waited a window.
	segs, staged := e.segments(), e.stagedSegments()
	if len(segs) < 3 || len(staged) < 2 {
		t.Fatalf("segments %v, staged %v: want the oldest moved, the youngest staged", segs, staged)
	}
	lastMoved, _ := parseSegmentName(segs[len(segs)-1])
	firstStaged, _ := parseSegmentName(staged[0])
	if lastMoved >= firstStaged {
		t.Errorf("moved %v, staged %v: a staged segment is older than a moved one", segs, staged)
	}
	if got := allPending(t, s, 100); !slices.Equal(seqsOf(got), seqRange(1, 18)) {
		t.Errorf("pending %v", seqsOf(got))
	}
}

// TestSpoolStagingClose: Close moves the staged segments holding
// readings not acknowledged to the spool directory, synced, and deletes
// the others; a reboot after it loses nothing and keeps the id.
func TestSpoolStagingClose(t *testing.T) {
	e := stagingEnv(t, SpoolOptions{SegmentBytes: 700})
	s := e.open()
	for range 6 {
		mustAppend(t, s, tick("pi", 3, e.clock.Now()))
		e.clock.Advance(time.Second)
	}
	mustAck(t, s, 4)
	id := s.ID()
	if len(e.segments()) != 0 {
		t.Fatalf("segments %v before the window", e.segments())
	}
	ops := e.fs.opCount()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.staging.Stat(testStagingDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the staging directory is left after a clean Close: %v", err)
	}
	if e.segmentSyncs(ops) != len(e.segments()) || len(e.segments()) == 0 {
		t.Errorf("Close moved %v and made %d segment syncs: want each moved one synced", e.segments(), e.segmentSyncs(ops))
	}
	e2 := e.powerCut() // after the clean stop
	s = e2.open()
	defer s.Close()
	if got := allPending(t, s, 100); !slices.Equal(seqsOf(got), seqRange(5, 18)) || s.ID() != id {
		t.Errorf("after Close and a reboot: pending %v, id %s (was %s); want 5–18, the same id", seqsOf(got), s.ID(), id)
	}
}

// TestSpoolStagingKill: a kill leaves the staged segments, which the next
// open finds, keeping the id, and moves to the spool directory so that a
// power cut after it loses nothing; a power cut instead loses them, and
// the spool takes a new id with its seqs running without a gap.
func TestSpoolStagingKill(t *testing.T) {
	for _, tc := range []struct {
		name  string
		power bool
	}{{name: "kill"}, {name: "power cut", power: true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := stagingEnv(t, SpoolOptions{SegmentBytes: 700})
			s := e.open()
			for range 3 { // moved to the spool directory, a window later
				mustAppend(t, s, tick("pi", 3, e.clock.Now()))
			}
			e.clock.Advance(40 * time.Second)
			for range 4 { // staged: 10–21
				mustAppend(t, s, tick("pi", 3, e.clock.Now()))
				e.clock.Advance(time.Second)
			}
			mustAck(t, s, 2)
			id := s.ID()
			if len(e.segments()) == 0 || len(e.stagedSegments()) == 0 {
				t.Fatalf("segments %v, staged %v: want both tiers used", e.segments(), e.stagedSegments())
			}
			firstStaged, _ := parseSegmentName(e.stagedSegments()[0])
			e2 := e
			if tc.power {
				e2 = e.powerCut()
			} else {
				e.kill()
			}
			s2 := e2.open()
			defer s2.Close()
			got := seqsOf(allPending(t, s2, 100))
			if !tc.power {
				if !slices.Equal(got, seqRange(1, 21)) || s2.ID() != id || s2.LastSeq() != 21 {
					t.Errorf("after a kill: pending %v, last %d, id %s (was %s); want 1–21 (the acknowledgement lags), 21, the same id", got, s2.LastSeq(), s2.ID(), id)
				}
				if staged := e2.stagedSegments(); len(staged) != 0 {
					t.Errorf("the staged segments found were not moved: %v", staged)
				}
				e3 := e2.powerCut()
				s3 := e3.open()
				defer s3.Close()
				if again := seqsOf(allPending(t, s3, 100)); !slices.Equal(again, got) {
					t.Errorf("a power cut after the restart: pending %v, want %v", again, got)
				}
				return
			}
			if s2.ID() == id {
				t.Errorf("id %s kept after a power cut lost staged readings", id)
			}
			first, last := s2.FirstSeq(), s2.LastSeq()
			if !slices.Equal(got, seqRange(first, last)) || !slices.Equal(got, seqRange(1, firstStaged-1)) {
				t.Errorf("after a power cut: pending %v, first %d, last %d; want 1–%d (what the spool directory held) without a gap", got, first, last, firstStaged-1)
			}
		})
	}
}

// TestSpoolStagingSegmentInBothTiers: a segment found in both
// directories (a move that did not finish) is read once: the spool
// directory's copy when it is whole, the staged one otherwise; the other
// copy is deleted.
func TestSpoolStagingSegmentInBothTiers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		partial bool // the copy lost its last record
	}{{name: "whole copy"}, {name: "partial copy", partial: true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := stagingEnv(t, SpoolOptions{SegmentBytes: 2000})
			s := e.open()
			for range 4 {
				mustAppend(t, s, tick("pi", 3, e.clock.Now()))
			}
			e.kill()
			// Copy the staged segment to the spool directory as a move
			// would, without removing it.
			name := segmentName(1)
			src, _ := e.staging.OpenFile(filepath.Join(testStagingDir, name), os.O_RDONLY, 0)
			size, _ := src.Size()
			data := make([]byte, size)
			src.ReadAt(data, 0)
			if tc.partial {
				data = data[:size-10]
			}
			dst, _ := e.fs.OpenFile(filepath.Join(e.path, name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
			dst.WriteAt(data, 0)
			dst.Close()

			s2 := e.open()
			defer s2.Close()
			if got := allPending(t, s2, 100); !slices.Equal(seqsOf(got), seqRange(1, 12)) {
				t.Errorf("pending %v, want 1–12 once", seqsOf(got))
			}
			// Either way the segment ends in the spool directory (open
			// moves what it finds staged), once.
			if segs, staged := e.segments(), e.stagedSegments(); !slices.Equal(segs, []string{name}) || len(staged) != 0 {
				t.Errorf("segments %v, staged %v; want %s in the spool directory alone", segs, staged, name)
			}
		})
	}
}

// TestSpoolStagingPolicies: every and os never stage; a window does.
func TestSpoolStagingPolicies(t *testing.T) {
	for _, policy := range []SyncPolicy{{Mode: SyncEvery}, {Mode: SyncOS}, {}} {
		t.Run(policy.String(), func(t *testing.T) {
			e := stagingEnv(t, SpoolOptions{Sync: policy})
			s := e.open()
			defer s.Close()
			mustAppend(t, s, tick("pi", 3, e.clock.Now()))
			staged := len(e.staging.ops) > 0
			if want := policy.Mode == SyncWindow; staged != want || want == (len(e.segments()) > 0) {
				t.Errorf("staging directory used: %v, segments in the spool directory %v", staged, e.segments())
			}
		})
	}
}

// TestSpoolStagingDirectoryGone: a run killed and restarted with its
// staging directory emptied (not a reboot: the directory given up, or
// removed by the service manager) takes a new id, since what it staged
// is lost.
func TestSpoolStagingDirectoryGone(t *testing.T) {
	e := stagingEnv(t, SpoolOptions{})
	s := e.open()
	id := s.ID()
	mustAppend(t, s, tick("pi", 3, e.clock.Now()))
	e.kill()
	e.staging = newMemFS(nil)
	s2 := e.open()
	defer s2.Close()
	if s2.ID() == id {
		t.Errorf("id %s kept though the staged readings are gone", id)
	}
	if got := mustAppend(t, s2, tick("pi", 1, e.clock.Now())); got[0].Seq != 1 {
		t.Errorf("next seq %d, want 1: the lost seqs are issued again under the new id", got[0].Seq)
	}
}

// TestChooseStagingDir picks directories on a tmpfs only, one per spool,
// of mode 0700.
func TestChooseStagingDir(t *testing.T) {
	shm := "/dev/shm"
	if ok, err := onTmpfs(shm); err != nil || !ok {
		t.Skipf("%s is not a tmpfs here", shm)
	}
	base, err := os.MkdirTemp(shm, "apd-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })

	if dir, err := ChooseStagingDir("/var/lib/x/spool", "none"); dir != "" || err != nil {
		t.Errorf("none: %q, %v", dir, err)
	}
	a, err := ChooseStagingDir("/var/lib/x/spool", base)
	if err != nil || filepath.Dir(a) != base {
		t.Fatalf("explicit tmpfs directory: %q, %v", a, err)
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, %v; want mode 0700", a, fi, err)
	}
	if again, _ := ChooseStagingDir("/var/lib/x/spool", base); again != a {
		t.Errorf("the same spool got %s, then %s", a, again)
	}
	if b, _ := ChooseStagingDir("/var/lib/y/spool", base); b == a || filepath.Dir(b) != base {
		t.Errorf("two spools share %s", a)
	}
	disk := t.TempDir()
	if ok, _ := onTmpfs(disk); !ok {
		if dir, err := ChooseStagingDir("/var/lib/x/spool", disk); dir != "" || err == nil || !strings.Contains(err.Error(), "not on a tmpfs") {
			t.Errorf("a directory on the storage: %q, %v", dir, err)
		}
	}
	// The default: $RUNTIME_DIRECTORY first.
	t.Setenv("RUNTIME_DIRECTORY", filepath.Join(base, "runtime"))
	os.Mkdir(filepath.Join(base, "runtime"), 0o755)
	if dir, err := ChooseStagingDir("/var/lib/x/spool", ""); err != nil || filepath.Dir(dir) != filepath.Join(base, "runtime") {
		t.Errorf("default with $RUNTIME_DIRECTORY: %q, %v", dir, err)
	}
	// Through a symbolic link (systemd's preserved RuntimeDirectory=).
	link := filepath.Join(base, "link")
	os.Symlink(filepath.Join(base, "runtime"), link)
	t.Setenv("RUNTIME_DIRECTORY", link)
	if dir, err := ChooseStagingDir("/var/lib/x/spool", ""); err != nil || filepath.Dir(dir) != filepath.Join(base, "runtime") {
		t.Errorf("default with $RUNTIME_DIRECTORY a link: %q, %v", dir, err)
	}
	// Then $XDG_RUNTIME_DIR/apd.
	t.Setenv("RUNTIME_DIRECTORY", "")
	t.Setenv("XDG_RUNTIME_DIR", base)
	if dir, err := ChooseStagingDir("/var/lib/x/spool", ""); err != nil || filepath.Dir(dir) != filepath.Join(base, "apd") {
		t.Errorf("default with $XDG_RUNTIME_DIR: %q, %v", dir, err)
	}
}

// TestSpoolStagingOnDisk runs a staging spool on the real file systems: a
// tmpfs directory and a spool directory, through a window's move, a kill
// and a clean restart.
func TestSpoolStagingOnDisk(t *testing.T) {
	root, err := os.MkdirTemp("/dev/shm", "apd-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	path := filepath.Join(t.TempDir(), "apd-spool.db")
	staging, err := ChooseStagingDir(path, root)
	if err != nil {
		t.Skip(err)
	}
	clock := newFakeClock(spoolEpoch)
	opts := SpoolOptions{SegmentBytes: 4096, Clock: clock, StagingDir: staging}
	s, err := OpenSpool(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		mustAppend(t, s, tick("pi", 3, clock.Now()))
		clock.Advance(time.Second)
	}
	clock.Advance(30 * time.Second)
	onCard, _ := filepath.Glob(filepath.Join(path, "*.seg"))
	if len(onCard) == 0 {
		t.Fatalf("nothing moved to %s a window later", path)
	}
	mustAppend(t, s, tick("pi", 3, clock.Now()))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if staged, _ := filepath.Glob(filepath.Join(staging, "*.seg")); len(staged) != 0 {
		t.Errorf("staged after Close: %v", staged)
	}
	s, err = OpenSpool(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := allPending(t, s, 256); !slices.Equal(seqsOf(got), seqRange(1, 33)) {
		t.Errorf("reopened: pending %v", seqsOf(got))
	}
}
