package boltdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout version this package writes: 1 kept one JSON
// record per reading, 2 keeps compressed chunks of up to 512 readings, 3
// adds the head's write-ahead log (an apd that knew 2 would not read it).
const SchemaVersion = 3

// Errors returned by Open.
var (
	// ErrNewerSchema means the file was written by a newer apd.
	ErrNewerSchema = errors.New("database schema is newer than this apd")
	// ErrOldSchema means a read-only open found a file that needs a
	// migration, which only a read-write open performs.
	ErrOldSchema = errors.New("database needs migration")
)

var (
	bucketMeta     = []byte("meta")
	bucketReadings = []byte("readings")
	bucketHosts    = []byte("hosts")
	bucketPending  = []byte("pending")
	bucketDead     = []byte("dead")
	// quarantine/<sensor>/<host>/<ts>: chunks that did not decode, kept
	// aside as they were found (made when the first is).
	bucketQuarantine = []byte("quarantine")
	// log/<n>: the head's write-ahead log, one record per commit (head.go);
	// headmeta/<sensor>\x00<host>: the record a series was last sealed at.
	bucketLog      = []byte("log")
	bucketHeadMeta = []byte("headmeta")
	keySchema      = []byte("schema")
	keyLogNext     = []byte("log_next")
	// Dead-letter accounting in the meta bucket: how many are kept, their
	// bytes, and how many were dropped to stay within the bounds.
	keyDeadCount   = []byte("dead_count")
	keyDeadBytes   = []byte("dead_bytes")
	keyDeadDropped = []byte("dead_dropped")
)

// Options configure Open. The zero value opens read-write and waits
// forever for the file lock.
type Options struct {
	// ReadOnly opens the file for reading only; it must exist.
	ReadOnly bool
	// Timeout bounds the wait for the file lock; 0 waits forever.
	Timeout time.Duration
	// NoSync skips fsync on commit. Only for tests and bulk loads that can be
	// redone: a crash may lose committed batches.
	NoSync bool
	// Limits bound the dead letters kept.
	Limits store.Limits
	// Now is the clock of what the store stamps itself (a status without
	// ts, a dead letter it makes) and of the head's ages; nil means
	// time.Now.
	Now func() time.Time
	// HeadAge is how long a series' readings stay in the head at least
	// before they are sealed into a chunk (each series adds up to as much
	// again); 0 means five minutes.
	HeadAge time.Duration
	// CheckpointEvery turns deferred commits on (wal.go): commits that
	// only append to open heads are made durable in the write-ahead file,
	// and the file itself is committed at most this long after the first
	// of them. 0 commits every batch to the file, as before.
	CheckpointEvery time.Duration
}

// ErrTruncated means the file is shorter than its own meta page says:
// a copy cut short. bbolt would die of SIGBUS reading past its end.
var ErrTruncated = errors.New("database file is truncated")

// checkSize refuses a file shorter than the data its meta page claims.
func checkSize(db *bolt.DB, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	return db.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); need > fi.Size() {
			return fmt.Errorf("open database %s: %w: %d bytes, it needs %d", path, ErrTruncated, fi.Size(), need)
		}
		return nil
	})
}

// allocSize is how much the file grows beyond what a commit needs.
const allocSize = 64 << 10

// Store is an open database. Its methods are safe for concurrent use.
type Store struct {
	db     *bolt.DB
	path   string
	limits store.Limits
	now    func() time.Time
	// headMu orders readers against commits: a commit holds it to commit
	// its bbolt transaction and publish its head changes together, a
	// reader to begin its transaction and read the head, so each sees
	// both as of the same commit.
	headMu sync.RWMutex
	head   *head

	// writeMu serialises writers: the deferred transaction stays open
	// between commits, and bbolt has one writer at a time.
	writeMu         sync.Mutex
	checkpointEvery time.Duration
	wal             *walFile  // nil: deferred commits off
	pending         *bolt.Tx  // the deferred transaction, nil when none is open
	pendingSince    time.Time // when it began
	pendingBytes    int       // the head log records it holds
	walGen          uint64    // the generation of the write-ahead records being written
	// overlay holds the host records deferred commits wrote, for readers
	// (under headMu); emptied at each checkpoint.
	overlay     map[string]hostOverlay
	walRecords  atomic.Uint64
	checkpoints atomic.Uint64
	syncs       atomic.Uint64
	noSync      bool
}

