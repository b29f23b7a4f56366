package boltdb

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// Commit writes a batch in one transaction: readings not already stored
// under (host, sensor, ts) are inserted, duplicates are counted and left as
// they are; status updates and dead letters are recorded; each host's seq
// watermark advances over the contiguous run of committed seqs. Either all
// of it is durable when Commit returns nil, or none of it is.
//
// With deferred commits on (Options.CheckpointEvery), a batch that only
// appends readings to open heads is made durable by the write-ahead file
// instead of a bbolt commit (wal.go).
func (s *Store) Commit(b *store.Batch) (store.CommitResult, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.wal != nil && s.deferrable(b) {
		return s.commitDeferred(b)
	}
	if err := s.checkpointLocked(); err != nil {
		return store.CommitResult{}, err
	}
	res := store.CommitResult{}
	err := s.updateLocked(func(tx *bolt.Tx, ht *headTx) error {
		return commit(tx, ht, b, s.limits, &res)
	})
	if err != nil {
		return store.CommitResult{}, err
	}
	return res, nil
}

// update runs fn in a write transaction with the head's view of it, and
// commits both: bbolt first, then the head changes, under the head lock
// so that no reader sees one without the other. Deferred commits are
// checkpointed first.
func (s *Store) update(fn func(*bolt.Tx, *headTx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.checkpointLocked(); err != nil {
		return err
	}
	return s.updateLocked(fn)
}

func (s *Store) updateLocked(fn func(*bolt.Tx, *headTx) error) error {
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	ht := s.beginHead(tx, s.now())
	if err := fn(tx, ht); err != nil {
		_ = tx.Rollback()
		ht.abortHosts()
		return err
	}
	if err := ht.finish(); err != nil {
		_ = tx.Rollback()
		ht.abortHosts()
		return err
	}
	s.headMu.Lock()
	defer s.headMu.Unlock()
	if err := tx.Commit(); err != nil {
		ht.abortHosts()
		return err
	}
	s.countSync()
	ht.publish()
	return nil
}

// countSync counts a commit's fsync, when commits sync.
func (s *Store) countSync() {
	if !s.noSync {
		s.syncs.Add(1)
	}
}

// deferrable tells whether every change b makes can wait for a
// checkpoint: statuses (readers see host records through the overlay)
// and readings each later than the start of its series' open head, few
// enough that the head is not sealed. Anything else — a dead letter, an
// import, a new or late series — changes what readers read in the file,
// and is committed at once.
func (s *Store) deferrable(b *store.Batch) bool {
	if len(b.DeadLetters) > 0 || b.Imported || b.Len() == 0 {
		return false
	}
	s.headMu.RLock()
	defer s.headMu.RUnlock()
	count := map[seriesKey]int{}
	for i := range b.Readings {
		r := &b.Readings[i]
		k := seriesKey{r.Sensor, r.Host}
		n, first := 0, int64(0)
		if hs := s.head.series[k]; hs != nil {
			n, first = hs.n, hs.first
		} else if last, ok := s.head.sealedLast[k]; ok {
			first = last + 1 // a new head, after what was sealed
		} else {
			return false // a new series, or one not seen since open
		}
		if r.Time.UnixMilli() < first {
			return false
		}
		count[k]++
		if count[k] >= directSeal || n+count[k] >= chunk.MaxReadings {
			return false
		}
	}
	return true
}

// pendingMaxBytes bounds the head log records the deferred transaction
// holds in memory: past it, a checkpoint. A home fleet's hour is about
// 4.5 MB of them; a fleet of a thousand devices reaches it in four ticks,
// which also keeps its heads sealed by age (a checkpoint's sweep) in time.
const pendingMaxBytes = 4 << 20

// commitDeferred applies b to the open deferred transaction (beginning
// one if need be) and makes it durable with a write-ahead record, or, when
// a checkpoint is due, by committing the transaction.
func (s *Store) commitDeferred(b *store.Batch) (store.CommitResult, error) {
	now := s.now()
	if s.pending == nil {
		tx, err := s.db.Begin(true)
		if err != nil {
			return store.CommitResult{}, err
		}
		s.pending, s.pendingSince, s.pendingBytes = tx, now, 0
	}
	tx := s.pending
	ht := s.beginHead(tx, now)
	ht.hostBytes = map[string][]byte{}
	res := store.CommitResult{}
	if err := commit(tx, ht, b, s.limits, &res); err != nil {
		return store.CommitResult{}, s.abandon(err)
	}
	// Refused readings and statuses became dead letters, which readers
	// read in the file: checkpoint now.
	s.pendingBytes += len(ht.log)
	checkpoint := len(res.Refused) > 0 || res.RefusedStatuses > 0 || now.Sub(s.pendingSince) >= s.checkpointEvery || now.Before(s.pendingSince) ||
		s.wal.off >= walMaxBytes || s.pendingBytes >= pendingMaxBytes
	ht.deferred = !checkpoint
	ht.sealAll = checkpoint && s.sealAllAtCheckpoint()
	if err := ht.finish(); err != nil {
		return store.CommitResult{}, s.abandon(err)
	}
	if checkpoint {
		if err := s.commitPending(ht); err != nil {
			return store.CommitResult{}, err
		}
		return res, nil
	}
	body, err := encodeWALRecord(s.walGen, now, b)
	if err == nil {
		err = s.wal.append(body)
	}
	if err != nil {
		return store.CommitResult{}, s.abandon(err)
	}
	s.walRecords.Add(1)
	s.countSync()
	overlay := make(map[string]hostOverlay, len(ht.hostBytes))
	pendingB := tx.Bucket(bucketPending)
	for name, v := range ht.hostBytes {
		o := hostOverlay{record: v}
		if pb := pendingB.Bucket([]byte(name)); pb != nil {
			// Counted with a cursor: Stats reads committed pages only.
			c := pb.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				o.pendingSeqs++
			}
		}
		overlay[name] = o
	}
	s.headMu.Lock()
	ht.publish()
	if s.overlay == nil {
		s.overlay = map[string]hostOverlay{}
	}
	for name, o := range overlay {
		s.overlay[name] = o
	}
	s.headMu.Unlock()
	return res, nil
}

