package boltdb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout version this package writes: 1 kept one JSON
// record per reading, 2 keeps compressed chunks of up to 512 readings.
const SchemaVersion = 2

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
	keySchema      = []byte("schema")
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
	// ts, a dead letter it makes); nil means time.Now.
	Now func() time.Time
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
	s := &Store{db: db, path: path, limits: opts.Limits.WithDefaults(), now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.ReadOnly {
		err = db.View(func(tx *bolt.Tx) error {
			v, err := checkVersion(tx)
			if err == nil && v < SchemaVersion {
				err = fmt.Errorf("%w: file has schema %d, this apd reads %d; open it once without read-only (apd compact --db, or apd serve) to migrate it", ErrOldSchema, v, SchemaVersion)
			}
			return err
		})
	} else {
		err = db.Update(func(tx *bolt.Tx) error {
			if err := migrate(tx); err != nil {
				return err
			}
			return countDeadLetters(tx)
		})
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return s, nil
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close closes the file. Scans in progress must have returned.
func (s *Store) Close() error { return s.db.Close() }

func checkVersion(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, nil
	}
	var v int
	if _, err := fmt.Sscan(string(meta.Get(keySchema)), &v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if v > SchemaVersion {
		return v, fmt.Errorf("%w: file has %d, this apd knows up to %d", ErrNewerSchema, v, SchemaVersion)
	}
	return v, nil
}

// migrations[i] moves a database from version i to i+1.
var migrations = []func(*bolt.Tx) error{
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketReadings, bucketHosts, bucketPending, bucketDead} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	migrateToChunks,
}

// migrateToChunks rewrites version 1's one-record-per-reading layout into
// chunks, series by series, a chunk's worth of records at a time.
func migrateToChunks(tx *bolt.Tx) error {
	readings := tx.Bucket(bucketReadings)
	var sensors [][]byte
	_ = readings.ForEachBucket(func(k []byte) error { sensors = append(sensors, slices.Clone(k)); return nil })
	for _, sensor := range sensors {
		sb := readings.Bucket(sensor)
		var hosts [][]byte
		_ = sb.ForEachBucket(func(k []byte) error { hosts = append(hosts, slices.Clone(k)); return nil })
		for _, host := range hosts {
			if err := migrateSeries(sb.Bucket(host), string(host), string(sensor)); err != nil {
				return fmt.Errorf("%s/%s: %w", sensor, host, err)
			}
		}
	}
	return nil
}

func migrateSeries(hb *bolt.Bucket, host, sensor string) error {
	c := hb.Cursor()
	for k, v := c.First(); k != nil; {
		var group []schema.Reading
		var keys [][]byte
		for ; k != nil && len(group) < chunk.MaxReadings; k, v = c.Next() {
			r, err := schema.DecodeStored(host, sensor, keyTime(k), v)
			if err != nil {
				return fmt.Errorf("record at %s: %w", keyTime(k), err)
			}
			group = append(group, r)
			keys = append(keys, slices.Clone(k))
		}
		for _, key := range keys {
			if err := hb.Delete(key); err != nil {
				return err
			}
		}
		if err := putChunks(hb, sensor, group); err != nil {
			return err
		}
		// The chunk sits under its first record's key; go on after its last.
		k, v = c.Seek(keys[len(keys)-1])
		if k != nil && bytes.Equal(k, keys[len(keys)-1]) {
			k, v = c.Next()
		}
	}
	return nil
}

func migrate(tx *bolt.Tx) error {
	v, err := checkVersion(tx)
	if err != nil {
		return err
	}
	for ; v < SchemaVersion; v++ {
		if err := migrations[v](tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
		}
		if err := tx.Bucket(bucketMeta).Put(keySchema, fmt.Appendf(nil, "%d", v+1)); err != nil {
			return err
		}
	}
	return nil
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

// hostRecord is what the store keeps about a host besides its readings.
type hostRecord struct {
	State     string    `json:"state,omitempty"`
	StateTime time.Time `json:"state_time,omitzero"`
	Version   string    `json:"version,omitempty"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	store.SeqState
	Sensors map[string]*store.SensorStats `json:"sensors,omitempty"`
}

func getHost(b *bolt.Bucket, host string) (*hostRecord, error) {
	rec := &hostRecord{}
	if v := b.Get([]byte(host)); v != nil {
		if err := json.Unmarshal(v, rec); err != nil {
			return nil, fmt.Errorf("host %s: %w", host, err)
		}
	}
	if rec.Sensors == nil {
		rec.Sensors = make(map[string]*store.SensorStats)
	}
	return rec, nil
}

// Hosts returns every host the store has seen, sorted by name.
func (s *Store) Hosts() ([]store.Host, error) {
	var out []store.Host
	err := s.db.View(func(tx *bolt.Tx) error {
		pending := tx.Bucket(bucketPending)
		return tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
			var rec hostRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("host %s: %w", k, err)
			}
			if rec.Sensors == nil {
				rec.Sensors = map[string]*store.SensorStats{}
			}
			out = append(out, store.Host{Name: string(k), State: rec.State, StateTime: rec.StateTime,
				Version: rec.Version, LastSeen: rec.LastSeen, Watermark: rec.Watermark, MaxSeq: rec.MaxSeq,
				Lost: rec.Lost, Spool: rec.Spool, Sensors: rec.Sensors})
			if rec.MaxSeq > rec.Watermark {
				committed := uint64(0)
				if pb := pending.Bucket(k); pb != nil {
					committed = uint64(pb.Stats().KeyN)
				}
				out[len(out)-1].Awaited = rec.MaxSeq - rec.Watermark - committed
			}
			return nil
		})
	})
	return out, err
}

// DeadLetters returns up to limit dead letters, newest first.
func (s *Store) DeadLetters(limit int) ([]store.DeadLetter, error) {
	var out []store.DeadLetter
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDead).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var d store.DeadLetter
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// Commit writes a batch in one transaction: readings not already stored
// under (host, sensor, ts) are inserted, duplicates are counted and left as
// they are; status updates and dead letters are recorded; each host's seq
// watermark advances over the contiguous run of committed seqs. Either all
// of it is durable when Commit returns nil, or none of it is.
func (s *Store) Commit(b *store.Batch) (store.CommitResult, error) {
	res := store.CommitResult{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		res = store.CommitResult{}
		return commit(tx, b, s.limits, s.now(), &res)
	})
	return res, err
}

func commit(tx *bolt.Tx, b *store.Batch, limits store.Limits, now time.Time, res *store.CommitResult) error {
	readings := tx.Bucket(bucketReadings)
	hostsB := tx.Bucket(bucketHosts)
	pendingB := tx.Bucket(bucketPending)
	hosts := map[string]*hostRecord{}
	host := func(name string) (*hostRecord, error) {
		if h, ok := hosts[name]; ok {
			return h, nil
		}
		h, err := getHost(hostsB, name)
		hosts[name] = h
		return h, err
	}
	// Statuses first: a new spool restarts its host's seqs before this
	// batch's readings (sent after the status) are counted.
	floors := map[string]uint64{}
	restarted := map[string]bool{}
	for _, st := range b.Statuses {
		h, err := host(st.Host)
		if err != nil {
			return err
		}
		if sp := st.Status.Spool; sp != "" {
			if h.Spool != "" && h.Spool != sp {
				h.Restart(sp)
				if pendingB.Bucket([]byte(st.Host)) != nil {
					if err := pendingB.DeleteBucket([]byte(st.Host)); err != nil {
						return err
					}
				}
				restarted[st.Host] = true
				delete(floors, st.Host)
			}
			h.Spool = sp
		}
		if st.Status.FirstSeq > 0 {
			floors[st.Host] = max(floors[st.Host], st.Status.FirstSeq-1)
		}
		t := st.Status.Time
		if t.IsZero() {
			t = now.UTC().Truncate(time.Millisecond)
		}
		h.State, h.StateTime = st.Status.State, t
		if st.Status.Version != "" {
			h.Version = st.Status.Version
		}
	}
	kept, dead, err := refuseSeqJumps(b, host, now, res)
	if err != nil {
		return err
	}
	if err := storeReadings(readings, kept, host, res); err != nil {
		return err
	}
	changes := map[string]*store.SeqChange{}
	change := func(name string) *store.SeqChange {
		if changes[name] == nil {
			changes[name] = &store.SeqChange{}
		}
		return changes[name]
	}
	for i := range kept {
		if r := &kept[i]; !b.Imported && r.Seq != 0 {
			ch := change(r.Host)
			ch.Arrived = append(ch.Arrived, r.Seq)
		}
	}
	for name, floor := range floors {
		ch := change(name)
		ch.Floor, ch.HasFloor = floor, true
	}
	for name := range restarted {
		change(name).Restarted = true
	}
	for name, ch := range changes {
		h, err := host(name)
		if err != nil {
			return err
		}
		ack, lost, err := store.Advance(&h.SeqState, *ch, &pending{parent: pendingB, name: []byte(name)})
		if err != nil {
			return err
		}
		res.Lost += lost
		if ack {
			if res.Acks == nil {
				res.Acks = make(map[string]store.HostAck)
			}
			res.Acks[name] = store.HostAck{Seq: h.Watermark, Spool: h.Spool}
		}
	}
	names := make([]string, 0, len(hosts))
	for name := range hosts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v, err := json.Marshal(hosts[name])
		if err != nil {
			return err
		}
		if err := hostsB.Put([]byte(name), v); err != nil {
			return err
		}
	}
	return putDeadLetters(tx, limits, b.DeadLetters, dead)
}

// deadCost is what one stored dead letter counts against the byte bound,
// so that the bound holds for the file and not only for the data: its
// key, value and bbolt's element header, doubled — pages are partly empty
// (a page holds at least two elements: a 5 KB dead letter and its
// neighbour take three 4 KB pages), and bbolt writes each changed page
// anew before it frees the old one, so under a flood about half as much
// again is in flight.
func deadCost(v []byte) int64 { return (int64(len(v)) + 8 + 16) * 2 }

// putDeadLetters stores dead letters, then drops the oldest until the
// bounds hold, keeping count in the meta bucket.
func putDeadLetters(tx *bolt.Tx, limits store.Limits, lists ...[]store.DeadLetter) error {
	meta, bucket := tx.Bucket(bucketMeta), tx.Bucket(bucketDead)
	bucket.FillPercent = 0.95 // keys only ever grow: fill pages
	count, size, dropped := metaUint(meta, keyDeadCount), metaUint(meta, keyDeadBytes), metaUint(meta, keyDeadDropped)
	// One commit writes at most an eighth of the byte bound: the pages it
	// frees (the oldest dead letters) are reusable only after it, so a
	// large batch would grow the file past the bound. Under a flood the
	// rest of a batch is dropped (counted) as the oldest would be.
	var encoded [][]byte
	for _, list := range lists {
		for _, d := range list {
			if len(d.Payload) > store.MaxDeadPayload {
				d.Payload = d.Payload[:store.MaxDeadPayload]
			}
			v, err := json.Marshal(d)
			if err != nil {
				return err
			}
			encoded = append(encoded, v)
		}
	}
	if len(encoded) == 0 {
		return nil
	}
	first, budget := len(encoded), limits.MaxDeadBytes/8
	for first > 0 && (first == len(encoded) || budget >= deadCost(encoded[first-1])) {
		first--
		budget -= deadCost(encoded[first])
	}
	dropped += uint64(first)
	for _, v := range encoded[first:] {
		n, _ := bucket.NextSequence()
		if err := bucket.Put(seqKey(n), v); err != nil {
			return err
		}
		count++
		size += uint64(deadCost(v))
	}
	c := bucket.Cursor()
	for k, v := c.First(); k != nil && (count > uint64(limits.MaxDeadLetters) || size > uint64(limits.MaxDeadBytes)); k, v = c.First() {
		size -= min(size, uint64(deadCost(v)))
		count--
		dropped++
		if err := c.Delete(); err != nil {
			return err
		}
	}
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{keyDeadCount, count}, {keyDeadBytes, size}, {keyDeadDropped, dropped}} {
		if err := putMetaUint(meta, kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// countDeadLetters fills in the dead-letter accounting of a file written
// before it was kept.
func countDeadLetters(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keyDeadCount) != nil {
		return nil
	}
	var count, size uint64
	_ = tx.Bucket(bucketDead).ForEach(func(_, v []byte) error {
		count++
		size += uint64(deadCost(v))
		return nil
	})
	if err := putMetaUint(meta, keyDeadCount, count); err != nil {
		return err
	}
	return putMetaUint(meta, keyDeadBytes, size)
}

func metaUint(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func putMetaUint(b *bolt.Bucket, k []byte, n uint64) error { return b.Put(k, seqKey(n)) }

// DeadLetterStats returns the dead-letter accounting.
func (s *Store) DeadLetterStats() (store.DeadLetterStats, error) {
	var st store.DeadLetterStats
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st = store.DeadLetterStats{Count: metaUint(meta, keyDeadCount), Bytes: metaUint(meta, keyDeadBytes), Dropped: metaUint(meta, keyDeadDropped)}
		return nil
	})
	return st, err
}

// refuseSeqJumps returns the batch's readings without those whose seq is
// more than store.MaxSeqJump above their host's watermark, and dead letters for
// those, whose indexes it records in res.Refused. The batch itself is not
// changed: a failed commit is retried with it.
func refuseSeqJumps(b *store.Batch, host func(string) (*hostRecord, error), now time.Time, res *store.CommitResult) ([]schema.Reading, []store.DeadLetter, error) {
	if b.Imported {
		return b.Readings, nil, nil
	}
	var dead []store.DeadLetter
	for i := range b.Readings {
		r := &b.Readings[i]
		if r.Seq == 0 {
			continue
		}
		h, err := host(r.Host)
		if err != nil {
			return nil, nil, err
		}
		if !h.TooFarAhead(r.Seq) {
			continue
		}
		res.Refused = append(res.Refused, i)
		dead = append(dead, store.DeadLetter{Received: now.UTC(), Topic: b.Topics.Reading(r.Host, r.Sensor),
			Reason:  fmt.Sprintf("%s: seq %d is more than %d above the host's watermark %d", store.ReasonSeqOutOfRange, r.Seq, store.MaxSeqJump, h.Watermark),
			Payload: r.AppendJSON(nil, schema.WithIdentity)})
	}
	return store.WithoutRefused(b.Readings, res.Refused), dead, nil
}

// storeReadings inserts the batch's readings, series by series, counting
// what is new and what was already stored, and updating each host's
// per-sensor statistics.
func storeReadings(readings *bolt.Bucket, batch []schema.Reading, host func(string) (*hostRecord, error), res *store.CommitResult) error {
	type series struct{ sensor, host string }
	groups := map[series][]schema.Reading{}
	var order []series
	for _, r := range batch {
		k := series{r.Sensor, r.Host}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		rs := groups[k]
		chunk.SortByTime(rs)
		sb, err := readings.CreateBucketIfNotExists([]byte(k.sensor))
		if err != nil {
			return fmt.Errorf("sensor bucket %s: %w", k.sensor, err)
		}
		hb, err := sb.CreateBucketIfNotExists([]byte(k.host))
		if err != nil {
			return fmt.Errorf("host bucket %s/%s: %w", k.sensor, k.host, err)
		}
		hb.FillPercent = 0.9 // chunks are appended in time order: pack pages fuller
		inserted, err := insertSeries(hb, k.host, k.sensor, rs)
		if err != nil {
			return err
		}
		h, err := host(k.host)
		if err != nil {
			return err
		}
		for i, ins := range inserted {
			if !ins {
				res.Duplicates++
				continue
			}
			res.Stored++
			r := &rs[i]
			st := h.Sensors[r.Sensor]
			if st == nil {
				st = &store.SensorStats{}
				h.Sensors[r.Sensor] = st
			}
			st.Count++
			if r.Time.After(st.Last) {
				st.Last = r.Time
			}
			if r.Time.After(h.LastSeen) {
				h.LastSeen = r.Time
			}
		}
	}
	return nil
}

// pending is a host's pending seqs (store.Pending): the keys of its bucket
// under the pending bucket, made when the first seq is added.
type pending struct {
	parent *bolt.Bucket
	name   []byte
}

func (p *pending) Min() (uint64, bool, error) {
	b := p.parent.Bucket(p.name)
	if b == nil {
		return 0, false, nil
	}
	k, _ := b.Cursor().First()
	if k == nil {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(k), true, nil
}

func (p *pending) DeleteMin() error {
	b := p.parent.Bucket(p.name)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	if k, _ := c.First(); k == nil {
		return nil
	}
	return c.Delete()
}

func (p *pending) Add(seq uint64) error {
	b, err := p.parent.CreateBucketIfNotExists(p.name)
	if err != nil {
		return err
	}
	return b.Put(seqKey(seq), nil)
}