// hostOverlay is a host record written by a deferred commit: the record
// as encoded and the number of its seqs committed above its watermark.
type hostOverlay struct {
	record      []byte
	pendingSeqs uint64
}

// WriteStats returns what the store made durable since open
// (store.WriteReporter).
func (s *Store) WriteStats() store.WriteStats {
	return store.WriteStats{Syncs: s.syncs.Load(), Deferred: s.walRecords.Load(), Checkpoints: s.checkpoints.Load()}
}

// Open opens or creates the database at path and migrates it to
// SchemaVersion. It returns an error wrapping store.ErrLocked when another
// process holds the file past opts.Timeout, and ErrNewerSchema when the file
// is from a newer apd.
func Open(path string, opts Options) (*Store, error) {
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		ReadOnly:     opts.ReadOnly,
		Timeout:      opts.Timeout,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open database %s: %w", path, store.ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := checkSize(db, path); err != nil {
		db.Close()
		return nil, err
	}
	// Grow the file by what it needs plus a little, not by doubling up to
	// bbolt's 16 MiB step: a Pi's card is small, and a bound on what a
	// part of the file may hold (dead letters) should bound the file.
	db.AllocSize = allocSize
	s := &Store{db: db, path: path, limits: opts.Limits.WithDefaults(), now: opts.Now, head: newHead(opts.HeadAge),
		checkpointEvery: opts.CheckpointEvery, noSync: opts.NoSync}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.ReadOnly {
		err = db.View(func(tx *bolt.Tx) error {
			v, err := checkVersion(tx)
			if err == nil && v < SchemaVersion {
				err = fmt.Errorf("%w: file has schema %d, this apd reads %d; open it once without read-only (apd compact --db, or apd serve) to migrate it", ErrOldSchema, v, SchemaVersion)
			}
			if err != nil {
				return err
			}
			if err := s.replay(tx); err != nil {
				return err
			}
			recs, err := readWAL(walPath(path), metaUint(tx.Bucket(bucketMeta), keyWALApplied))
			if err == nil && len(recs) > 0 {
				err = fmt.Errorf("%w: %d commits are in %s only (the aggregator stopped without closing it); open it once without read-only (apd serve, or apd compact --db) to apply them", ErrOldSchema, len(recs), walPath(path))
			}
			return err
		})
	} else {
		err = db.Update(func(tx *bolt.Tx) error {
			if err := migrate(tx); err != nil {
				return err
			}
			if err := countDeadLetters(tx); err != nil {
				return err
			}
			return s.replay(tx)
		})
	}
	if err == nil && !opts.ReadOnly {
		if opts.CheckpointEvery > 0 {
			if s.wal, err = openWAL(walPath(path)); err == nil {
				s.wal.noSync = opts.NoSync
			}
		}
		if err == nil {
			err = s.recoverWAL()
		}
	}
	if err != nil {
		if s.wal != nil {
			s.wal.close()
		}
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return s, nil
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close checkpoints deferred commits and closes the file. Scans in
// progress must have returned.
func (s *Store) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.checkpointLocked()
	if s.wal != nil {
		if cerr := s.wal.close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Remove(s.wal.path)
		}
		s.wal = nil
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Checkpoint commits the deferred commits to the file now.
func (s *Store) Checkpoint() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.checkpointLocked()
}

// timeKey encodes t as a sortable 8-byte key.
func timeKey(t time.Time) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(t.UnixMilli())^(1<<63))
	return k[:]
}

func keyTime(k []byte) time.Time {
	return time.UnixMilli(int64(binary.BigEndian.Uint64(k) ^ (1 << 63))).UTC()
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func metaUint(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func putMetaUint(b *bolt.Bucket, k []byte, n uint64) error { return b.Put(k, seqKey(n)) }
