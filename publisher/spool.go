package publisher

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/schema"
)

// The spool is an append-only log of segments (spool_segment.go) in a
// directory, shaped by what wears a Raspberry Pi's SD card: every byte
// that reaches the card, every fsync, and every file made or deleted
// (each one an ext4 journal commit that /proc/<pid>/io does not count).
//
// Acknowledgements cost no write. Ack moves a mark in memory; a segment
// whose every reading is acknowledged is closed and deleted, and the
// active segment is rotated (a new segment named by the next seq is
// made, the old one deleted) once it is fully acknowledged and older than
// SegmentAge, so that segments live about 20 s.
//
// With the window policy and a staging directory (SpoolOptions.StagingDir,
// memory-backed: a tmpfs) the newest segments live there, and the card
// sees nothing while the aggregator acknowledges within the window: a
// segment made, written and deleted in the staging directory never
// touches it. Counting on the page cache instead (a segment deleted
// before the kernel writes it back is never written) fails where dirty
// pages are written back within seconds (DAMON's pageout, a small
// vm.dirty_expire_centisecs), and each segment made or deleted on the
// card costs a journal commit anyway. A file on a tmpfs survives a kill
// of the process, like the page cache, and is lost to a power cut — the
// window the policy allows to lose. Readings not acknowledged within the
// window have their segment moved to the spool directory (spool_staging.go),
// where the segment goes on as without staging. So segments are in two
// tiers: those in the spool directory all older than those staged, since
// segments are moved oldest first and made in the staging directory.
//
// The acknowledged mark on disk lags (it is written at open and Close):
// after a crash the readings of the surviving segments that were
// acknowledged are published again, which is harmless (the store is
// idempotent on host, sensor and ts), and the retained $ack the broker
// delivers on subscribe removes them.
//
// Two rules keep the seqs the spool holds contiguous, which the
// aggregator's watermark needs (a gap would hold it back until the spool
// overflowed past it):
//   - A segment is rotated for its size (the aggregator not
//     acknowledging) only after its unacknowledged readings are synced
//     (or, staged, it and the one after it are both staged, lost together
//     to a power cut, and moved to storage in seq order), so a newer
//     segment never survives a power cut that an older one's tail did
//     not. A newer segment exists otherwise only because the older one
//     was fully acknowledged: a gap before a segment therefore means
//     everything below it was acknowledged (or dropped), and open treats
//     it so.
//   - Open syncs what it found after a run that did not shut down
//     cleanly, and moves staged segments holding live readings to the
//     spool directory, before it records anything, so that what it
//     builds on cannot be lost to a later power cut.
//
// A staged segment lost to a power cut takes the end of the log with it,
// never its middle (the card's segments are the older ones): the readings
// lost are the newest, and their seqs are issued again. That is the case
// the identity rule of OpenSpool is for: the run did not shut down
// cleanly and its staging directory is gone (a reboot empties it), so
// the spool takes a new id, the aggregator starts the host's watermark
// again, and the first_seq of the next $status (FirstSeq: the oldest
// reading the card kept) is where it waits from. No seq that only the
// staging directory held can hold the watermark back.

// Defaults of SpoolOptions.
const (
	DefaultSpoolMaxBytes = 64 << 20
	DefaultSegmentBytes  = 256 << 10
	// DefaultSegmentAge is below the kernel's 30 s write-back expiry, so
	// that without a staging directory an acknowledged segment is deleted
	// before its pages are written where the kernel keeps its defaults.
	DefaultSegmentAge = 20 * time.Second
	DefaultSyncWindow = 30 * time.Second
)

// SyncMode is the kind of a SyncPolicy.
type SyncMode int

// The sync modes.
const (
	// SyncWindow syncs readings not acknowledged within a window of being
	// written (the default).
	SyncWindow SyncMode = iota
	// SyncEvery syncs each Append before it returns.
	SyncEvery
	// SyncOS leaves write-back to the kernel and syncs only on Close.
	SyncOS
)

// SyncPolicy says when appended readings are forced to storage (fsync),
// and so what a power cut can lose; a kill loses nothing whatever the
// policy, since the page cache (and a tmpfs) survives the process.
//
//   - SyncEvery: Append syncs the segment (and the directory after making
//     one) before it returns, so before anything is published. A power
//     cut loses nothing that was published. One fsync per tick. No
//     staging directory: every reading goes to storage at once anyway.
//   - SyncWindow (Window D, default 30 s): Append writes to the staging
//     directory (SpoolOptions.StagingDir), else to the page cache only;
//     readings not acknowledged D after they were written are synced
//     then (their segment moved from the staging directory to the spool
//     directory, synced). Readings acknowledged sooner never reach the
//     storage with a staging directory, and are never synced without
//     one. A power cut loses at most the readings of the last D that
//     were not acknowledged; the spool then takes a new id (see
//     OpenSpool).
//   - SyncOS: no fsync but on Close (and when a full segment of readings
//     not acknowledged is closed, see the spool's rules): the kernel's
//     write-back decides, about 30–35 s on Linux's defaults
//     (vm.dirty_expire_centisecs plus vm.dirty_writeback_centisecs). A
//     power cut loses at most that window. No staging directory either:
//     the policy leaves the storage to the kernel, and staged readings
//     would wait for no one to move them.
//
// The zero value is a window of DefaultSyncWindow.
type SyncPolicy struct {
	Mode SyncMode
	// Window applies to SyncWindow; 0 means DefaultSyncWindow.
	Window time.Duration
}

