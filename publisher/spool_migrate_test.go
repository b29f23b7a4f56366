package publisher

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// boltSpool is a spool of the format before the segment log.
type boltSpool struct {
	id                      string
	nextSeq, acked, dropped uint64
	pending                 []Spooled
}

// write builds it by hand at path, as that format's code did.
func (b boltSpool) write(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		box, err := tx.CreateBucket([]byte("outbox"))
		if err != nil {
			return err
		}
		size := 0
		for _, p := range b.pending {
			v := append(append([]byte(p.Sensor), '\n'), p.Payload...)
			size += len(v)
			if err := box.Put(u(p.Seq), v); err != nil {
				return err
			}
		}
		for k, v := range map[string][]byte{"next_seq": u(b.nextSeq), "acked": u(b.acked), "dropped": u(b.dropped), "bytes": u(uint64(size)), "id": []byte(b.id)} {
			if err := meta.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pendingReadings makes the readings of seqs from..to as the old spool
// held them.
func pendingReadings(from, to uint64) []Spooled {
	var out []Spooled
	for q := from; q <= to; q++ {
		r := schema.Reading{Host: "pi", Sensor: fmt.Sprintf("sensor_%d", q%5), Time: spoolEpoch.Add(time.Duration(q) * time.Second),
			Seq: q, Value: json.RawMessage(fmt.Sprintf(`{"magnitude":%d.5,"unit":"degC"}`, q))}
		out = append(out, Spooled{Seq: q, Sensor: r.Sensor, Payload: r.AppendJSON(nil, schema.WithIdentity)})
	}
	return out
}

// checkMigrated checks that the spool at path holds what old held.
func checkMigrated(t *testing.T, path string, old boltSpool) {
	t.Helper()
	s, err := OpenSpool(path, SpoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	last := old.nextSeq - 1
	if s.ID() != old.id || s.LastSeq() != last || s.Acked() != old.acked || s.Depth() != len(old.pending) {
		t.Errorf("migrated: id %s, last seq %d, acked %d, depth %d; want %s, %d, %d, %d",
			s.ID(), s.LastSeq(), s.Acked(), s.Depth(), old.id, last, old.acked, len(old.pending))
	}
	if _, dropped := s.Stats(); dropped != old.dropped {
		t.Errorf("dropped %d, want %d", dropped, old.dropped)
	}
	got := allPending(t, s, 256)
	if len(got) != len(old.pending) {
		t.Fatalf("%d pending, want %d", len(got), len(old.pending))
	}
	for i, g := range got {
		w := old.pending[i]
		if g.Seq != w.Seq || g.Sensor != w.Sensor || !bytes.Equal(g.Payload, w.Payload) {
			t.Fatalf("pending[%d] = %d %s %s, want %d %s %s", i, g.Seq, g.Sensor, g.Payload, w.Seq, w.Sensor, w.Payload)
		}
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Errorf("%s after the migration: %v, %v; want a directory", path, fi, err)
	}
	for _, leftover := range []string{path + ".old", path + ".new"} {
		if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind: %v", leftover, err)
		}
	}
}

// TestSpoolMigratesBolt: a bbolt spool of the earlier format becomes a
// segment log with the same id, seqs, pending readings and counters.
func TestSpoolMigratesBolt(t *testing.T) {
	tests := []struct {
		name string
		old  boltSpool
	}{
		{"pending", boltSpool{id: "9f2c41d07a3be815", nextSeq: 108, acked: 100, dropped: 4, pending: pendingReadings(101, 107)}},
		{"all acknowledged", boltSpool{id: "0123456789abcdef", nextSeq: 50, acked: 49}},
		{"never used", boltSpool{id: "fedcba9876543210", nextSeq: 0}},
		// Past a segment's size: the readings go to several.
		{"a long outage", boltSpool{id: "aaaabbbbccccdddd", nextSeq: 4001, acked: 1000, dropped: 17, pending: pendingReadings(1001, 4000)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "apd-spool.db")
			tc.old.write(t, path)
			var log bytes.Buffer
			s, err := OpenSpool(path, SpoolOptions{Logger: slog.New(slog.NewTextHandler(&log, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(log.String(), "migrated the spool"); n != 1 || !strings.Contains(log.String(), fmt.Sprintf("pending=%d", len(tc.old.pending))) {
				t.Errorf("log: %q, want one line of the migration with its count", log.String())
			}
			next := max(tc.old.nextSeq, 1)
			out := mustAppend(t, s, tick("pi", 1, spoolEpoch))
			if out[0].Seq != next {
				t.Errorf("first append after the migration: seq %d, want %d", out[0].Seq, next)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tc.old.nextSeq = next + 1
			tc.old.pending = append(tc.old.pending, out[0])
			checkMigrated(t, path, tc.old)
			if segs, _ := filepath.Glob(filepath.Join(path, "*.seg")); tc.name == "a long outage" && len(segs) < 2 {
				t.Errorf("segments %v: want the outage's readings in several", segs)
			}
		})
	}
}

// failFS is the real file system, failing every operation that changes
// anything from its n-th on: a process that died there.
type failFS struct {
	OSFS
	left *int
}

var errDied = errors.New("the process died here")

func (f failFS) step() error {
	if *f.left <= 0 {
		return errDied
	}
	*f.left--
	return nil
}

func (f failFS) OpenFile(name string, flag int, perm fs.FileMode) (SpoolFile, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC) != 0 {
		if err := f.step(); err != nil {
			return nil, err
		}
	}
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return failFile{file, f}, nil
}

func (f failFS) MkdirAll(name string, perm fs.FileMode) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.OSFS.MkdirAll(name, perm)
}

func (f failFS) Rename(oldname, newname string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.OSFS.Rename(oldname, newname)
}

func (f failFS) Remove(name string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.OSFS.Remove(name)
}

func (f failFS) RemoveAll(name string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.OSFS.RemoveAll(name)
}

func (f failFS) SyncDir(name string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.OSFS.SyncDir(name)
}

type failFile struct {
	SpoolFile
	fs failFS
}

func (f failFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.step(); err != nil {
		// Half of it made it.
		n, _ := f.SpoolFile.WriteAt(p[:len(p)/2], off)
		return n, err
	}
	return f.SpoolFile.WriteAt(p, off)
}

func (f failFile) Sync() error {
	if err := f.fs.step(); err != nil {
		return err
	}
	return f.SpoolFile.Sync()
}

func (f failFile) Allocate(size int64) error {
	if err := f.fs.step(); err != nil {
		return err
	}
	return f.SpoolFile.Allocate(size)
}

// TestSpoolMigrationCrashPoints: a migration that dies after any of its
// operations is finished by the next open, which finds the spool intact.
func TestSpoolMigrationCrashPoints(t *testing.T) {
	old := boltSpool{id: "9f2c41d07a3be815", nextSeq: 1208, acked: 1000, dropped: 3, pending: pendingReadings(1001, 1207)}
	seen := map[string]bool{}
	for n := 0; ; n++ {
		path := filepath.Join(t.TempDir(), "apd-spool.db")
		old.write(t, path)
		left := n
		s, err := OpenSpool(path, SpoolOptions{FS: failFS{left: &left}, SegmentBytes: 16 << 10})
		if err == nil {
			s.Close()
			if n < 10 {
				t.Fatalf("the migration made only %d operations", n)
			}
			break
		}
		if !errors.Is(err, errDied) {
			t.Fatalf("dying after %d operations: %v", n, err)
		}
		layout := []string{}
		for _, p := range []string{path, path + ".new", path + ".old"} {
			fi, err := os.Stat(p)
			switch {
			case err != nil:
			case fi.IsDir():
				layout = append(layout, filepath.Ext(p)+" dir")
			default:
				layout = append(layout, filepath.Ext(p)+" file")
			}
		}
		seen[strings.Join(layout, ", ")] = true
		t.Run(fmt.Sprintf("died after %d (%s)", n, strings.Join(layout, ", ")), func(t *testing.T) {
			checkMigrated(t, path, old)
		})
	}
	// The states a crash can leave: the bbolt file and a partial new
	// directory, the new directory and the old file (between the
	// renames), the migrated directory and the old file (before its
	// removal).
	for _, want := range []string{".db file, .new dir", ".new dir, .old file", ".db dir, .old file"} {
		if !seen[want] {
			t.Errorf("no crash left %q; seen %v", want, slices.Sorted(func(yield func(string) bool) {
				for k := range seen {
					if !yield(k) {
						return
					}
				}
			}))
		}
	}
}
