// Package pgstore is the PostgreSQL storage engine: the storage contract
// (package store) on a PostgreSQL database, for fleets that outgrow one
// machine's file — several aggregators writing at once, replication, SQL
// for the analyst next door. It passes the same conformance suite as the
// embedded engine (storetest).
//
// Layout (schema version 3, migrations applied on open):
//
//	apd_meta(key, value)                 the schema version
//	apd_series(id, sensor, host)         one row per series
//	apd_readings(series_id, ts, seq, payload)
//	                                     the days being written: one row
//	                                     per reading, partitioned by day of
//	                                     ts (ms since the epoch):
//	                                     apd_readings_pYYYYMMDD, made as
//	                                     readings of that day arrive
//	apd_packed(series_id, hour, n, chunk, summary)
//	                                     finished days: one row per series
//	                                     and hour, its readings in the
//	                                     embedded engine's chunk encoding
//	                                     and their sums per 15 minutes,
//	                                     partitioned by day (packed.go)
//	apd_packing(day, done)               the days packed or being packed
//	apd_hosts(host, record)              store.HostRecord as JSON
//	apd_pending(host, seq)               seqs committed above a host's gap
//	apd_dead(id, record, cost), apd_dead_stats
//
// A commit is one transaction: the batch's host rows are locked in host
// order (so aggregators writing the same hosts wait for each other rather
// than deadlock), the readings are copied into a temporary staging table
// and inserted with ON CONFLICT DO NOTHING — or, for a packed day, merged
// into their hour's block — and the watermarks move by the shared commit
// rules (store.AdvanceWatermarks) in the same transaction: a reading and
// its acknowledgement commit together. Pack, run hourly by the server,
// moves each finished day from rows into blocks a few series per
// transaction; readings of days long over go straight into blocks.
//
// Claims (claims.go) divides numbered partitions of work among the
// aggregators on one database, with session advisory locks.
package pgstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configure a Store.
type Options struct {
	Limits store.Limits
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// PackAfter: readings of a day that ended longer ago than this and
	// has no rows go straight into blocks (an import of old readings
	// never makes rows to pack); 0 means store.DefaultPackAfter.
	PackAfter time.Duration
}

// Store is the PostgreSQL engine.
type Store struct {
	pool   *pgxpool.Pool
	limits store.Limits
	now    func() time.Time
	url    string
	// packBudget bounds the readings one packing transaction moves.
	packBudget int64
	packAfter  time.Duration

	mu         sync.Mutex
	series     map[seriesKey]int64 // ids of series known to exist
	partitions map[int64]bool      // days (ms of their start) with a partition
	packedDays map[int64]bool      // old days known packed or with rows
}

type seriesKey struct{ sensor, host string }

// IsURL reports whether a store location names a PostgreSQL database.
func IsURL(location string) bool {
	return strings.HasPrefix(location, "postgres://") || strings.HasPrefix(location, "postgresql://")
}

// Open connects to the database at url and brings its schema up to date.
func Open(url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// A scan holds its connection while its reader reads (an export to
		// a slow client): leave the commits room.
		cfg.MaxConns = max(cfg.MaxConns, 16)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(url), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", redact(url), err)
	}
	s := &Store{pool: pool, limits: opts.Limits.WithDefaults(), now: opts.Now, url: url, packBudget: defaultPackBudget, packAfter: cmp.Or(opts.PackAfter, store.DefaultPackAfter),
		series: map[seriesKey]int64{}, partitions: map[int64]bool{}, packedDays: map[int64]bool{}}
	if s.now == nil {
		s.now = time.Now
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// redact leaves a URL's password out of messages.
func redact(url string) string {
	if cfg, err := pgx.ParseConfig(url); err == nil && cfg.Password != "" {
		return strings.Replace(url, cfg.Password, "xxxxx", 1)
	}
	return url
}

// Path names the database, for the log.
func (s *Store) Path() string { return redact(s.url) }

// Close closes the connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Size is the database's size in bytes.
func (s *Store) Size() (int64, error) {
	var n int64
	err := s.pool.QueryRow(context.Background(), "SELECT pg_database_size(current_database())").Scan(&n)
	return n, err
}

const day = int64(24 * time.Hour / time.Millisecond)

// floorTo rounds ms down to a multiple of unit.
func floorTo(ms, unit int64) int64 {
	d := ms - ms%unit
	if ms < 0 && ms%unit != 0 {
		d -= unit
	}
	return d
}

func dayOf(ms int64) int64 { return floorTo(ms, day) }

// dayPartition names the partition of parent (apd_readings or
// apd_packed) for the day starting at dayMs.
func dayPartition(parent string, dayMs int64) string {
	return parent + "_p" + time.UnixMilli(dayMs).UTC().Format("20060102")
}

func partitionName(dayMs int64) string { return dayPartition("apd_readings", dayMs) }

// makePartitions makes the partitions of parent for the days.
func makePartitions(ctx context.Context, tx pgx.Tx, parent string, days []int64) error {
	for _, d := range days {
		// Several aggregators may make the same day at once: the lock
		// makes the second wait and find it made.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7405, 1)"); err != nil {
			return err
		}
		name := dayPartition(parent, d)
		sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM (%d) TO (%d)", name, parent, d, d+day)
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("partition %s: %w", name, err)
		}
	}
	return nil
}

