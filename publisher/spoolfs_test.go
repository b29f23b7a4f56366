package publisher

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memFS is a SpoolFS in memory that records every operation, so that a
// test can take a power cut after any of them: crashImage builds the file
// system a reboot would find. Files are inodes; a name points to one.
// What survives a power cut, as on a journaling file system at its
// weakest:
//   - a write, truncation or preallocation of a file survives if the file
//     was synced after it;
//   - a creation, rename or removal of a name (and a mkdir) survives if
//     its directory was synced after it;
//   - of the rest, any prefix may survive, its last write torn.
//
// A second memFS plays the staging directory, a tmpfs: everything on it
// survives a kill and nothing a power cut. The two share a count of
// operations (seq), so that a crash can be taken after any operation of
// either.
type memFS struct {
	mu    sync.Mutex
	now   func() time.Time // stamps the operations; nil: zero time
	seq   *atomic.Int64    // numbers the operations across file systems; nil: none
	base  memState         // on the disk before the first operation
	ops   []fsOp
	st    memState // base with every operation applied: what a reader sees
	locks map[string]bool
	nino  int
}

type fsOpKind int

const (
	opMkdir fsOpKind = iota
	opRmdir
	opCreate
	opRename
	opRemove
	opTruncate
	opWrite
	opAllocate
	opSync
	opSyncDir
)

func (k fsOpKind) String() string {
	return [...]string{"mkdir", "rmdir", "create", "rename", "remove", "truncate", "write", "allocate", "sync", "syncdir"}[k]
}

// fsOp is one recorded operation.
type fsOp struct {
	kind  fsOpKind
	path  string // the name, the directory of a syncdir, the old name of a rename
	path2 string // the new name of a rename
	ino   int
	off   int64 // of a write; the size of a truncate or allocate
	data  []byte
	at    time.Time
	n     int64 // the operation's number across file systems sharing a count
}

func (op fsOp) String() string {
	switch op.kind {
	case opWrite:
		return fmt.Sprintf("write ino %d %s @%d+%d", op.ino, op.path, op.off, len(op.data))
	case opRename:
		return fmt.Sprintf("rename %s → %s", op.path, op.path2)
	case opSync, opTruncate, opAllocate:
		return fmt.Sprintf("%s ino %d %s (%d)", op.kind, op.ino, op.path, op.off)
	}
	return fmt.Sprintf("%s %s", op.kind, op.path)
}

// dentry reports whether op changes a directory (its durability is the
// directory's sync), and which directories.
func (op fsOp) dirs() []string {
	switch op.kind {
	case opMkdir, opRmdir, opCreate, opRemove:
		return []string{filepath.Dir(op.path)}
	case opRename:
		return []string{filepath.Dir(op.path), filepath.Dir(op.path2)}
	}
	return nil
}

// memState is what a file system holds.
type memState struct {
	names map[string]int // file name → inode
	dirs  map[string]bool
	data  map[int][]byte
}

func newMemState() memState {
	return memState{names: map[string]int{}, dirs: map[string]bool{"/": true}, data: map[int][]byte{}}
}

func (st memState) clone() memState {
	c := memState{names: maps.Clone(st.names), dirs: maps.Clone(st.dirs), data: make(map[int][]byte, len(st.data))}
	for ino, d := range st.data {
		c.data[ino] = slices.Clone(d)
	}
	return c
}

// apply plays op; a tear ≥ 0 keeps only that many bytes of a write.
func (st *memState) apply(op fsOp, tear int) {
	switch op.kind {
	case opMkdir:
		st.dirs[op.path] = true
	case opRmdir:
		delete(st.dirs, op.path)
	case opCreate:
		st.names[op.path] = op.ino
		if st.data[op.ino] == nil {
			st.data[op.ino] = []byte{}
		}
	case opRename:
		if st.names[op.path] == op.ino {
			delete(st.names, op.path)
		}
		st.names[op.path2] = op.ino
	case opRemove:
		if st.names[op.path] == op.ino {
			delete(st.names, op.path)
		}
	case opTruncate:
		if d := st.data[op.ino]; int64(len(d)) > op.off {
			st.data[op.ino] = d[:op.off]
		}
	case opAllocate:
		if d := st.data[op.ino]; int64(len(d)) < op.off {
			st.data[op.ino] = append(d, make([]byte, op.off-int64(len(d)))...)
		}
	case opWrite:
		data := op.data
		if tear >= 0 {
			data = data[:tear]
		}
		d := st.data[op.ino]
		if end := op.off + int64(len(data)); int64(len(d)) < end {
			d = append(d, make([]byte, end-int64(len(d)))...)
		}
		copy(d[op.off:], data)
		st.data[op.ino] = d
	}
}