// ParseSyncPolicy reads a policy as --sync takes it: "every", "os" or a
// duration ("30s", "2m").
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch strings.TrimSpace(s) {
	case "every":
		return SyncPolicy{Mode: SyncEvery}, nil
	case "os":
		return SyncPolicy{Mode: SyncOS}, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil || d <= 0 {
		return SyncPolicy{}, fmt.Errorf("sync policy %q: want every, os or a duration such as 30s", s)
	}
	return SyncPolicy{Mode: SyncWindow, Window: d}, nil
}

// String returns the policy as ParseSyncPolicy reads it.
func (p SyncPolicy) String() string {
	switch p.Mode {
	case SyncEvery:
		return "every"
	case SyncOS:
		return "os"
	}
	return p.window().String()
}

func (p SyncPolicy) window() time.Duration {
	if p.Window <= 0 {
		return DefaultSyncWindow
	}
	return p.Window
}

// SpoolClock is the spool's time: when segments were made, when a
// window's sync is due.
type SpoolClock interface {
	Now() time.Time
	// AfterFunc calls f, in its own goroutine, once d has passed;
	// calling stop before then cancels it (time.AfterFunc's contract).
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// SpoolOptions configure OpenSpool. The zero value is the defaults.
type SpoolOptions struct {
	// MaxBytes bounds what the spool holds (the sensor names and payloads
	// of its readings); past it, Append drops the oldest ticks' readings.
	// 0 means DefaultSpoolMaxBytes.
	MaxBytes int64
	// Sync says when readings are synced to storage; see SyncPolicy.
	Sync SyncPolicy
	// SegmentBytes is the size a segment is preallocated to and rotated
	// at; 0 means DefaultSegmentBytes.
	SegmentBytes int64
	// SegmentAge is how old a fully acknowledged segment gets before it
	// is replaced by a new one and deleted; 0 means DefaultSegmentAge.
	SegmentAge time.Duration
	// StagingDir is a directory on memory-backed storage (a tmpfs), the
	// spool's own, where the window policy makes and writes the newest
	// segments, so that readings acknowledged within the window never
	// reach the storage (see SyncPolicy); "" means none. Whatever the
	// policy, open takes back the segments a run before left there. A
	// directory that does not survive a power cut is the point: what it
	// holds is what the window allows to lose. ChooseStagingDir picks one.
	StagingDir string
	// Logger receives what the spool did on its own (a migration, a new
	// identity, a failed deletion); nil discards it.
	Logger *slog.Logger

	// FS is the file system; nil means OSFS. For tests.
	FS SpoolFS
	// StagingFS is the staging directory's file system; nil means FS.
	// For tests.
	StagingFS SpoolFS
	// BootID returns the id of the running boot of the machine, "" when
	// unknown; nil reads Linux's /proc/sys/kernel/random/boot_id. For
	// tests.
	BootID func() string
	// Clock is the time; nil means the system's. For tests.
	Clock SpoolClock
}

// SpoolWear is what the spool cost the storage since it was opened: the
// spool directory's only. What it writes to the staging directory is
// memory, not storage, and is not counted.
type SpoolWear struct {
	// BytesWritten counts the bytes the spool wrote to the spool
	// directory: records, segment headers, segments moved from the
	// staging directory, state files. Without a staging directory,
	// written bytes of a segment deleted before the kernel wrote it back
	// never reach the storage.
	BytesWritten uint64
	// Syncs counts fsyncs of files and directories.
	Syncs uint64
	Since time.Time
}

// Spool is the device's outbox: every reading is written to it, with its
// seq, before it is published, and leaves it only when the aggregator's
// acknowledgement covers its seq. It also keeps the host's seq counter, so
// seq continues across restarts. Its methods are safe for concurrent use.
type Spool struct {
	dir     string
	fs      SpoolFS
	sdir    string  // the staging directory, "" when none
	sfs     SpoolFS // its file system
	staging bool    // new segments are made in sdir (the window policy)
	stamp   string  // the staging directory's stamp (spool_staging.go)
	clock   SpoolClock
	log     *slog.Logger
	opts    SpoolOptions
	boot    string
	release func() error
	appends atomic.Uint64

	mu             sync.Mutex
	closed         bool
	id             string
	segs           []*segment // oldest first; the last is the active one
	nextSeq        uint64
	acked          uint64
	droppedThrough uint64
	dropped        uint64
	savedDropped   uint64 // dropped as the state file has it
	depth          int    // live readings: not acknowledged, not dropped
	held           int64  // content bytes of records holding a live reading
	unsynced       []unsyncedAppend
	dirDirty       bool      // a segment was made since the directory was synced
	retryAt        time.Time // a window's sync that failed is tried again then
	timerStop      func() bool
	timerAt        time.Time
	timerGen       uint64
	reader         struct {
		seg *segment
		f   SpoolFile
	}
	wear SpoolWear
}

// segment is one segment file as the spool keeps it in memory.
type segment struct {
	name    string
	first   uint64 // the header's
	next    uint64 // one past the last record's last seq
	recs    []recordIndex
	live    int   // records before it hold no live reading
	end     int64 // where the next record goes
	synced  int64 // bytes known to be on storage
	created time.Time
	w       SpoolFile // open for appending: the active segment only
	staged  bool      // in the staging directory
	bad     bool      // its header does not read: it only marks a seq
	sealed  bool      // found with bytes after its last record: never appended to
}

// unsyncedAppend is an Append of the window policy not yet synced.
type unsyncedAppend struct {
	last uint64
	at   time.Time
}

// Spooled is a reading waiting in the spool, ready to publish.
type Spooled struct {
	Seq     uint64
	Sensor  string
	Payload []byte
}

// Appends counts the calls of Append since open: each is one record
// written, and with SyncEvery one fsync.
func (s *Spool) Appends() uint64 { return s.appends.Load() }

// OpenSpool opens or creates the spool, a directory, at path. A spool of
// the earlier format (a bbolt file at path) is migrated first, keeping its
// identity, seqs and pending readings.
//
// The spool keeps its identity (ID) unless the run before this one did
// not shut down cleanly, the machine has booted since (a power cut or a
// reboot: a kill loses nothing, the page cache survives it) and that run
// did not sync every append, or the run staged segments (StagingDir) and
// its staging directory is gone. Then readings it published may have
// been lost before they reached the storage, and their seqs will be
// issued again to other readings; the spool takes a new identity so that
// the aggregator starts the host's watermark again (the readings the
// spool still holds keep their seqs), and logs why. Without a boot id
// (off Linux) every unclean shutdown counts as one that may have lost
// data.
func OpenSpool(path string, opts SpoolOptions) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultSpoolMaxBytes
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	opts.SegmentBytes = min(opts.SegmentBytes, 1<<30) // offsets are 32-bit
	if opts.SegmentAge <= 0 {
		opts.SegmentAge = DefaultSegmentAge
	}
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	if opts.BootID == nil {
		opts.BootID = linuxBootID
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StagingFS == nil {
		opts.StagingFS = opts.FS
	}
	s := &Spool{dir: filepath.Clean(path), fs: opts.FS, sfs: opts.StagingFS, clock: opts.Clock, log: opts.Logger, opts: opts, boot: opts.BootID()}
	if opts.StagingDir != "" {
		s.sdir = filepath.Clean(opts.StagingDir)
		s.staging = opts.Sync.Mode == SyncWindow
	}
	s.wear.Since = s.clock.Now()
	if err := s.open(); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	return s, nil
}

func linuxBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func newSpoolID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func (s *Spool) open() error {
	if err := s.prepareLayout(); err != nil {
		return err
	}
	// The directories made here must survive a power cut with what they
	// hold: each one's entry is synced in its parent.
	var made []string
	for d := s.dir; ; d = filepath.Dir(d) {
		if _, err := s.fs.Stat(d); !errors.Is(err, fs.ErrNotExist) || d == filepath.Dir(d) {
			break
		}
		made = append(made, d)
	}
	if err := s.fs.MkdirAll(filepath.Dir(s.dir), 0o755); err != nil {
		return fmt.Errorf("create spool directory: %w", err)
	}
	if err := s.fs.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create spool directory: %w", err)
	}
	for _, d := range made {
		if err := s.syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	release, err := s.lock()
	if err != nil {
		return err
	}
	if err := s.load(); err != nil {
		s.closeFiles()
		release()
		return err
	}
	s.release = release
	return nil
}

// lock takes the spool's lock, waiting up to 2 s for another process to
// let go of it (a restarting service's predecessor closing).
func (s *Spool) lock() (func() error, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		release, err := s.fs.Lock(s.dir)
		if errors.Is(err, ErrSpoolLocked) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if errors.Is(err, ErrSpoolLocked) {
			return nil, errors.New("in use by another apd-publish")
		}
		return release, err
	}
}