// ensurePartitions makes the daily partitions of days not known to exist.
func (s *Store) ensurePartitions(ctx context.Context, tx pgx.Tx, days []int64) error {
	var missing []int64
	s.mu.Lock()
	for _, d := range days {
		if !s.partitions[d] {
			missing = append(missing, d)
		}
	}
	s.mu.Unlock()
	slices.Sort(missing)
	return makePartitions(ctx, tx, "apd_readings", missing)
}

// partitionDays lists the days that have a partition of parent
// (apd_readings or apd_packed).
func partitionDays(ctx context.Context, tx pgx.Tx, parent string) ([]int64, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass`, parent)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var days []int64
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		t, err := time.Parse("20060102", strings.TrimPrefix(name, parent+"_p"))
		if err != nil {
			continue // not one of ours
		}
		days = append(days, t.UnixMilli())
	}
	slices.Sort(days)
	return days, rows.Err()
}

// forgetPartitions empties the cache of partitions known to exist.
func (s *Store) forgetPartitions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.partitions)
	clear(s.packedDays)
}

// notePartitions records the partitions of days a committed transaction
// wrote rows to.
func (s *Store) notePartitions(days []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range days {
		s.partitions[d] = true
	}
}

// seriesIDs returns the ids of the series of rs, making those missing.
func (s *Store) seriesIDs(ctx context.Context, tx pgx.Tx, rs []schema.Reading) (map[seriesKey]int64, error) {
	ids := map[seriesKey]int64{}
	var sensors, hosts []string
	s.mu.Lock()
	for i := range rs {
		k := seriesKey{rs[i].Sensor, rs[i].Host}
		if _, ok := ids[k]; ok {
			continue
		}
		if id, ok := s.series[k]; ok {
			ids[k] = id
			continue
		}
		ids[k] = 0
		sensors, hosts = append(sensors, k.sensor), append(hosts, k.host)
	}
	s.mu.Unlock()
	if len(sensors) == 0 {
		return ids, nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO apd_series (sensor, host) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`, sensors, hosts); err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT id, s.sensor, s.host FROM apd_series s JOIN unnest($1::text[], $2::text[]) AS k(sensor, host) ON s.sensor = k.sensor AND s.host = k.host`, sensors, hosts)
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var k seriesKey
		if err := rows.Scan(&id, &k.sensor, &k.host); err != nil {
			return nil, err
		}
		ids[k] = id
	}
	return ids, rows.Err()
}

func (s *Store) noteSeries(ids map[seriesKey]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, id := range ids {
		if id != 0 {
			s.series[k] = id
		}
	}
}

// hostSet is the host records one transaction reads and writes.
type hostSet struct {
	recs    map[string]*store.HostRecord
	pending map[string]*memPending
}

func decodeRecord(b []byte) (*store.HostRecord, error) {
	h := &store.HostRecord{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, h); err != nil {
			return nil, err
		}
	}
	if h.Sensors == nil {
		h.Sensors = map[string]*store.SensorStats{}
	}
	return h, nil
}

// lockHosts makes and locks the rows of hosts, in order, and reads their
// records and pending seqs.
func lockHosts(ctx context.Context, tx pgx.Tx, hosts []string) (*hostSet, error) {
	hs := &hostSet{recs: map[string]*store.HostRecord{}, pending: map[string]*memPending{}}
	if len(hosts) == 0 {
		return hs, nil
	}
	hosts = slices.Clone(hosts)
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	if _, err := tx.Exec(ctx, `INSERT INTO apd_hosts (host, record) SELECT h, '' FROM unnest($1::text[]) AS h ORDER BY h ON CONFLICT DO NOTHING`, hosts); err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT host, record FROM apd_hosts WHERE host = ANY($1) ORDER BY host COLLATE "C" FOR UPDATE`, hosts)
	if err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	for rows.Next() {
		var name string
		var b []byte
		if err := rows.Scan(&name, &b); err != nil {
			rows.Close()
			return nil, err
		}
		h, err := decodeRecord(b)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		hs.recs[name] = h
		hs.pending[name] = &memPending{stored: map[uint64]bool{}}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = tx.Query(ctx, `SELECT host, seq FROM apd_pending WHERE host = ANY($1) ORDER BY host, seq`, hosts)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var seq int64
		if err := rows.Scan(&name, &seq); err != nil {
			return nil, err
		}
		p := hs.pending[name]
		p.stored[uint64(seq)] = true
		p.seqs = append(p.seqs, uint64(seq))
	}
	return hs, rows.Err()
}

