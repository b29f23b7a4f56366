package boltdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"time"

	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// The head is where a live fleet's readings go first. A commit that gives
// each of ten thousand series one reading must not decode, merge and
// re-compress ten thousand chunks: it appends each reading as a row to
// its series' head in memory (a few bytes, whatever the series holds)
// and writes all of the commit's rows as one record of the write-ahead
// log, one sequential value in the same bbolt transaction as the
// watermarks, so what is acknowledged is as durable as before. A series'
// head is sealed into chunks — the old merge, now once per many readings —
// when it is full, when it has been open for its age, when a commit brings
// it many readings at once, and before a delete. Log records older than
// every open head are dropped; Open replays the rest.
//
// This is Prometheus TSDB's head block (an appendable open chunk per
// series, a WAL replayed at start) on one file: the log lives in the
// database, so a backup or a compacted copy carries it and one
// transaction still makes everything durable at once.
//
// Invariant: every reading in a series' head is later than every reading
// of that series in its chunks. Readings that would break it (late
// ones, a spool replayed after a week) go to the chunks directly, as
// before; queries read chunks, then head.

// seriesKey names a series.
type seriesKey struct{ sensor, host string }

// headSeries is the unsealed part of one series: readings in time order,
// unique, as rows (chunk.AppendRow).
type headSeries struct {
	rows        []byte
	n           int
	first, last int64          // ms of the first and last rows
	end         chunk.RowState // after the last row: what the next is written against
	firstRec    uint64         // the log record that holds the oldest row
	started     time.Time      // when the oldest row was committed
}

// readings decodes the head's rows.
func (h *headSeries) readings(k seriesKey) ([]schema.Reading, error) {
	rs, _, err := chunk.ReadRows(k.host, k.sensor, h.rows, h.n)
	return rs, err
}

// Sealing policy. A head of 60 rows (10 minutes at 10 s) costs about 6
// bytes a reading in memory; a chunk then takes its rows in one merge.
const (
	// defaultHeadAge is how long a series' head stays open at least; each
	// series adds up to as much again (by a hash of its name), so that a
	// fleet that started on one tick does not seal on one tick.
	defaultHeadAge = 5 * time.Minute
	// directSeal is how many new readings of one series in one commit go
	// straight to its chunks (an import, a spool catching up).
	directSeal = 64
	// sealsPerCommit bounds the age seals one commit does, so that sealing
	// never holds up acknowledgements for long.
	sealsPerCommit = 1024
	// sweepEvery is how often commits look for heads to seal by age.
	sweepEvery = time.Second
)

// head is the store's in-memory head and its log position.
type head struct {
	series  map[seriesKey]*headSeries
	hosts   map[string]*hostRecord // decoded host records, as committed (hostcache.go)
	nextRec uint64                 // the record number the next commit takes
	age     time.Duration
	seed    maphash.Seed
	swept   time.Time
	// sealedLast holds, for series whose head was sealed, the time (ms)
	// of the last reading sealed: a later one starts a new head without
	// touching the file but for the head's log (deferrable).
	sealedLast map[seriesKey]int64
}

func newHead(age time.Duration) *head {
	if age <= 0 {
		age = defaultHeadAge
	}
	return &head{series: map[seriesKey]*headSeries{}, hosts: map[string]*hostRecord{}, age: age, seed: maphash.MakeSeed(),
		sealedLast: map[seriesKey]int64{}}
}

// maxAge is how long series k's head stays open.
func (h *head) maxAge(k seriesKey) time.Duration {
	var mh maphash.Hash
	mh.SetSeed(h.seed)
	mh.WriteString(k.sensor)
	mh.WriteString(k.host)
	return h.age + time.Duration(mh.Sum64()%uint64(h.age))
}

// headTx is one write transaction's view of the head: the changes it makes,
// published only when the bbolt transaction commits.
type headTx struct {
	h       *head
	tx      *bolt.Tx
	rec     uint64
	now     time.Time
	changed map[seriesKey]*headSeries // nil: sealed (empty)
	hosts   map[string]*hostRecord    // host records read or written; nil: deleted
	log     []byte                    // this commit's log record
	logged  bool
	// deferred marks a commit made durable by the write-ahead file
	// (wal.go): it leaves the age sweep, which writes chunks readers must
	// see, to the checkpoint.
	deferred bool
	// sealAll makes the sweep seal every head, whatever its age: a
	// checkpoint of a small store, whose write-ahead log records would
	// otherwise be written to the file for the heads left open.
	sealAll bool
	// hostBytes holds the host records this transaction wrote, encoded,
	// for the overlay readers see before a checkpoint.
	hostBytes map[string][]byte
	// quarantine sets aside an undecodable chunk met while sealing.
	quarantine func(sensor, host string) func(key, value []byte, err error) error
}