// load reads the state file and the segments, decides the identity and
// the seq counter, and makes the spool ready to append.
func (s *Spool) load() error {
	st, haveState, err := readState(s.fs, s.dir)
	if err != nil {
		return err
	}
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read spool directory: %w", err)
	}
	for _, name := range names {
		if name == stateTmpFile {
			// A state write that did not finish: the state file is the
			// one before it.
			if err := s.fs.Remove(filepath.Join(s.dir, name)); err != nil {
				return fmt.Errorf("remove %s: %w", name, err)
			}
			continue
		}
		first, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		seg, err := s.readSegment(name, first, false)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, seg)
	}
	if err := s.loadStaging(); err != nil {
		return err
	}
	clean := haveState && st.Clean
	if !clean && len(s.segs) > 0 {
		// What the last run wrote may be in the page cache only: make it
		// durable before anything is built on it (the seq counter, the
		// state file, new appends).
		if err := s.syncFound(); err != nil {
			return err
		}
	}

	s.nextSeq = max(1, st.NextSeq)
	for _, seg := range s.segs {
		s.nextSeq = max(s.nextSeq, seg.next)
	}
	s.acked = min(st.Acked, s.nextSeq-1)
	s.dropped, s.savedDropped, s.droppedThrough = st.Dropped, st.Dropped, min(st.DroppedThrough, s.nextSeq-1)
	for i := 0; i+1 < len(s.segs); i++ {
		older, newer := s.segs[i], s.segs[i+1]
		older.trimFrom(newer.first)
		if older.next < newer.first {
			// A segment is made after the one before it was synced or
			// fully acknowledged: a gap means the latter.
			s.acked = max(s.acked, newer.first-1)
		}
	}

	// The identity (see OpenSpool). A kill loses nothing: the page cache
	// survives the process, and this open has just synced what it left. A
	// power cut or a reboot after an unclean shutdown may have lost the
	// unsynced tail of what the last run published, and the counter now
	// issues those seqs again to other readings: unless that run synced
	// every append, the aggregator must be told that seqs start again, by
	// a new id. Without a boot id on either side a kill cannot be told
	// from a power cut, and the safe answer is a new id.
	switch {
	case !haveState && len(s.segs) == 0:
		s.id = newSpoolID()
	case !haveState:
		s.id = newSpoolID()
		s.log.Warn("spool state missing: the spool takes a new id, its seqs may have been issued before", "spool", s.id)
	default:
		s.id = st.ID
		rebooted := st.Boot == "" || s.boot == "" || st.Boot != s.boot
		// A run that staged segments lost them if its staging directory
		// is not the one it stamped (emptied by a reboot, or given up).
		stagingLost := st.Staging != "" && st.Staging != s.stamp
		switch {
		case st.Clean:
		case rebooted && st.Sync != "every":
			s.id = newSpoolID()
			s.log.Warn("the last run did not shut down cleanly and the machine has restarted since: readings it published may have been lost before they were synced and their seqs will be issued again, so the spool takes a new id (the aggregator starts this host's watermark again)",
				"old_spool", st.ID, "spool", s.id, "sync", st.Sync, "next_seq", s.nextSeq)
		case stagingLost:
			s.id = newSpoolID()
			s.log.Warn("the last run did not shut down cleanly and its staging directory is gone: readings it published may have been lost with it and their seqs will be issued again, so the spool takes a new id (the aggregator starts this host's watermark again)",
				"old_spool", st.ID, "spool", s.id, "staging", s.sdir, "next_seq", s.nextSeq)
		}
	}

	floor := s.floor()
	for _, seg := range s.segs {
		for i := range seg.recs {
			first, last := seg.recSeqs(i)
			if last <= floor {
				seg.live = i + 1
				continue
			}
			s.held += seg.recContent(i)
			s.depth += int(last - max(first, floor+1) + 1)
		}
	}
	s.enforceBound()

	// Segments without live readings go, but for the last if it can take
	// appends (a header alone, or live readings and a clean tail);
	// otherwise a new one is made. Bad ones go before a new one may take
	// a bad one's name.
	var keep []*segment
	var appendable *segment
	for i, seg := range s.segs {
		live := seg.live < len(seg.recs)
		if i == len(s.segs)-1 && seg.cleanTail() && (live || len(seg.recs) == 0) {
			appendable = seg
		}
		if seg.bad || !live && seg != appendable {
			if err := s.removeSegment(seg); err != nil {
				return err
			}
			continue
		}
		keep = append(keep, seg)
	}
	s.segs = keep
	// Staged readings found are made durable like those of the spool
	// directory (syncFound): moved there, oldest first. After a clean
	// shutdown there are none (Close moved them).
	for _, seg := range s.segs {
		if seg.staged && seg.live < len(seg.recs) {
			if err := s.moveSegment(seg); err != nil {
				return err
			}
		}
	}
	now := s.clock.Now()
	if appendable != nil {
		active := appendable
		active.w, err = s.segFS(active).OpenFile(s.segPath(active), os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open segment: %w", err)
		}
		active.created = now
	} else {
		seg, err := s.createSegment(s.nextSeq, now)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, seg)
	}

	if err := s.stampStaging(); err != nil {
		return err
	}
	if err := s.saveState(false); err != nil {
		return err
	}
	s.schedule()
	return nil
}