func newMemFS(now func() time.Time) *memFS {
	return &memFS{now: now, base: newMemState(), st: newMemState(), locks: map[string]bool{}}
}

// withBase returns a memFS whose disk holds st, synced.
func withBase(st memState, nino int, now func() time.Time) *memFS {
	return &memFS{now: now, base: st.clone(), st: st, locks: map[string]bool{}, nino: nino}
}

func (m *memFS) record(op fsOp) {
	if m.now != nil {
		op.at = m.now()
	}
	if m.seq != nil {
		op.n = m.seq.Add(1) - 1
	}
	m.ops = append(m.ops, op)
	m.st.apply(op, -1)
}

// opCount returns how many operations were made.
func (m *memFS) opCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ops)
}

func (m *memFS) OpenFile(name string, flag int, perm fs.FileMode) (SpoolFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if !m.st.dirs[filepath.Dir(name)] || m.st.dirs[name] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	ino, ok := m.st.names[name]
	switch {
	case ok && flag&os.O_TRUNC != 0:
		m.record(fsOp{kind: opTruncate, path: name, ino: ino})
	case !ok && flag&os.O_CREATE != 0:
		m.nino++
		ino = m.nino
		m.record(fsOp{kind: opCreate, path: name, ino: ino})
	case !ok:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &memFile{fs: m, ino: ino, name: name, write: flag&(os.O_WRONLY|os.O_RDWR) != 0}, nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return filepath.Base(i.name) }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o700
	}
	return 0o600
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