// checkpointLocked commits the deferred transaction, if one is open, with
// the head's age sweep.
func (s *Store) checkpointLocked() error {
	if s.pending == nil {
		return nil
	}
	ht := s.beginHead(s.pending, s.now())
	ht.quarantine = quarantineTo(s.pending, nil)
	ht.sealAll = s.sealAllAtCheckpoint()
	if err := ht.finish(); err != nil {
		return s.abandon(err)
	}
	return s.commitPending(ht)
}

// sealAllAtCheckpoint tells whether a checkpoint seals every head. With
// heads left open, the log records of every deferred commit since the
// oldest of them go to the file: measured for a home fleet (130 series),
// a checkpoint after 10 minutes wrote 900 KB that way, 287 KB sealing
// all. A fleet's heads are many more than one commit may seal
// (sealsPerCommit): sealed by age, as always.
func (s *Store) sealAllAtCheckpoint() bool {
	s.headMu.RLock()
	defer s.headMu.RUnlock()
	return len(s.head.series) <= sealsPerCommit
}

// commitPending commits the deferred transaction with ht's changes, marks
// the write-ahead generation applied in it, and empties the file.
func (s *Store) commitPending(ht *headTx) error {
	tx := s.pending
	if err := putMetaUint(tx.Bucket(bucketMeta), keyWALApplied, s.walGen); err != nil {
		return s.abandon(err)
	}
	s.headMu.Lock()
	err := tx.Commit()
	if err == nil {
		ht.publish()
		s.overlay = nil
	}
	s.headMu.Unlock()
	s.pending = nil
	if err != nil {
		// bbolt rolled the transaction back: what the earlier deferred
		// commits wrote is in the write-ahead file only.
		return s.reload(fmt.Errorf("checkpoint: %w", err))
	}
	s.walGen++
	s.checkpoints.Add(1)
	s.countSync()
	return s.wal.reset()
}