// readSegment opens and scans a segment file found at open, in the
// staging directory if staged. A segment whose header does not read (made
// just before a power cut) is kept as a bad one: only its name's seq
// counts, as the seq counter when it was made.
func (s *Spool) readSegment(name string, first uint64, staged bool) (*segment, error) {
	seg := &segment{name: name, first: first, next: first, staged: staged}
	f, err := s.segFS(seg).OpenFile(s.segPath(seg), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	sc, err := scanSegment(f, true)
	if errors.Is(err, errBadSegmentHeader) || err == nil && sc.first != first {
		seg.bad = true
		return seg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read segment %s: %w", name, err)
	}
	seg.next, seg.recs, seg.end, seg.synced = sc.next, slices.Clone(sc.recs), sc.end, sc.end
	// Never append after garbage: a new segment takes the appends.
	seg.sealed = !sc.cleanTail
	return seg, nil
}

// segFS returns the file system seg is on.
func (s *Spool) segFS(seg *segment) SpoolFS {
	if seg.staged {
		return s.sfs
	}
	return s.fs
}

// segPath returns seg's file name.
func (s *Spool) segPath(seg *segment) string {
	if seg.staged {
		return filepath.Join(s.sdir, seg.name)
	}
	return filepath.Join(s.dir, seg.name)
}

// cleanTail reports whether a segment found at open may take appends.
func (seg *segment) cleanTail() bool { return !seg.bad && !seg.sealed }

// syncFound syncs every segment found at open in the spool directory,
// and the directory. (Staged ones cannot be: open moves them.)
func (s *Spool) syncFound() error {
	for _, seg := range s.segs {
		if seg.staged {
			continue
		}
		f, err := s.fs.OpenFile(filepath.Join(s.dir, seg.name), os.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("open segment: %w", err)
		}
		err = f.Sync()
		s.wear.Syncs++
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sync segment %s: %w", seg.name, err)
		}
	}
	return s.syncDir(s.dir)
}