func (m *memFS) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if m.st.dirs[name] {
		return memInfo{name: name, dir: true}, nil
	}
	if ino, ok := m.st.names[name]; ok && m.st.dirs[filepath.Dir(name)] {
		return memInfo{name: name, size: int64(len(m.st.data[ino]))}, nil
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

func (m *memFS) ReadDir(name string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if !m.st.dirs[name] {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	var out []string
	for n := range m.st.names {
		if filepath.Dir(n) == name {
			out = append(out, filepath.Base(n))
		}
	}
	for d := range m.st.dirs {
		if d != name && filepath.Dir(d) == name {
			out = append(out, filepath.Base(d))
		}
	}
	slices.Sort(out)
	return out, nil
}

func (m *memFS) MkdirAll(name string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	var missing []string
	for d := name; !m.st.dirs[d]; d = filepath.Dir(d) {
		if _, ok := m.st.names[d]; ok {
			return &fs.PathError{Op: "mkdir", Path: d, Err: errors.New("not a directory")}
		}
		missing = append(missing, d)
	}
	for _, d := range slices.Backward(missing) {
		m.record(fsOp{kind: opMkdir, path: d})
	}
	return nil
}

func (m *memFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	ino, ok := m.st.names[oldname]
	if !ok || !m.st.dirs[filepath.Dir(newname)] {
		// Directories are not renamed here: only a migration does, and
		// its tests run on the real file system.
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	m.record(fsOp{kind: opRename, path: oldname, path2: newname, ino: ino})
	return nil
}

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.remove(filepath.Clean(name))
}

func (m *memFS) remove(name string) error {
	if ino, ok := m.st.names[name]; ok {
		m.record(fsOp{kind: opRemove, path: name, ino: ino})
		return nil
	}
	if m.st.dirs[name] {
		for n := range m.st.names {
			if filepath.Dir(n) == name {
				return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
			}
		}
		m.record(fsOp{kind: opRmdir, path: name})
		return nil
	}
	return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
}

func (m *memFS) RemoveAll(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	var names []string
	for n := range m.st.names {
		if n == name || strings.HasPrefix(n, name+"/") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if err := m.remove(n); err != nil {
			return err
		}
	}
	var dirs []string
	for d := range m.st.dirs {
		if d == name || strings.HasPrefix(d, name+"/") {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	for _, d := range slices.Backward(dirs) {
		if err := m.remove(d); err != nil {
			return err
		}
	}
	return nil
}

func (m *memFS) SyncDir(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if !m.st.dirs[name] {
		return &fs.PathError{Op: "sync", Path: name, Err: fs.ErrNotExist}
	}
	m.record(fsOp{kind: opSyncDir, path: name})
	return nil
}

func (m *memFS) Lock(name string) (func() error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if m.locks[name] {
		return nil, ErrSpoolLocked
	}
	m.locks[name] = true
	return func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.locks, name)
		return nil
	}, nil
}

// memFile is an open file of a memFS.
type memFile struct {
	fs     *memFS
	ino    int
	name   string
	write  bool
	closed bool
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, fs.ErrClosed
	}
	d := f.fs.st.data[f.ino]
	if off >= int64(len(d)) {
		return 0, io.EOF
	}
	n := copy(p, d[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed || !f.write {
		return 0, fs.ErrClosed
	}
	f.fs.record(fsOp{kind: opWrite, path: f.name, ino: f.ino, off: off, data: slices.Clone(p)})
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return fs.ErrClosed
	}
	f.fs.record(fsOp{kind: opSync, path: f.name, ino: f.ino})
	return nil
}

func (f *memFile) Allocate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed || !f.write {
		return fs.ErrClosed
	}
	f.fs.record(fsOp{kind: opAllocate, path: f.name, ino: f.ino, off: size})
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return int64(len(f.fs.st.data[f.ino])), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}

// crashMode is how a crash treats what was not synced.
type crashMode int

const (
	// crashKill: the process dies, the page cache survives: every
	// operation stays.
	crashKill crashMode = iota
	// crashDropUnsynced: a power cut that keeps only what was synced.
	crashDropUnsynced
	// crashPrefix: a power cut that keeps what was synced and a random
	// prefix of the rest.
	crashPrefix
	// crashTear: crashPrefix with the last kept unsynced write torn at a
	// random byte.
	crashTear
	// crashLoseRename: a power cut that keeps everything but the last
	// rename or creation not followed by a sync of its directory.
	crashLoseRename
)

func (c crashMode) String() string {
	return [...]string{"kill", "drop unsynced", "unsynced prefix", "torn write", "lost rename"}[c]
}

// crash describes a crash image: which operations it kept, and the torn
// one.
type crash struct {
	kept    []bool
	synced  []bool
	torn    int // index of the torn write, -1 if none
	tornLen int
}

// synced reports, for each of the first cut operations, whether a sync
// after it (and before cut) made it durable.
func (m *memFS) syncedBefore(cut int) []bool {
	synced := make([]bool, cut)
	fileSynced := map[int]bool{}
	dirSynced := map[string]bool{}
	for j := cut - 1; j >= 0; j-- {
		op := m.ops[j]
		switch op.kind {
		case opSync:
			fileSynced[op.ino] = true
			synced[j] = true
		case opSyncDir:
			dirSynced[op.path] = true
			synced[j] = true
		case opTruncate, opWrite, opAllocate:
			synced[j] = fileSynced[op.ino]
		default:
			synced[j] = true
			for _, d := range op.dirs() {
				synced[j] = synced[j] && dirSynced[d]
			}
		}
	}
	return synced
}

// crashImage returns the file system a crash after the first cut
// operations leaves, and what it kept.
func (m *memFS) crashImage(cut int, mode crashMode, rng *rand.Rand, now func() time.Time) (*memFS, crash) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := crash{kept: make([]bool, cut), synced: m.syncedBefore(cut), torn: -1}
	var unsynced []int
	for j := range cut {
		if c.synced[j] {
			c.kept[j] = true
		} else {
			unsynced = append(unsynced, j)
		}
	}
	switch mode {
	case crashKill:
		for _, j := range unsynced {
			c.kept[j] = true
		}
	case crashPrefix, crashTear:
		n := len(unsynced)
		if n > 0 && rng.IntN(2) == 0 {
			n = rng.IntN(n + 1)
		}
		for _, j := range unsynced[:n] {
			c.kept[j] = true
		}
		if mode == crashTear {
			for _, j := range slices.Backward(unsynced[:n]) {
				if op := m.ops[j]; op.kind == opWrite && len(op.data) > 1 {
					c.torn, c.tornLen = j, rng.IntN(len(op.data))
					break
				}
			}
		}
	case crashLoseRename:
		lost := -1
		for _, j := range slices.Backward(unsynced) {
			if k := m.ops[j].kind; k == opRename || k == opCreate {
				lost = j
				break
			}
		}
		for _, j := range unsynced {
			c.kept[j] = j != lost
		}
	}
	st := m.base.clone()
	for j := range cut {
		if !c.kept[j] {
			continue
		}
		tear := -1
		if j == c.torn {
			tear = c.tornLen
		}
		st.apply(m.ops[j], tear)
	}
	if mode == crashKill {
		// The page cache survives: what was not synced still is not, and
		// a later power cut may yet lose it.
		return &memFS{now: now, base: m.base.clone(), ops: slices.Clone(m.ops[:cut]), st: st, locks: map[string]bool{}, nino: m.nino}, c
	}
	return withBase(st, m.nino, now), c
}

// fakeClock is a SpoolClock that moves only when told; Advance runs the
// functions that come due, in order, in the caller's goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves the clock by d, running what comes due on the way.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.stopped && !t.at.After(target) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			c.now = target
			c.mu.Unlock()
			return
		}
		next.stopped = true
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// dropTimers forgets every timer (the process that set them died).
func (c *fakeClock) dropTimers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = nil
}