func (hs *hostSet) lookup(name string) (*store.HostRecord, error) {
	h, ok := hs.recs[name]
	if !ok {
		return nil, fmt.Errorf("host %s: not locked by this commit", name)
	}
	return h, nil
}

// write puts back every record and the changes of every pending set.
func (hs *hostSet) write(ctx context.Context, tx pgx.Tx) error {
	var names []string
	var recs [][]byte
	var delHosts, addHosts []string
	var delSeqs, addSeqs []int64
	var cleared []string
	for name, h := range hs.recs {
		b, err := h.AppendJSON(nil)
		if err != nil {
			return err
		}
		names, recs = append(names, name), append(recs, b)
		p := hs.pending[name]
		if p.cleared {
			cleared = append(cleared, name)
		}
		now := map[uint64]bool{}
		for _, q := range p.seqs {
			now[q] = true
			if !p.stored[q] || p.cleared {
				addHosts, addSeqs = append(addHosts, name), append(addSeqs, int64(q))
			}
		}
		if !p.cleared {
			for q := range p.stored {
				if !now[q] {
					delHosts, delSeqs = append(delHosts, name), append(delSeqs, int64(q))
				}
			}
		}
	}
	if len(names) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE apd_hosts h SET record = v.r FROM unnest($1::text[], $2::bytea[]) AS v(host, r) WHERE h.host = v.host`, names, recs); err != nil {
			return fmt.Errorf("hosts: %w", err)
		}
	}
	if len(cleared) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM apd_pending WHERE host = ANY($1)`, cleared); err != nil {
			return err
		}
	}
	if len(delHosts) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM apd_pending p USING unnest($1::text[], $2::bigint[]) AS d(host, seq) WHERE p.host = d.host AND p.seq = d.seq`, delHosts, delSeqs); err != nil {
			return err
		}
	}
	if len(addHosts) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO apd_pending (host, seq) SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING`, addHosts, addSeqs); err != nil {
			return err
		}
	}
	return nil
}

// memPending is a host's pending seqs as one commit changes them: read
// at the start, written back as a difference at the end.
type memPending struct {
	stored  map[uint64]bool // in the database when the commit began
	seqs    []uint64        // now, sorted
	cleared bool            // all of stored deleted (a new spool)
}

func (p *memPending) Min() (uint64, bool, error) {
	if len(p.seqs) == 0 {
		return 0, false, nil
	}
	return p.seqs[0], true, nil
}

func (p *memPending) DeleteMin() error {
	if len(p.seqs) > 0 {
		p.seqs = p.seqs[1:]
	}
	return nil
}