// trimFrom forgets the records holding seqs at or past seq: a newer
// segment has them (which only a damaged spool can make happen, but
// Pending must never return a seq twice).
func (seg *segment) trimFrom(seq uint64) {
	for len(seg.recs) > 0 {
		i := len(seg.recs) - 1
		_, last := seg.recSeqs(i)
		if last < seq {
			break
		}
		seg.end = int64(seg.recs[i].off)
		seg.recs = seg.recs[:i]
		seg.next = seg.first
		if i > 0 {
			_, l := seg.recSeqs(i - 1)
			seg.next = l + 1
		}
	}
	seg.live = min(seg.live, len(seg.recs))
}

// recSeqs returns the first and last seq of record i.
func (seg *segment) recSeqs(i int) (first, last uint64) {
	r := seg.recs[i]
	first = seg.first + uint64(r.seq)
	return first, first + uint64(r.count) - 1
}

// recSpan returns record i's offset and frame length.
func (seg *segment) recSpan(i int) (off, n int64) {
	off = int64(seg.recs[i].off)
	if i+1 < len(seg.recs) {
		return off, int64(seg.recs[i+1].off) - off
	}
	return off, seg.end - off
}

// recContent returns record i's content bytes (see contentBytes).
func (seg *segment) recContent(i int) int64 {
	_, n := seg.recSpan(i)
	return contentBytes(n, seg.recs[i].count)
}

func (s *Spool) active() *segment { return s.segs[len(s.segs)-1] }

// floor is the seq up to which every reading is acknowledged or dropped.
func (s *Spool) floor() uint64 { return max(s.acked, s.droppedThrough) }

