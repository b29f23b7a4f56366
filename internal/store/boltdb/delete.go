package boltdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	bolt "go.etcd.io/bbolt"
)

// Delete removes the readings q selects (Limit is ignored) and returns how
// many it removed. Deleting all of a host's readings, with no time bounds
// and no sensor, also forgets the host itself (its state, counts and seq
// watermark): a household must be able to remove its data. The file does
// not shrink until Compact.
func (s *Store) Delete(q store.Query) (int, error) {
	removed := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		removed = 0
		readings, hostsB := tx.Bucket(bucketReadings), tx.Bucket(bucketHosts)
		since, until := queryKeys(q)
		perHost := map[string]map[string]uint64{}
		err := eachSeries(tx, q, func(sb, hb *bolt.Bucket, sensor, host []byte) error {
			n, err := deleteSeries(hb, string(host), string(sensor), since, until)
			if err != nil || n == 0 {
				return err
			}
			removed += n
			if perHost[string(host)] == nil {
				perHost[string(host)] = map[string]uint64{}
			}
			perHost[string(host)][string(sensor)] += uint64(n)
			if k, _ := hb.Cursor().First(); k == nil {
				return sb.DeleteBucket(host)
			}
			return nil
		}, func(sb *bolt.Bucket, sensor []byte) error {
			if k, _ := sb.Cursor().First(); k == nil {
				return readings.DeleteBucket(sensor)
			}
			return nil
		})
		if err != nil {
			return err
		}
		wholeHosts := q.Sensor == "" && q.Since.IsZero() && q.Until.IsZero() && len(q.Hosts) > 0
		for host, counts := range perHost {
			if wholeHosts {
				continue
			}
			rec, err := getHost(hostsB, host)
			if err != nil {
				return err
			}
			for sensor, n := range counts {
				if st := rec.Sensors[sensor]; st != nil {
					st.Count -= min(st.Count, n)
					if st.Count == 0 {
						delete(rec.Sensors, sensor)
					}
				}
			}
			v, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := hostsB.Put([]byte(host), v); err != nil {
				return err
			}
		}
		if wholeHosts {
			for _, h := range q.Hosts {
				if err := hostsB.Delete([]byte(h)); err != nil {
					return err
				}
				if tx.Bucket(bucketPending).Bucket([]byte(h)) != nil {
					if err := tx.Bucket(bucketPending).DeleteBucket([]byte(h)); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	return removed, nil
}

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
func (s *Store) WriteBackup(w io.Writer, begin func(size int64)) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		if begin != nil {
			begin(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
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
		return nil
	})
}