func (s *Store) beginHead(tx *bolt.Tx, now time.Time) *headTx {
	ht := &headTx{h: s.head, tx: tx, rec: s.head.nextRec, now: now, changed: map[seriesKey]*headSeries{},
		hosts: map[string]*hostRecord{}}
	ht.log = binary.AppendVarint(nil, now.UnixMilli())
	return ht
}

// get returns series k's head as this transaction sees it, nil for none.
// The result must not be changed: it may be the published one.
func (ht *headTx) get(k seriesKey) *headSeries {
	if h, ok := ht.changed[k]; ok {
		return h
	}
	return ht.h.series[k]
}

// withRows returns head cur (nil for none) with rs (sorted by time)
// added, and per reading whether it was new; rec and now are the commit's.
// cur is not changed: appended rows go after its own in the same array,
// which readers of cur do not read past.
func withRows(cur *headSeries, k seriesKey, rs []schema.Reading, rec uint64, now time.Time) (headSeries, []bool, error) {
	inserted := make([]bool, len(rs))
	if cur != nil && rs[0].Time.UnixMilli() <= cur.last {
		// Out of order within the head: rebuild it (rare).
		old, err := cur.readings(k)
		if err != nil {
			return headSeries{}, nil, fmt.Errorf("head of %s/%s: %w", k.sensor, k.host, err)
		}
		merged, ins := chunk.Merge(old, rs)
		copy(inserted, ins)
		next := headSeries{firstRec: cur.firstRec, started: cur.started, n: len(merged),
			first: merged[0].Time.UnixMilli(), last: merged[len(merged)-1].Time.UnixMilli()}
		for i := range merged {
			next.rows = chunk.AppendRow(next.rows, &next.end, &merged[i])
		}
		return next, inserted, nil
	}
	var next headSeries
	if cur != nil {
		next = *cur
	}
	for i := range rs {
		t := rs[i].Time.UnixMilli()
		if next.n > 0 && t <= next.last {
			continue // a duplicate within the batch: the first wins
		}
		if next.n == 0 {
			next.first, next.firstRec, next.started = t, rec, now
		}
		next.rows = chunk.AppendRow(next.rows, &next.end, &rs[i])
		next.n++
		next.last = t
		inserted[i] = true
	}
	return next, inserted, nil
}

// add puts new readings of series k (sorted by time, none before the
// head's first) into its head and reports, per reading, whether it was new.
// Many at once, or a full head, seal the series instead.
func (ht *headTx) add(k seriesKey, rs []schema.Reading) ([]bool, error) {
	next, inserted, err := withRows(ht.get(k), k, rs, ht.rec, ht.now)
	if err != nil {
		return nil, err
	}
	added := 0
	for _, ins := range inserted {
		if ins {
			added++
		}
	}
	if added == 0 {
		return inserted, nil
	}
	if next.n >= chunk.MaxReadings || added >= directSeal {
		return inserted, ht.seal(k, &next)
	}
	ht.changed[k] = &next
	// The log gets this commit's new rows of the series, as a run of
	// their own.
	ht.log = appendLogString(ht.log, k.sensor)
	ht.log = appendLogString(ht.log, k.host)
	ht.log = binary.AppendUvarint(ht.log, uint64(added))
	var st chunk.RowState
	for i := range rs {
		if inserted[i] {
			ht.log = chunk.AppendRow(ht.log, &st, &rs[i])
		}
	}
	ht.logged = true
	return inserted, nil
}