// createSegment makes a segment whose first seq is first, with its
// header written: in the staging directory when staging, else in the
// spool directory, preallocated; with SyncEvery it is synced, with the
// directory, before it is used.
func (s *Spool) createSegment(first uint64, now time.Time) (*segment, error) {
	seg := &segment{name: segmentName(first), first: first, next: first, end: segmentHeaderSize, created: now, staged: s.staging}
	f, err := s.segFS(seg).OpenFile(s.segPath(seg), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	seg.w = f
	if !seg.staged {
		s.dirDirty = true
		// A staged one grows as it is written: preallocated, a tmpfs
		// would hold the whole segment in memory from the start.
		if err := f.Allocate(s.opts.SegmentBytes); err != nil {
			f.Close()
			return nil, fmt.Errorf("preallocate segment: %w", err)
		}
	}
	n, err := f.WriteAt(encodeSegmentHeader(first, s.id), 0)
	s.countWrite(seg, n)
	if err == nil && s.opts.Sync.Mode == SyncEvery {
		if err = s.syncSegment(seg); err == nil {
			err = s.syncDir(s.dir)
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create segment: %w", err)
	}
	return seg, nil
}

// removeSegment closes and deletes a segment. Nothing is synced: a
// deletion lost to a power cut brings back readings that were
// acknowledged or dropped, which costs publishing them again.
func (s *Spool) removeSegment(seg *segment) error {
	if s.reader.seg == seg {
		s.reader.f.Close()
		s.reader.seg, s.reader.f = nil, nil
	}
	if seg.w != nil {
		seg.w.Close()
		seg.w = nil
	}
	if err := s.segFS(seg).Remove(s.segPath(seg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove segment: %w", err)
	}
	return nil
}

// countWrite counts n bytes written to seg as wear: the storage's only.
func (s *Spool) countWrite(seg *segment, n int) {
	if !seg.staged {
		s.wear.BytesWritten += uint64(n)
	}
}

// removeDead deletes the segments before the active one that hold no
// live reading.
func (s *Spool) removeDead() {
	for len(s.segs) > 1 && s.segs[0].live == len(s.segs[0].recs) {
		if err := s.removeSegment(s.segs[0]); err != nil {
			// Its readings come back at the next open, and go again.
			s.log.Warn("spool", "err", err)
		}
		s.segs = s.segs[1:]
	}
}

func (s *Spool) syncSegment(seg *segment) error {
	err := seg.w.Sync()
	s.wear.Syncs++
	if err != nil {
		return fmt.Errorf("sync segment %s: %w", seg.name, err)
	}
	seg.synced = seg.end
	return nil
}

func (s *Spool) syncDir(dir string) error {
	err := s.fs.SyncDir(dir)
	s.wear.Syncs++
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	if dir == s.dir {
		s.dirDirty = false
	}
	return nil
}

// saveState writes the state file; clean records a clean shutdown.
func (s *Spool) saveState(clean bool) error {
	written, syncs, err := writeState(s.fs, s.dir, spoolState{ID: s.id, Boot: s.boot, Clean: clean,
		Sync: s.opts.Sync.String(), Staging: s.stamp, NextSeq: s.durableNext(), Acked: s.acked, Dropped: s.dropped, DroppedThrough: s.droppedThrough})
	s.wear.BytesWritten += written
	s.wear.Syncs += syncs
	if err == nil {
		s.savedDropped = s.dropped
	}
	return err
}

// durableNext is the seq counter as the state file may record it: up to
// the first reading not acknowledged that only the staging directory
// holds. A power cut loses the staged segments, so the file may not
// carry the counter past them: the seqs after those the storage kept
// would be missing, a gap the aggregator's watermark would wait at (the
// spool then takes a new id, and its seqs from the first the storage
// kept are issued again, without one). After a kill the staged segments
// are found again and carry the counter themselves.
func (s *Spool) durableNext() uint64 {
	for _, seg := range s.segs {
		if seg.staged && seg.live < len(seg.recs) {
			first, _ := seg.recSeqs(seg.live)
			return max(first, s.floor()+1)
		}
	}
	return s.nextSeq
}

// rotate makes a new active segment at the next seq and deletes the old
// one if nothing in it is live.
func (s *Spool) rotate(now time.Time) error {
	old := s.active()
	if !old.staged && old.live < len(old.recs) && old.end > old.synced {
		// Its readings wait for acknowledgement: they reach the storage
		// before anything of the new segment can (see the spool's rules).
		// A staged one needs nothing: the new segment is staged too, and
		// segments are moved to the storage oldest first.
		if err := s.syncSegment(old); err != nil {
			return err
		}
	}
	seg, err := s.createSegment(s.nextSeq, now)
	if err != nil {
		return err
	}
	old.w.Close()
	old.w = nil
	// Its index is complete: without the slack of growing it, a full
	// spool of one-reading ticks keeps a third less in memory.
	old.recs = slices.Clone(old.recs)
	s.segs = append(s.segs, seg)
	s.removeDead()
	return nil
}

// rotateDue reports whether the active segment is fully acknowledged and
// old enough to be replaced.
func (s *Spool) rotateDue(now time.Time) bool {
	a := s.active()
	return len(a.recs) > 0 && a.live == len(a.recs) && now.Sub(a.created) >= s.opts.SegmentAge
}

// ID returns the spool's identity, a random id made when the spool was
// created (or, see OpenSpool, when a power cut may have lost readings it
// published): the aggregator sees a new one when the device's seqs start
// again.
func (s *Spool) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

var errSpoolClosed = errors.New("spool is closed")

// Append gives each reading the next seq of this host, encodes them and
// writes them as one record; with SyncEvery it is synced before Append
// returns. It returns what to publish and how many of the oldest readings
// it dropped to stay within the size bound. An error of the sync leaves
// the readings in the spool, unsynced: they are published by the replay.
func (s *Spool) Append(readings []schema.Reading) ([]Spooled, int, error) {
	s.appends.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, fmt.Errorf("spool readings: %w", errSpoolClosed)
	}
	if len(readings) == 0 {
		return nil, 0, nil
	}
	first := s.nextSeq
	b := newRecordBuilder(first, 256*len(readings))
	for i := range readings {
		r := readings[i]
		r.Seq = first + uint64(i)
		if err := b.add(r.Sensor, func(buf []byte) []byte { return r.AppendJSON(buf, schema.WithIdentity) }); err != nil {
			return nil, 0, fmt.Errorf("spool readings: %w", err)
		}
	}
	frame, err := b.frame()
	if err != nil {
		return nil, 0, fmt.Errorf("spool readings: %w", err)
	}
	now := s.clock.Now()
	if a := s.active(); len(a.recs) > 0 && (s.rotateDue(now) || a.end+int64(len(frame)) > s.opts.SegmentBytes) {
		if err := s.rotate(now); err != nil {
			return nil, 0, fmt.Errorf("spool readings: %w", err)
		}
	}
	seg := s.active()
	if seg.end+int64(len(frame)) > 1<<32-1 || first-seg.first+uint64(b.count) > 1<<32-1 {
		return nil, 0, fmt.Errorf("spool readings: a record of %d bytes does not fit a segment", len(frame))
	}
	n, err := seg.w.WriteAt(frame, seg.end)
	s.countWrite(seg, n)
	if err != nil {
		// Whatever part of it was written is overwritten by the next
		// record, or ends the log at the next open.
		return nil, 0, fmt.Errorf("spool readings: %w", err)
	}
	seg.recs = append(seg.recs, recordIndex{off: uint32(seg.end), seq: uint32(first - seg.first), count: b.count})
	seg.end += int64(len(frame))
	seg.next = first + uint64(b.count)
	s.nextSeq = seg.next
	s.depth += int(b.count)
	s.held += contentBytes(int64(len(frame)), b.count)

	var syncErr error
	switch s.opts.Sync.Mode {
	case SyncEvery:
		syncErr = s.syncSegment(seg)
	case SyncWindow:
		s.unsynced = append(s.unsynced, unsyncedAppend{last: s.nextSeq - 1, at: now})
	}
	dropped := s.enforceBound()
	s.removeDead()
	if dropped > 0 && s.opts.Sync.Mode == SyncEvery && syncErr == nil {
		syncErr = s.saveState(false)
	}
	s.schedule()
	if syncErr != nil {
		return nil, dropped, fmt.Errorf("spool readings: %w", syncErr)
	}
	out := make([]Spooled, len(readings))
	for i := range readings {
		out[i] = Spooled{Seq: first + uint64(i), Sensor: readings[i].Sensor, Payload: b.payload(i)}
	}
	return out, dropped, nil
}

// raiseFloor accounts for the readings up to newFloor leaving the spool
// (the caller moves acked or droppedThrough) and returns how many live
// readings that was.
func (s *Spool) raiseFloor(newFloor uint64) int {
	old := s.floor()
	if newFloor <= old {
		return 0
	}
	removed := 0
	for _, seg := range s.segs {
		for seg.live < len(seg.recs) {
			first, last := seg.recSeqs(seg.live)
			if first > newFloor {
				break
			}
			removed += int(min(last, newFloor) - max(first, old+1) + 1)
			if last > newFloor {
				break
			}
			s.held -= seg.recContent(seg.live)
			seg.live++
		}
		if seg.live < len(seg.recs) {
			break
		}
	}
	s.depth -= removed
	return removed
}

// enforceBound drops the oldest records until the spool holds at most
// MaxBytes, and returns the live readings it dropped. Whole records go
// (a tick's readings), so the in-memory index needs no per-reading sizes;
// the drop mark reaches the state file with the next sync of the policy
// (SyncEvery: at once; a window: its next sync; os: Close). Should a
// power cut come first, the readings come back at the next open, where
// the bound drops them again.
func (s *Spool) enforceBound() int {
	dropped := 0
	for s.held > s.opts.MaxBytes {
		var seg *segment
		for _, sg := range s.segs {
			if sg.live < len(sg.recs) {
				seg = sg
				break
			}
		}
		if seg == nil {
			break
		}
		_, last := seg.recSeqs(seg.live)
		n := s.raiseFloor(last)
		s.droppedThrough = last
		dropped += n
	}
	s.dropped += uint64(dropped)
	s.trimUnsynced()
	return dropped
}

// trimUnsynced forgets the unsynced appends whose readings are all gone.
func (s *Spool) trimUnsynced() {
	floor, i := s.floor(), 0
	for i < len(s.unsynced) && s.unsynced[i].last <= floor {
		i++
	}
	s.unsynced = s.unsynced[i:]
}

// Ack removes every reading with seq ≤ upTo and returns how many it
// removed. It writes nothing: segments left without a live reading are
// deleted, and the acknowledged mark reaches the state file at Close.
func (s *Spool) Ack(upTo uint64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("spool ack %d: %w", upTo, errSpoolClosed)
	}
	upTo = min(upTo, s.nextSeq-1)
	if upTo <= s.acked {
		return 0, nil
	}
	n := s.raiseFloor(upTo)
	s.acked = upTo
	s.trimUnsynced()
	s.removeDead()
	if now := s.clock.Now(); s.rotateDue(now) {
		if err := s.rotate(now); err != nil {
			s.log.Warn("spool: replace the acknowledged segment", "err", err)
		}
	}
	s.schedule()
	return n, nil
}

// schedule sets the timer for the next thing due without an Append or
// Ack: a window's sync, the rotation of an acknowledged segment.
func (s *Spool) schedule() {
	var at time.Time
	if s.opts.Sync.Mode == SyncWindow && len(s.unsynced) > 0 {
		at = s.unsynced[0].at.Add(s.opts.Sync.window())
		if at.Before(s.retryAt) {
			at = s.retryAt
		}
	}
	if a := s.active(); len(a.recs) > 0 && a.live == len(a.recs) {
		if r := a.created.Add(s.opts.SegmentAge); at.IsZero() || r.Before(at) {
			at = r
		}
	}
	if s.timerStop != nil && at.Equal(s.timerAt) {
		return
	}
	if s.timerStop != nil {
		s.timerStop()
		s.timerStop = nil
	}
	s.timerAt = at
	if at.IsZero() {
		return
	}
	s.timerGen++
	gen := s.timerGen
	s.timerStop = s.clock.AfterFunc(max(0, at.Sub(s.clock.Now())), func() { s.maintain(gen) })
}

// maintain does what schedule's timer was set for.
func (s *Spool) maintain(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || gen != s.timerGen {
		return
	}
	s.timerStop, s.timerAt = nil, time.Time{}
	now := s.clock.Now()
	if s.opts.Sync.Mode == SyncWindow && len(s.unsynced) > 0 && !now.Before(s.unsynced[0].at.Add(s.opts.Sync.window())) && !now.Before(s.retryAt) {
		if err := s.syncWindow(now); err != nil {
			// Not at once again: a full or failing card would have the
			// timer spin.
			s.retryAt = now.Add(syncRetryDelay)
			s.log.Error("spool: sync", "err", err)
		}
	}
	if s.rotateDue(now) {
		if err := s.rotate(now); err != nil {
			s.log.Warn("spool: replace the acknowledged segment", "err", err)
		}
	}
	s.schedule()
}

// syncRetryDelay is how long a window's sync that failed waits before it
// is tried again.
const syncRetryDelay = 10 * time.Second

// syncWindow makes durable the readings of the window policy that waited
// a window unacknowledged: the segment of the spool directory still
// taking appends (the others were synced when they were rotated) is
// synced, the staged segments holding them are moved to the spool
// directory (and, in seq order, every staged one before them); then the
// directory if a segment was made since, and the drop counter if it
// moved.
func (s *Spool) syncWindow(now time.Time) error {
	var lastDue uint64
	for _, u := range s.unsynced {
		if now.Before(u.at.Add(s.opts.Sync.window())) {
			break
		}
		lastDue = u.last
	}
	for _, seg := range s.segs {
		if seg.live == len(seg.recs) {
			continue
		}
		var err error
		switch {
		case !seg.staged && seg.end > seg.synced:
			err = s.syncSegment(seg)
		case seg.staged && seg.first <= lastDue:
			err = s.moveSegment(seg)
		}
		if err != nil {
			return err
		}
	}
	if s.dirDirty {
		if err := s.syncDir(s.dir); err != nil {
			return err
		}
	}
	if s.dropped != s.savedDropped {
		if err := s.saveState(false); err != nil {
			return err
		}
	}
	// What is left unsynced is what the staged segments hold.
	keepFrom := s.nextSeq
	for _, seg := range s.segs {
		if seg.staged {
			keepFrom = seg.first
			break
		}
	}
	i := 0
	for i < len(s.unsynced) && s.unsynced[i].last < keepFrom {
		i++
	}
	s.unsynced = s.unsynced[i:]
	s.retryAt = time.Time{}
	return nil
}

// Pending returns up to limit spooled readings with seq > after, in seq
// order.
func (s *Spool) Pending(after uint64, limit int) ([]Spooled, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("read spool: %w", errSpoolClosed)
	}
	from := max(after, s.floor()) + 1
	var out []Spooled
	for _, seg := range s.segs {
		if len(out) >= limit {
			break
		}
		if seg.next <= from {
			continue
		}
		i := seg.live + sort.Search(len(seg.recs)-seg.live, func(j int) bool {
			_, last := seg.recSeqs(seg.live + j)
			return last >= from
		})
		for ; i < len(seg.recs) && len(out) < limit; i++ {
			body, err := s.readRecord(seg, i)
			if err != nil {
				return out, err
			}
			_, _, err = decodeRecord(body, func(seq uint64, sensor, payload []byte) {
				if seq >= from && len(out) < limit {
					out = append(out, Spooled{Seq: seq, Sensor: string(sensor), Payload: payload})
				}
			})
			if err != nil {
				return out, fmt.Errorf("read spool: segment %s at %d: %w", seg.name, seg.recs[i].off, err)
			}
		}
	}
	return out, nil
}