// abandon rolls the deferred transaction back after err and rebuilds the
// head and host records from the file and the write-ahead records, which
// hold every deferred commit that returned. It returns err (wrapped with
// a failure to rebuild, if any).
func (s *Store) abandon(err error) error {
	if s.pending != nil {
		_ = s.pending.Rollback()
		s.pending = nil
	}
	return s.reload(err)
}

// reload rebuilds the in-memory head and host records from the file, then
// applies the write-ahead records, as Open does.
func (s *Store) reload(cause error) error {
	h := newHead(s.head.age)
	err := s.db.View(func(tx *bolt.Tx) error { return (&Store{head: h}).replay(tx) })
	if err == nil {
		s.headMu.Lock()
		s.head, s.overlay = h, nil
		s.headMu.Unlock()
		err = s.recoverWAL()
	}
	if err != nil {
		return fmt.Errorf("%w (and rebuilding the head failed: %v)", cause, err)
	}
	return cause
}

// recoverWAL applies the write-ahead records not yet checkpointed, in one
// transaction, and empties the file. The caller holds writeMu (or is
// Open).
func (s *Store) recoverWAL() error {
	var applied uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		applied = metaUint(tx.Bucket(bucketMeta), keyWALApplied)
		return nil
	}); err != nil {
		return err
	}
	recs, err := readWAL(walPath(s.path), applied)
	if err != nil {
		return err
	}
	s.walGen = applied + 1
	if len(recs) > 0 {
		last := recs[len(recs)-1].gen
		err = s.updateLocked(func(tx *bolt.Tx, ht *headTx) error {
			for _, rec := range recs {
				ht.now = rec.now
				b := &store.Batch{Readings: rec.readings, Statuses: rec.statuses, Aggregator: rec.aggregator}
				if err := commit(tx, ht, b, s.limits, &store.CommitResult{}); err != nil {
					return err
				}
			}
			return putMetaUint(tx.Bucket(bucketMeta), keyWALApplied, last)
		})
		if err != nil {
			return fmt.Errorf("apply write-ahead file: %w", err)
		}
		s.walGen = last + 1
	}
	if s.wal != nil {
		s.wal.off = 1 // force the truncate
		return s.wal.reset()
	}
	if err := os.Remove(walPath(s.path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove write-ahead file: %w", err)
	}
	return nil
}

func commit(tx *bolt.Tx, ht *headTx, b *store.Batch, limits store.Limits, res *store.CommitResult) error {
	now := ht.now
	hostsB := tx.Bucket(bucketHosts)
	pendingB := tx.Bucket(bucketPending)
	host := func(name string) (*hostRecord, error) { return ht.host(hostsB, name) }
	// Statuses first: a new spool restarts its host's seqs before this
	// batch's readings (sent after the status) are counted.
	fx, err := store.ApplyStatuses(b, now, host, func(name string) error {
		if pendingB.Bucket([]byte(name)) != nil {
			return pendingB.DeleteBucket([]byte(name))
		}
		return nil
	}, res)
	if err != nil {
		return err
	}
	kept, dead, err := store.RefuseSeqJumps(b, fx, host, now, res)
	if err != nil {
		return err
	}
	if err := store.NoteAggregator(b, host); err != nil {
		return err
	}
	ht.quarantine = quarantineTo(tx, res)
	if err := storeReadings(tx, ht, kept, host, res); err != nil {
		return err
	}
	err = store.AdvanceWatermarks(kept, b.Imported, fx, host, func(name string) store.Pending {
		return &pending{parent: pendingB, name: []byte(name)}
	}, res)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(ht.hosts))
	for name := range ht.hosts {
		names = append(names, name)
	}
	sort.Strings(names) // bbolt puts in key order touch fewer pages
	for _, name := range names {
		if err := ht.putHost(hostsB, name, ht.hosts[name]); err != nil {
			return err
		}
	}
	return putDeadLetters(tx, limits, b.DeadLetters, fx.Dead, dead)
}