func appendLogString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// seal writes head h of series k into its chunks and empties it.
func (ht *headTx) seal(k seriesKey, h *headSeries) error {
	rs, err := h.readings(k)
	if err != nil {
		return fmt.Errorf("head of %s/%s: %w", k.sensor, k.host, err)
	}
	hb, err := seriesBucket(ht.tx, k)
	if err != nil {
		return err
	}
	sums, err := summaryBucket(ht.tx, k.sensor, k.host)
	if err != nil {
		return err
	}
	// A head's readings are all later than its series' chunks (later
	// ones are routed to the head, earlier ones to the chunks). A head of
	// half a chunk or more becomes chunks of its own; a smaller one (sealed
	// by age) is merged into the last chunk, which decodes and re-encodes
	// it, so that slow series do not end in many small chunks.
	if h.n >= chunk.MaxReadings/2 && hb.Get(timeKey(rs[0].Time)) == nil {
		err = putChunks(hb, sums, k.sensor, rs)
	} else {
		_, err = insertSeries(hb, sums, k.host, k.sensor, rs, ht.quarantine(k.sensor, k.host))
	}
	if err != nil {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], ht.rec)
	if err := ht.tx.Bucket(bucketHeadMeta).Put(headMetaKey(k), v[:]); err != nil {
		return err
	}
	ht.changed[k] = nil
	return nil
}

// sealBatch bounds the heads SealAll seals in one transaction.
const sealBatch = 4096

// SealAll seals every head into chunks and drops the log records, so the
// file holds only compact chunks (store.Sealer): the end of a bulk import,
// which would otherwise leave its last readings in heads and log until
// their age.
func (s *Store) SealAll() error {
	for {
		more := false
		err := s.update(func(tx *bolt.Tx, ht *headTx) error {
			ht.quarantine = quarantineTo(tx, nil)
			n := 0
			for k, hs := range ht.h.series {
				if n == sealBatch {
					more = true
					break
				}
				if err := ht.seal(k, hs); err != nil {
					return err
				}
				n++
			}
			ht.h.swept = time.Time{} // sweep in finish: drop the log records no head needs
			return nil
		})
		if err != nil {
			return fmt.Errorf("seal heads: %w", err)
		}
		if !more {
			return nil
		}
	}
}

// sealSeries seals series k's head, if it has one (before a delete).
func (ht *headTx) sealSeries(k seriesKey) error {
	if h := ht.get(k); h != nil {
		return ht.seal(k, h)
	}
	return nil
}

func headMetaKey(k seriesKey) []byte {
	b := make([]byte, 0, len(k.sensor)+1+len(k.host))
	return append(append(append(b, k.sensor...), 0), k.host...)
}

// seriesBucket returns series k's bucket of chunks, made if need be.
func seriesBucket(tx *bolt.Tx, k seriesKey) (*bolt.Bucket, error) {
	sb, err := tx.Bucket(bucketReadings).CreateBucketIfNotExists([]byte(k.sensor))
	if err != nil {
		return nil, fmt.Errorf("sensor bucket %s: %w", k.sensor, err)
	}
	hb, err := sb.CreateBucketIfNotExists([]byte(k.host))
	if err != nil {
		return nil, fmt.Errorf("host bucket %s/%s: %w", k.sensor, k.host, err)
	}
	hb.FillPercent = 0.9 // chunks are appended in time order: pack pages fuller
	return hb, nil
}

