package publisher

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The spool before the segment log was a bbolt file at the spool's path:
// bucket "meta" (next_seq, acked, bytes, dropped as 8-byte big-endian
// integers; id), bucket "outbox" (8-byte big-endian seq → sensor, '\n',
// payload). OpenSpool migrates it the first time:
//
//  1. build the new directory at <path>.new: the pending readings with
//     their seqs, the same id, the seq counter, the dropped count; sync it;
//  2. rename <path> to <path>.old, <path>.new to <path>; sync the parent;
//  3. remove <path>.old.
//
// A crash anywhere leaves a state prepareLayout recognises: <path> still
// the bbolt file (a stale <path>.new is built again), <path> missing with
// <path>.old present (between the renames: put it back and migrate again),
// or <path> the directory with <path>.old left (remove it).
var (
	boltMeta    = []byte("meta")
	boltOutbox  = []byte("outbox")
	boltNextSeq = []byte("next_seq")
	boltAcked   = []byte("acked")
	boltDropped = []byte("dropped")
	boltID      = []byte("id")
)

// prepareLayout brings the spool's path to the segment log's layout,
// finishing or redoing a migration a crash interrupted.
func (s *Spool) prepareLayout() error {
	old, tmp := s.dir+".old", s.dir+".new"
	fi, err := s.fs.Stat(s.dir)
	switch {
	case err == nil && fi.IsDir():
		// Done, or done but for removing the old file.
		if err := s.fs.RemoveAll(old); err != nil {
			return fmt.Errorf("remove the migrated spool: %w", err)
		}
		return s.fs.RemoveAll(tmp)
	case err == nil:
		return s.migrate()
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if _, err := s.fs.Stat(old); err == nil {
		// A migration stopped between its renames.
		if err := s.fs.Rename(old, s.dir); err != nil {
			return fmt.Errorf("restore the spool before its migration: %w", err)
		}
		if err := s.syncDir(filepath.Dir(s.dir)); err != nil {
			return err
		}
		return s.migrate()
	}
	return s.fs.RemoveAll(tmp)
}

// migrate turns the bbolt spool at s.dir into a segment log.
func (s *Spool) migrate() error {
	tmp, old := s.dir+".new", s.dir+".old"
	if err := s.fs.RemoveAll(tmp); err != nil {
		return fmt.Errorf("migrate spool: %w", err)
	}
	db, err := bolt.Open(s.dir, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return errors.New("in use by another apd-publish")
	}
	if err != nil {
		return fmt.Errorf("migrate spool: %w", err)
	}
	defer db.Close()
	var st spoolState
	pending := 0
	err = db.View(func(tx *bolt.Tx) error {
		meta, box := tx.Bucket(boltMeta), tx.Bucket(boltOutbox)
		if meta == nil || box == nil {
			return errors.New("not a spool: no meta or outbox bucket")
		}
		st = spoolState{ID: string(meta.Get(boltID)), Clean: true, Sync: s.opts.Sync.String(),
			NextSeq: max(boltUint(meta, boltNextSeq), 1), Acked: boltUint(meta, boltAcked), Dropped: boltUint(meta, boltDropped)}
		if st.ID == "" || len(st.ID) > maxSpoolIDLen {
			st.ID = newSpoolID()
		}
		if err := s.fs.MkdirAll(tmp, 0o700); err != nil {
			return err
		}
		w := migrationWriter{s: s, dir: tmp, id: st.ID}
		c := box.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			sensor, payload, ok := bytes.Cut(v, []byte{'\n'})
			if len(k) != 8 || !ok {
				continue
			}
			if err := w.add(binary.BigEndian.Uint64(k), sensor, payload); err != nil {
				return err
			}
			pending++
		}
		st.NextSeq = max(st.NextSeq, w.next)
		return w.finish(st.NextSeq)
	})
	if err != nil {
		return fmt.Errorf("migrate spool: %w", err)
	}
	if err := s.saveStateIn(tmp, st); err != nil {
		return fmt.Errorf("migrate spool: %w", err)
	}
	db.Close()
	parent := filepath.Dir(s.dir)
	if err := s.syncDir(parent); err != nil {
		return fmt.Errorf("migrate spool: %w", err)
	}
	if err := s.fs.Rename(s.dir, old); err != nil {
		return fmt.Errorf("migrate spool: %w", err)
	}
	if err := s.fs.Rename(tmp, s.dir); err != nil {
		return fmt.Errorf("migrate spool: %w", err)
	}
	if err := s.syncDir(parent); err != nil {
		return fmt.Errorf("migrate spool: %w", err)
	}
	if err := s.fs.Remove(old); err != nil {
		return fmt.Errorf("migrate spool: remove the old file: %w", err)
	}
	s.log.Info("migrated the spool from a bbolt file to a segment log", "path", s.dir, "pending", pending,
		"next_seq", st.NextSeq, "acked", st.Acked, "dropped", st.Dropped, "spool", st.ID)
	return nil
}

func boltUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// saveStateIn writes a state file in dir, counting its wear.
func (s *Spool) saveStateIn(dir string, st spoolState) error {
	written, syncs, err := writeState(s.fs, dir, st)
	s.wear.BytesWritten += written
	s.wear.Syncs += syncs
	return err
}

// migrationWriter writes migrated readings as segments: records of up to
// 256 contiguous readings, a new segment past SegmentBytes — only where
// seqs are contiguous, since a gap between segments means to the spool
// that everything before it was acknowledged.
type migrationWriter struct {
	s    *Spool
	dir  string
	id   string
	f    SpoolFile
	name string
	end  int64
	next uint64 // the seq that continues the record being built
	rec  *recordBuilder
}

const migrationRecordReadings = 256

func (w *migrationWriter) add(seq uint64, sensor, payload []byte) error {
	if w.rec != nil && (seq != w.next || w.rec.count == migrationRecordReadings) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if w.rec == nil {
		if w.f != nil && w.end >= w.s.opts.SegmentBytes && seq == w.next {
			if err := w.closeSegment(); err != nil {
				return err
			}
		}
		if w.f == nil {
			if err := w.openSegment(seq); err != nil {
				return err
			}
		}
		w.rec = newRecordBuilder(seq, 0)
	}
	if err := w.rec.add(string(sensor), func(b []byte) []byte { return append(b, payload...) }); err != nil {
		return err
	}
	w.next = seq + 1
	return nil
}

func (w *migrationWriter) openSegment(first uint64) error {
	w.name = segmentName(first)
	f, err := w.s.fs.OpenFile(filepath.Join(w.dir, w.name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w.f, w.end = f, segmentHeaderSize
	n, err := f.WriteAt(encodeSegmentHeader(first, w.id), 0)
	w.s.wear.BytesWritten += uint64(n)
	return err
}

func (w *migrationWriter) flush() error {
	frame, err := w.rec.frame()
	if err != nil {
		return err
	}
	n, err := w.f.WriteAt(frame, w.end)
	w.s.wear.BytesWritten += uint64(n)
	w.end += int64(n)
	w.rec = nil
	return err
}

func (w *migrationWriter) closeSegment() error {
	err := w.f.Sync()
	w.s.wear.Syncs++
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

// finish writes what is left; with nothing pending it makes an empty
// segment at nextSeq, which holds the seq counter.
func (w *migrationWriter) finish(nextSeq uint64) error {
	if w.rec != nil {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if w.f == nil && w.next == 0 {
		if err := w.openSegment(nextSeq); err != nil {
			return err
		}
	}
	if w.f != nil {
		return w.closeSegment()
	}
	return nil
}