func (p *memPending) Add(seq uint64) error {
	i, found := slices.BinarySearch(p.seqs, seq)
	if !found {
		p.seqs = slices.Insert(p.seqs, i, seq)
	}
	return nil
}

func (p *memPending) clear() {
	p.seqs, p.cleared = nil, true
}

// Commit writes a batch in one transaction; see store.Store.
func (s *Store) Commit(b *store.Batch) (store.CommitResult, error) {
	res, err := s.commit(b)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23514" {
		// No partition for a row: another process's retention dropped a
		// day this one thought it had. Look again.
		s.forgetPartitions()
		res, err = s.commit(b)
	}
	return res, err
}

func (s *Store) commit(b *store.Batch) (store.CommitResult, error) {
	ctx := context.Background()
	var res store.CommitResult
	if err := s.packOldDays(ctx, b.Readings); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	defer tx.Rollback(ctx)
	// The layout lock before any host lock: deletes take it exclusively
	// and then lock hosts.
	if err := lockLayout(ctx, tx, false); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	packing, err := packingDays(ctx, tx)
	if err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	now := s.now()
	var names []string
	for _, st := range b.Statuses {
		names = append(names, st.Host)
	}
	for i := range b.Readings {
		names = append(names, b.Readings[i].Host)
	}
	hs, err := lockHosts(ctx, tx, names)
	if err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	fx, err := store.ApplyStatuses(b, now, hs.lookup, func(name string) error {
		hs.pending[name].clear()
		return nil
	}, &res)
	if err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	kept, dead, err := store.RefuseSeqJumps(b, fx, hs.lookup, now, &res)
	if err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	if err := store.NoteAggregator(b, hs.lookup); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	ids, rowDays, err := s.insertReadings(ctx, tx, kept, packing, hs, &res)
	if err != nil {
		return store.CommitResult{}, fmt.Errorf("commit: %w", err)
	}
	if err := store.AdvanceWatermarks(kept, b.Imported, fx, hs.lookup, func(name string) store.Pending { return hs.pending[name] }, &res); err != nil {
		return store.CommitResult{}, fmt.Errorf("commit: %w", err)
	}
	if err := hs.write(ctx, tx); err != nil {
		return store.CommitResult{}, fmt.Errorf("commit: %w", err)
	}
	if err := s.putDeadLetters(ctx, tx, b.DeadLetters, fx.Dead, dead); err != nil {
		return store.CommitResult{}, fmt.Errorf("commit: dead letters: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return store.CommitResult{}, fmt.Errorf("commit: %w", err)
	}
	s.noteSeries(ids)
	s.notePartitions(rowDays)
	return res, nil
}

// insertReadings stores the readings not stored yet (the first of each
// (host, sensor, ts) wins, within the batch as against the store),
// counting each in its host's record: as rows for days being written,
// merged into blocks for days packed or being packed. It returns the
// series' ids and the days it wrote rows to.
func (s *Store) insertReadings(ctx context.Context, tx pgx.Tx, rs []schema.Reading, packing map[int64]bool, hs *hostSet, res *store.CommitResult) (map[seriesKey]int64, []int64, error) {
	if len(rs) == 0 {
		return nil, nil, nil
	}
	ids, err := s.seriesIDs(ctx, tx, rs)
	if err != nil {
		return nil, nil, err
	}
	isNew := make([]bool, len(rs))
	fresh := make([]int, 0, len(rs))
	var rowDays []int64
	var late []int
	for i := range rs {
		d := dayOf(rs[i].Time.UnixMilli())
		if _, ok := packing[d]; ok {
			late = append(late, i)
			continue
		}
		fresh = append(fresh, i)
		if !slices.Contains(rowDays, d) {
			rowDays = append(rowDays, d)
		}
	}
	if len(late) > 0 {
		if err := insertPacked(ctx, tx, rs, late, ids, packing, isNew); err != nil {
			return nil, nil, err
		}
	}
	if len(fresh) > 0 {
		if err := s.insertRows(ctx, tx, rs, fresh, rowDays, ids, isNew); err != nil {
			return nil, nil, err
		}
	}
	for i := range rs {
		if !isNew[i] {
			res.Duplicates++
			continue
		}
		res.Stored++
		h, err := hs.lookup(rs[i].Host)
		if err != nil {
			return nil, nil, err
		}
		h.CountStored(&rs[i])
	}
	return ids, rowDays, nil
}

// insertRows stores as rows the readings rs[i] for i in idx, of the
// days given, setting isNew for those not stored before.
func (s *Store) insertRows(ctx context.Context, tx pgx.Tx, rs []schema.Reading, idx []int, days []int64, ids map[seriesKey]int64, isNew []bool) error {
	type key struct {
		id int64
		ts int64
	}
	first := make(map[key]int, len(idx))
	rows := make([][]any, 0, len(idx))
	for _, i := range idx {
		r := &rs[i]
		k := key{ids[seriesKey{r.Sensor, r.Host}], r.Time.UnixMilli()}
		if _, dup := first[k]; dup {
			continue
		}
		first[k] = i
		rows = append(rows, []any{k.id, k.ts, int64(r.Seq), chunk.AppendRow(nil, &chunk.RowState{}, r)})
	}
	if err := s.ensurePartitions(ctx, tx, days); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS apd_stage (series_id bigint, ts bigint, seq bigint, payload bytea) ON COMMIT DELETE ROWS`); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"apd_stage"}, []string{"series_id", "ts", "seq", "payload"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copy readings: %w", err)
	}
	inserted, err := tx.Query(ctx, `INSERT INTO apd_readings (series_id, ts, seq, payload) SELECT series_id, ts, seq, payload FROM apd_stage ON CONFLICT DO NOTHING RETURNING series_id, ts`)
	if err != nil {
		return fmt.Errorf("insert readings: %w", err)
	}
	var k key
	_, err = pgx.ForEachRow(inserted, []any{&k.id, &k.ts}, func() error {
		isNew[first[k]] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert readings: %w", err)
	}
	return nil
}

// deadCost is what a dead letter counts against the byte bound: its
// record and the row's overhead (tuple header, id, cost, item pointer,
// index entry), doubled — a dropped row's space is reusable only after
// a vacuum, so under a flood about as much again is dead tuples.
func deadCost(v []byte) int64 { return (int64(len(v)) + 48) * 2 }

// putDeadLetters stores dead letters within the bounds, the oldest
// dropped first and counted; one commit writes at most an eighth of the
// byte bound, as in the embedded engine.
func (s *Store) putDeadLetters(ctx context.Context, tx pgx.Tx, lists ...[]store.DeadLetter) error {
	kept, first, err := store.EncodeDeadLetters(s.limits.MaxDeadBytes, deadCost, lists...)
	if err != nil || len(kept)+first == 0 {
		return err
	}
	var count, size, dropped int64
	if err := tx.QueryRow(ctx, `SELECT count, bytes, dropped FROM apd_dead_stats WHERE id = 1 FOR UPDATE`).Scan(&count, &size, &dropped); err != nil {
		return err
	}
	dropped += int64(first)
	var recs [][]byte
	var costs []int64
	for _, v := range kept {
		recs, costs = append(recs, v), append(costs, deadCost(v))
		count++
		size += deadCost(v)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO apd_dead (record, cost) SELECT r, c FROM unnest($1::bytea[], $2::bigint[]) WITH ORDINALITY AS d(r, c, n) ORDER BY n`, recs, costs); err != nil {
		return err
	}
	if count > int64(s.limits.MaxDeadLetters) || size > s.limits.MaxDeadBytes {
		// Drop the oldest until both bounds hold.
		rows, err := tx.Query(ctx, `SELECT id, cost FROM apd_dead ORDER BY id`)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() && (count > int64(s.limits.MaxDeadLetters) || size > s.limits.MaxDeadBytes) {
			var id, cost int64
			if err := rows.Scan(&id, &cost); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
			count--
			size -= cost
			dropped++
		}
		rows.Close()
		if _, err := tx.Exec(ctx, `DELETE FROM apd_dead WHERE id = ANY($1)`, ids); err != nil {
			return err
		}
	}
	_, err = tx.Exec(ctx, `UPDATE apd_dead_stats SET count = $1, bytes = $2, dropped = $3 WHERE id = 1`, count, max(size, 0), dropped)
	return err
}