// finish seals what has been open too long, drops log records no head
// needs any more, and writes this commit's record. It runs last in the
// write transaction.
func (ht *headTx) finish() error {
	h := ht.h
	meta := ht.tx.Bucket(bucketMeta)
	if !ht.deferred && (ht.now.Sub(h.swept) >= min(sweepEvery, h.age) || ht.now.Before(h.swept)) {
		h.swept = ht.now
		sealed := 0
		oldest := ht.rec + 1
		consider := func(k seriesKey, hs *headSeries) error {
			if hs == nil {
				return nil
			}
			if sealed < sealsPerCommit && (ht.sealAll || ht.now.Sub(hs.started) >= h.maxAge(k)) {
				sealed++
				return ht.seal(k, hs)
			}
			oldest = min(oldest, hs.firstRec)
			return nil
		}
		for k, hs := range h.series {
			if _, ok := ht.changed[k]; !ok {
				if err := consider(k, hs); err != nil {
					return err
				}
			}
		}
		for k, hs := range ht.changed {
			if err := consider(k, hs); err != nil {
				return err
			}
		}
		log := ht.tx.Bucket(bucketLog)
		c := log.Cursor()
		// First again after each delete: bbolt's Next after a Delete
		// skips a key, which left every other record behind.
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < oldest; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	if ht.logged {
		if err := ht.tx.Bucket(bucketLog).Put(seqKey(ht.rec), ht.log); err != nil {
			return err
		}
	}
	return putMetaUint(meta, keyLogNext, ht.rec+1)
}

// publish makes the transaction's head changes the store's, once bbolt has
// committed it. The caller holds the store's head lock.
func (ht *headTx) publish() {
	h := ht.h
	for k, hs := range ht.changed {
		if hs == nil {
			if old := h.series[k]; old != nil {
				h.sealedLast[k] = old.last
			}
			delete(h.series, k)
			continue
		}
		h.series[k] = hs
	}
	h.nextRec = ht.rec + 1
	ht.publishHosts()
}

// errLog wraps a log record that does not read.
var errLog = errors.New("write-ahead log record does not read")

// replay rebuilds the head from the log at open.
func (s *Store) replay(tx *bolt.Tx) error {
	h := s.head
	h.nextRec = max(metaUint(tx.Bucket(bucketMeta), keyLogNext), 1) // 0: never sealed
	hm := tx.Bucket(bucketHeadMeta)
	// One entry per series, found by sensor then host from the record's
	// bytes (no key is built for a series seen before): a log holds a row
	// or a few per series per record, so this lookup is most of a replay.
	type replayed struct {
		k      seriesKey
		sealed uint64 // the record the series was last sealed at
		hs     *headSeries
	}
	index := map[string]map[string]*replayed{}
	series := func(sensor, host []byte) *replayed {
		hosts := index[string(sensor)]
		if hosts == nil {
			hosts = map[string]*replayed{}
			index[string(sensor)] = hosts
		}
		e := hosts[string(host)]
		if e == nil {
			e = &replayed{k: seriesKey{sensor: string(sensor), host: string(host)}}
			if v := hm.Get(headMetaKey(e.k)); len(v) == 8 {
				e.sealed = binary.BigEndian.Uint64(v)
			}
			hosts[e.k.host] = e
		}
		return e
	}
	var scratch []byte
	err := tx.Bucket(bucketLog).ForEach(func(key, v []byte) error {
		rec := binary.BigEndian.Uint64(key)
		h.nextRec = max(h.nextRec, rec+1)
		rd := &logReader{b: v}
		ms := rd.varint()
		for rd.err == nil && len(rd.b) > 0 {
			sensor := rd.bytes()
			e := series(sensor, rd.bytes())
			n := int(rd.uvarint())
			if rd.err != nil || n > len(rd.b) {
				break
			}
			if rec <= e.sealed { // in its chunks already: skip the rows
				var err error
				var st chunk.RowState
				if scratch, rd.b, _, _, _, err = chunk.AppendRun(scratch[:0], &st, rd.b, n); err != nil {
					return fmt.Errorf("%w: record %d: %v", errLog, rec, err)
				}
				continue
			}
			// The rows go after the head's as they are, transcoded; only
			// rows that are not later than the head's (rare) are decoded
			// and merged.
			if e.hs == nil {
				e.hs = &headSeries{}
			}
			cur := e.hs
			was := *cur
			rows, rest, first, last, increasing, err := chunk.AppendRun(cur.rows, &cur.end, rd.b, n)
			if err != nil {
				return fmt.Errorf("%w: record %d: %v", errLog, rec, err)
			}
			if increasing && (was.n == 0 || first > was.last) {
				if was.n == 0 {
					cur.first, cur.firstRec, cur.started = first, rec, time.UnixMilli(ms)
				}
				cur.rows, cur.n, cur.last = rows, was.n+n, last
				rd.b = rest
				continue
			}
			*cur = was
			rs, rest, err := chunk.ReadRows(e.k.host, e.k.sensor, rd.b, n)
			if err != nil {
				return fmt.Errorf("%w: record %d: %v", errLog, rec, err)
			}
			rd.b = rest
			chunk.SortByTime(rs)
			var prev *headSeries
			if was.n > 0 {
				prev = &was
			}
			next, _, err := withRows(prev, e.k, rs, rec, time.UnixMilli(ms))
			if err != nil {
				return err
			}
			*cur = next
		}
		if rd.err != nil {
			return fmt.Errorf("%w: record %d", errLog, rec)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, hosts := range index {
		for _, e := range hosts {
			if e.hs != nil && e.hs.n > 0 {
				h.series[e.k] = e.hs
			}
		}
	}
	return nil
}

type logReader struct {
	b   []byte
	err error
}

func (r *logReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errLog
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *logReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errLog
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns a length-prefixed field, valid as long as the record is.
func (r *logReader) bytes() []byte {
	n := r.uvarint()
	if uint64(len(r.b)) < n {
		r.err = errLog
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}
