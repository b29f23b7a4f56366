package boltdb

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Compact rewrites the database at path into a fresh file without free
// pages and replaces it, so the file shrinks after deletes. No other
// process may have the file open. It returns the sizes before and after.
func Compact(path string) (before, after int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	src, err := Open(path, Options{Timeout: time.Second}) // read-write: an old schema is migrated first
	if err != nil {
		return 0, 0, err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".compact")
	_ = os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		src.Close()
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	err = bolt.Compact(dst, src.db, 64<<20)
	src.Close()
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	nfi, err := os.Stat(tmp)
	if err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	return fi.Size(), nfi.Size(), nil
}

// Backup writes a consistent copy of the whole database to w while writers
// go on (a bbolt read transaction), and returns its size.
func (s *Store) Backup(w io.Writer) (int64, error) { return s.WriteBackup(w, nil) }

// WriteBackup is Backup that first tells begin (when not nil) how many
// bytes the copy will have, so a receiver can tell a short one.
//
// The consistent copy is written to a temporary file next to the
// database and sent from there: a read transaction held open while a slow
// receiver (a network client) takes the bytes would block every commit
// that has to grow the file.
func (s *Store) WriteBackup(w io.Writer, begin func(size int64)) (int64, error) {
	if err := s.Checkpoint(); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".backup-*")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	var size int64
	err = s.db.View(func(tx *bolt.Tx) error {
		var err error
		size, err = tx.WriteTo(tmp)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if begin != nil {
		begin(size)
	}
	n, err := io.Copy(w, tmp)
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

// Verify checks a database file without trusting it: its size against
// what its meta page says it holds (a truncated copy would make bbolt read
// past the end of the file and die of SIGBUS), then every page and every
// bucket (bbolt's consistency check), then that apd can read it. A
// damaged file may still make bbolt panic: callers that must not die run
// Verify in a child process (apd verify).
func Verify(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	defer db.Close()
	if err := checkSize(db, path); err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		var problems []error
		for err := range tx.Check() { // read to the end: the check runs until then
			if len(problems) < 10 {
				problems = append(problems, err)
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("verify %s: %w", path, errors.Join(problems...))
		}
		if _, err := checkVersion(tx); err != nil {
			return fmt.Errorf("verify %s: %w", path, err)
		}
		for _, b := range [][]byte{bucketMeta, bucketReadings, bucketHosts, bucketPending, bucketDead} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("verify %s: not an apd database (no %s bucket)", path, b)
			}
		}
		if tx.Bucket(bucketLog) != nil {
			// The head's log must read, or Open would refuse the file.
			if err := (&Store{head: newHead(0)}).replay(tx); err != nil {
				return fmt.Errorf("verify %s: %w", path, err)
			}
		}
		return nil
	})
}