// storeReadings inserts the batch's readings, series by series, counting
// what is new and what was already stored, and updating each host's
// per-sensor statistics. Readings later than all of their series go to
// its head; the others (late ones) into its chunks.
func storeReadings(tx *bolt.Tx, ht *headTx, batch []schema.Reading, host store.HostLookup, res *store.CommitResult) error {
	groups := map[seriesKey][]schema.Reading{}
	var order []seriesKey
	for _, r := range batch {
		k := seriesKey{r.Sensor, r.Host}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		rs := groups[k]
		chunk.SortByTime(rs)
		h, err := host(k.host)
		if err != nil {
			return err
		}
		split, err := headFrom(tx, ht, k, h, rs)
		if err != nil {
			return err
		}
		inserted := make([]bool, len(rs))
		if split > 0 {
			hb, err := seriesBucket(tx, k)
			if err != nil {
				return err
			}
			sums, err := summaryBucket(tx, k.sensor, k.host)
			if err != nil {
				return err
			}
			ins, err := insertSeries(hb, sums, k.host, k.sensor, rs[:split], ht.quarantine(k.sensor, k.host))
			if err != nil {
				return err
			}
			copy(inserted, ins)
		}
		if split < len(rs) {
			if ht.get(k) == nil {
				// Queries find series by their buckets: a head's series
				// has one before its first chunk.
				if _, err := seriesBucket(tx, k); err != nil {
					return err
				}
			}
			ins, err := ht.add(k, rs[split:])
			if err != nil {
				return err
			}
			copy(inserted[split:], ins)
		}
		for i, ins := range inserted {
			if !ins {
				res.Duplicates++
				continue
			}
			res.Stored++
			h.CountStored(&rs[i])
		}
	}
	return nil
}

// headFrom returns where, in the sorted readings rs of series k, those
// that go to its head begin: those at or after the head's first reading,
// or, with no head, after the last reading the series has (its host's
// statistics say when; a file from before the statistics, its last
// chunk). The ones before go into its chunks.
func headFrom(tx *bolt.Tx, ht *headTx, k seriesKey, h *hostRecord, rs []schema.Reading) (int, error) {
	var bound int64 // readings after it go to the head
	if hs := ht.get(k); hs != nil {
		bound = hs.first - 1
	} else if st := h.Sensors[k.sensor]; st != nil && !st.Last.IsZero() {
		bound = st.Last.UnixMilli()
	} else {
		last, ok, err := lastChunkTime(tx, k)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, nil // nothing stored: all of it
		}
		bound = last
	}
	return sort.Search(len(rs), func(i int) bool { return rs[i].Time.UnixMilli() > bound }), nil
}

// lastChunkTime returns the time of the last reading in series k's chunks.
func lastChunkTime(tx *bolt.Tx, k seriesKey) (int64, bool, error) {
	sb := tx.Bucket(bucketReadings).Bucket([]byte(k.sensor))
	if sb == nil {
		return 0, false, nil
	}
	hb := sb.Bucket([]byte(k.host))
	if hb == nil {
		return 0, false, nil
	}
	key, v := hb.Cursor().Last()
	if key == nil {
		return 0, false, nil
	}
	rs, err := chunk.Decode(k.host, k.sensor, v)
	if err != nil || len(rs) == 0 {
		// Unreadable: all to the chunks, whose merge quarantines it.
		return math.MaxInt64, true, nil
	}
	return rs[len(rs)-1].Time.UnixMilli(), true, nil
}

// quarantineTo returns what sets aside a chunk that does not decode, met
// while writing series (sensor, host): its bytes go to the quarantine
// bucket as they were, and res (when not nil) says so.
func quarantineTo(tx *bolt.Tx, res *store.CommitResult) func(sensor, host string) func(key, value []byte, err error) error {
	return func(sensor, host string) func(key, value []byte, err error) error {
		return func(key, value []byte, cerr error) error {
			qb, err := tx.CreateBucketIfNotExists(bucketQuarantine)
			if err == nil {
				qb, err = qb.CreateBucketIfNotExists([]byte(sensor))
			}
			if err == nil {
				qb, err = qb.CreateBucketIfNotExists([]byte(host))
			}
			if err != nil {
				return err
			}
			if res != nil {
				res.Quarantined = append(res.Quarantined, fmt.Sprintf("chunk %s/%s at %s: %v", sensor, host, schema.FormatTime(keyTime(key)), cerr))
			}
			return qb.Put(key, value)
		}
	}
}