// DeadLetters returns up to limit dead letters, newest first.
func (s *Store) DeadLetters(limit int) ([]store.DeadLetter, error) {
	rows, err := s.pool.Query(context.Background(), `SELECT record FROM apd_dead ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.DeadLetter
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var d store.DeadLetter
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeadLetterStats returns the dead-letter accounting.
func (s *Store) DeadLetterStats() (store.DeadLetterStats, error) {
	var c, b, d int64
	err := s.pool.QueryRow(context.Background(), `SELECT count, bytes, dropped FROM apd_dead_stats WHERE id = 1`).Scan(&c, &b, &d)
	return store.DeadLetterStats{Count: uint64(c), Bytes: uint64(b), Dropped: uint64(d)}, err
}

// Hosts returns every host seen, sorted by name.
func (s *Store) Hosts() ([]store.Host, error) {
	ctx := context.Background()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	committed := map[string]uint64{}
	rows, err := tx.Query(ctx, `SELECT host, count(*) FROM apd_pending GROUP BY host`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var h string
		var n int64
		if err := rows.Scan(&h, &n); err != nil {
			rows.Close()
			return nil, err
		}
		committed[h] = uint64(n)
	}
	rows.Close()
	rows, err = tx.Query(ctx, `SELECT host, record FROM apd_hosts ORDER BY host COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Host
	for rows.Next() {
		var name string
		var b []byte
		if err := rows.Scan(&name, &b); err != nil {
			return nil, err
		}
		rec, err := decodeRecord(b)
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		h := rec.Host(name)
		if rec.MaxSeq > rec.Watermark {
			h.Awaited = rec.MaxSeq - rec.Watermark - min(committed[name], rec.MaxSeq-rec.Watermark)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// RestoreHost replaces a host's record; see store.HostRestorer.
func (s *Store) RestoreHost(name string, rec store.HostRecord) error {
	return s.changeHost(name, func(h *store.HostRecord) {
		if rec.Sensors == nil {
			rec.Sensors = map[string]*store.SensorStats{}
		}
		*h = rec
	})
}

// changeHost changes one host's record in a transaction of its own.
func (s *Store) changeHost(host string, change func(*store.HostRecord)) error {
	if err := schema.ValidateName(host); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	hs, err := lockHosts(ctx, tx, []string{host})
	if err != nil {
		return err
	}
	change(hs.recs[host])
	if err := hs.write(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// SetHostMeta replaces how host is shown; see store.Store.
func (s *Store) SetHostMeta(host string, m store.HostMeta) error {
	if err := schema.ValidateName(host); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	if err := m.Validate(); err != nil {
		return err
	}
	return s.changeHost(host, func(h *store.HostRecord) { h.Meta = m })
}

// selection is q as SQL conditions over apd_series s with apd_readings r
// (rows) and with apd_packed p (blocks: those whose hour overlaps the
// range), sharing args; whole is true of a block wholly inside the range.
type selection struct {
	rows, blocks, whole string
	args                []any
}

func where(q store.Query) selection {
	var common, rows, blocks []string
	whole := []string{"true"}
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if q.Sensor != "" {
		common = append(common, "s.sensor = "+arg(q.Sensor))
	}
	if len(q.Hosts) > 0 {
		common = append(common, "s.host = ANY("+arg(q.Hosts)+")")
	}
	rows, blocks = slices.Clone(common), slices.Clone(common)
	if !q.Since.IsZero() {
		a := arg(q.Since.UnixMilli())
		rows = append(rows, "r.ts >= "+a+"::bigint")
		blocks = append(blocks, "p.hour > "+a+"::bigint - 3600000")
		whole = append(whole, "p.hour >= "+a+"::bigint")
	}
	if !q.Until.IsZero() {
		a := arg(q.Until.UnixMilli())
		rows = append(rows, "r.ts < "+a+"::bigint")
		blocks = append(blocks, "p.hour < "+a+"::bigint")
		whole = append(whole, "p.hour + 3600000 <= "+a+"::bigint")
	}
	sql := func(conds []string) string {
		if len(conds) == 0 {
			return ""
		}
		return " WHERE " + strings.Join(conds, " AND ")
	}
	return selection{rows: sql(rows), blocks: sql(blocks), whole: strings.Join(whole, " AND "), args: args}
}

// inRange reports whether ms is inside q's time range.
func inRange(q store.Query, ms int64) bool {
	return (q.Since.IsZero() || ms >= q.Since.UnixMilli()) && (q.Until.IsZero() || ms < q.Until.UnixMilli())
}

// Scan calls fn for every reading q selects, by sensor, host, then time,
// from one snapshot of the database.
func (s *Store) Scan(q store.Query, fn func(*schema.Reading) error) error {
	return s.scan(q, false, func(p *store.Part) error { return fn(p.Reading) })
}

// ScanSummarized is Scan, except that a packed hour wholly inside
// [Since, Until) with sums (store.Summarizer) is given as its periods'
// sums, not decoded.
func (s *Store) ScanSummarized(q store.Query, fn func(*store.Part) error) error {
	return s.scan(q, true, fn)
}

func (s *Store) scan(q store.Query, summarized bool, fn func(*store.Part) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sel := where(q)
	// A series' hours are either rows or a block, never both, so one
	// order by start time is the order of the readings.
	useSums := "false"
	if summarized {
		useSums = "p.summary IS NOT NULL AND " + sel.whole
	}
	sql := `SELECT s.sensor COLLATE "C" AS sensor, s.host COLLATE "C" AS host, r.ts AS ts, r.payload AS data, 0 AS kind
		FROM apd_readings r JOIN apd_series s ON s.id = r.series_id` + sel.rows + `
		UNION ALL SELECT s.sensor, s.host, p.hour, CASE WHEN ` + useSums + ` THEN p.summary ELSE p.chunk END, CASE WHEN ` + useSums + ` THEN 2 ELSE 1 END
		FROM apd_packed p JOIN apd_series s ON s.id = p.series_id` + sel.blocks + `
		ORDER BY sensor, host, ts`
	rows, err := s.pool.Query(ctx, sql, sel.args...)
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	defer rows.Close()
	var sensor, host string
	var ts int64
	var data []byte
	var kind int
	given := 0
	var part store.Part
	emit := func() (bool, error) {
		if err := fn(&part); err != nil {
			if errors.Is(err, store.ErrStop) {
				return true, nil
			}
			return true, err
		}
		if part.Reading != nil {
			given++
		}
		return q.Limit > 0 && given >= q.Limit, nil
	}
	var sum chunk.Summary
	for rows.Next() {
		if err := rows.Scan(&sensor, &host, &ts, &data, &kind); err != nil {
			return err
		}
		switch kind {
		case 0:
			r := schema.Reading{Host: host, Sensor: sensor}
			if _, err := chunk.ReadRow(data, &chunk.RowState{}, &r); err != nil {
				return fmt.Errorf("reading %s/%s at %s: %w", sensor, host, schema.FormatTime(time.UnixMilli(ts)), err)
			}
			part = store.Part{Reading: &r}
			if stop, err := emit(); stop {
				cancel()
				return err
			}
		case 1:
			rs, err := decodeBlock(host, sensor, data)
			if err != nil {
				return fmt.Errorf("block %s/%s at %s: %w", sensor, host, schema.FormatTime(time.UnixMilli(ts)), err)
			}
			for i := range rs {
				if !inRange(q, rs[i].Time.UnixMilli()) {
					continue
				}
				part = store.Part{Reading: &rs[i]}
				if stop, err := emit(); stop {
					cancel()
					return err
				}
			}
		case 2:
			if err := sum.Decode(data); err != nil {
				return fmt.Errorf("sums %s/%s at %s: %w", sensor, host, schema.FormatTime(time.UnixMilli(ts)), err)
			}
			for _, row := range sum.Rows {
				part = store.Part{Sum: &store.PeriodSum{Host: host, Sensor: sensor, Start: time.UnixMilli(row.Start).UTC(),
					Count: row.Count, Sum: row.Sum, Unit: sum.Unit, Title: sum.Title}}
				if stop, err := emit(); stop {
					cancel()
					return err
				}
			}
		}
	}
	return rows.Err()
}

// Delete removes the readings q selects; see store.Store. Retention's
// delete (every series, up to a time) drops the whole days below it as
// partitions, which frees their space at once, and deletes rows only in
// the day it cuts through.
func (s *Store) Delete(q store.Query) (int, error) {
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	if err := lockLayout(ctx, tx, true); err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	perHost := map[string]map[string]uint64{}
	removed := 0
	tally := func(sensor, host string, n int64) {
		if perHost[host] == nil {
			perHost[host] = map[string]uint64{}
		}
		perHost[host][sensor] += uint64(n)
		removed += int(n)
	}
	count := func(rows pgx.Rows, err error) error {
		if err != nil {
			return err
		}
		var sensor, host string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&sensor, &host, &n}, func() error { tally(sensor, host, n); return nil })
		return err
	}
	if q.Sensor == "" && len(q.Hosts) == 0 && q.Since.IsZero() && !q.Until.IsZero() {
		rowDays, err := partitionDays(ctx, tx, "apd_readings")
		if err != nil {
			return 0, fmt.Errorf("delete: %w", err)
		}
		packedDays, err := partitionDays(ctx, tx, "apd_packed")
		if err != nil {
			return 0, fmt.Errorf("delete: %w", err)
		}
		for _, part := range []struct {
			days        []int64
			name        func(int64) string
			countColumn string
		}{{rowDays, partitionName, "count(*)"}, {packedDays, packedName, "sum(r.n)"}} {
			for _, d := range part.days {
				if d+day > q.Until.UnixMilli() {
					continue
				}
				name := part.name(d)
				if err := count(tx.Query(ctx, `SELECT s.sensor, s.host, `+part.countColumn+`::bigint FROM `+name+` r JOIN apd_series s ON s.id = r.series_id GROUP BY s.sensor, s.host`)); err != nil {
					return 0, fmt.Errorf("delete: %w", err)
				}
				if _, err := tx.Exec(ctx, `DROP TABLE `+name); err != nil {
					return 0, fmt.Errorf("delete: drop %s: %w", name, err)
				}
				if _, err := tx.Exec(ctx, `DELETE FROM apd_packing WHERE day = $1`, d); err != nil {
					return 0, fmt.Errorf("delete: %w", err)
				}
			}
		}
		defer s.forgetPartitions()
	}
	sel := where(q)
	cond := " WHERE s.id = r.series_id"
	if sel.rows != "" {
		cond = strings.Replace(sel.rows, " WHERE ", " WHERE s.id = r.series_id AND ", 1)
	}
	if err := count(tx.Query(ctx, `WITH gone AS (DELETE FROM apd_readings r USING apd_series s`+cond+
		` RETURNING s.sensor, s.host) SELECT sensor, host, count(*) FROM gone GROUP BY sensor, host`, sel.args...)); err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	if err := deleteFromBlocks(ctx, tx, q, sel, tally); err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	wholeHosts := q.Sensor == "" && q.Since.IsZero() && q.Until.IsZero() && len(q.Hosts) > 0
	if wholeHosts {
		if _, err := tx.Exec(ctx, `DELETE FROM apd_hosts WHERE host = ANY($1)`, q.Hosts); err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM apd_pending WHERE host = ANY($1)`, q.Hosts); err != nil {
			return 0, err
		}
	} else if len(perHost) > 0 {
		hosts := make([]string, 0, len(perHost))
		for h := range perHost {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		hs, err := lockHosts(ctx, tx, hosts)
		if err != nil {
			return 0, err
		}
		for host, counts := range perHost {
			rec := hs.recs[host]
			for sensor, n := range counts {
				if st := rec.Sensors[sensor]; st != nil {
					st.Count -= min(st.Count, n)
					if st.Count == 0 {
						delete(rec.Sensors, sensor)
					}
				}
			}
		}
		if err := hs.write(ctx, tx); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	return removed, nil
}