// readRecord reads record i of seg (pread, through the active segment's
// file or one other segment's kept open) and checks it.
func (s *Spool) readRecord(seg *segment, i int) ([]byte, error) {
	f := seg.w
	if f == nil {
		if s.reader.seg != seg {
			if s.reader.f != nil {
				s.reader.f.Close()
				s.reader.seg, s.reader.f = nil, nil
			}
			rf, err := s.segFS(seg).OpenFile(s.segPath(seg), os.O_RDONLY, 0)
			if err != nil {
				return nil, fmt.Errorf("read spool: %w", err)
			}
			s.reader.seg, s.reader.f = seg, rf
		}
		f = s.reader.f
	}
	off, n := seg.recSpan(i)
	frame := make([]byte, n)
	if _, err := f.ReadAt(frame, off); err != nil {
		return nil, fmt.Errorf("read spool: segment %s at %d: %w", seg.name, off, err)
	}
	body, err := checkFrame(frame)
	if err != nil {
		return nil, fmt.Errorf("read spool: segment %s at %d: %w", seg.name, off, err)
	}
	return body, nil
}

// Depth returns the number of readings waiting for acknowledgement.
func (s *Spool) Depth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.depth
}

// LastSeq returns the seq of the last reading appended, 0 if none ever was.
func (s *Spool) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSeq - 1
}

// FirstSeq returns the lowest seq the spool may still publish: the oldest
// reading it holds, or the next seq when it holds none. Every lower seq was
// acknowledged or dropped.
func (s *Spool) FirstSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.segs {
		if seg.live < len(seg.recs) {
			first, _ := seg.recSeqs(seg.live)
			return max(first, s.floor()+1)
		}
	}
	return s.nextSeq
}

// Stats returns the bytes held (sensor names and payloads of the ticks
// holding a reading not acknowledged) and the readings ever dropped to
// stay within the size bound.
func (s *Spool) Stats() (bytes, dropped uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(s.held), s.dropped
}

// Acked returns the highest acknowledgement the spool has applied (after
// a crash, the one it last recorded: it may lag).
func (s *Spool) Acked() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// Wear returns what the spool wrote and synced since it was opened, in
// the spool directory: writes to the staging directory are memory's, not
// the storage's, and are not counted.
func (s *Spool) Wear() SpoolWear {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wear
}

// Close syncs what the spool holds, records a clean shutdown and closes
// it. Staged segments holding readings not acknowledged are moved to the
// spool directory first, so that a clean stop followed by a reboot loses
// nothing; the others are deleted, once the state file holds the seq
// counter they held.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.timerStop != nil {
		s.timerStop()
		s.timerStop = nil
	}
	var err error
	var acked []*segment
	for _, seg := range s.segs {
		switch {
		case err != nil || !seg.staged:
		case seg.live < len(seg.recs):
			err = s.moveSegment(seg)
		default:
			acked = append(acked, seg)
		}
	}
	if a := s.active(); err == nil && !a.staged && a.end > a.synced {
		err = s.syncSegment(a)
	}
	if err == nil && s.dirDirty {
		err = s.syncDir(s.dir)
	}
	if err == nil {
		// Only what reached the storage may be called a clean shutdown.
		err = s.saveState(true)
	}
	if err == nil {
		for _, seg := range acked {
			if rerr := s.removeSegment(seg); rerr != nil {
				// Found at the next open, acknowledged: deleted then.
				s.log.Warn("spool", "err", rerr)
			}
		}
		s.removeStaging()
	}
	s.closeFiles()
	if s.release != nil {
		err = errors.Join(err, s.release())
	}
	if err != nil {
		return fmt.Errorf("close spool %s: %w", s.dir, err)
	}
	return nil
}

func (s *Spool) closeFiles() {
	for _, seg := range s.segs {
		if seg.w != nil {
			seg.w.Close()
			seg.w = nil
		}
	}
	if s.reader.f != nil {
		s.reader.f.Close()
		s.reader.seg, s.reader.f = nil, nil
	}
}
