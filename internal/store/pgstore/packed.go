package pgstore

// The packed layout. A row per reading is what a day being written needs
// (an insert is an index entry, idempotence is the primary key), and
// costs about 100 bytes a reading. A finished day is read far more than
// written, so Pack rewrites it as one row per series and hour holding
// that hour's readings in the embedded engine's chunk encoding (time,
// seq and value columns, delta-coded and compressed): 1–2 bytes a
// reading, and an hour of a series is one row to read.
//
// Readings that arrive late for a day that is packed (or being packed)
// are merged into their hour's block, under the same host locks as any
// commit; while a day is being packed, the series-hour's remaining rows
// are moved into the block first, so a reading is only ever in one
// place and a duplicate is always seen. Commits hold a shared advisory
// lock while they decide which layout a day is in; packing and deletes
// take it exclusively for each of their short transactions.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const hour = int64(time.Hour / time.Millisecond)

func packedName(dayMs int64) string { return dayPartition("apd_packed", dayMs) }

// lockLayout takes advisory lock (7405, 2), which orders decisions about
// the layout of days: shared by commits, exclusive for packing and
// deletes. (7405, 0) orders migrations, (7405, 1) making partitions.
func lockLayout(ctx context.Context, tx pgx.Tx, exclusive bool) error {
	sql := "SELECT pg_advisory_xact_lock_shared(7405, 2)"
	if exclusive {
		sql = "SELECT pg_advisory_xact_lock(7405, 2)"
	}
	_, err := tx.Exec(ctx, sql)
	return err
}

// packingDays returns the days packed (true) or being packed (false).
// The caller holds the layout lock; the read is a statement of its own
// so that it sees what committed before the lock was granted.
func packingDays(ctx context.Context, tx pgx.Tx) (map[int64]bool, error) {
	rows, err := tx.Query(ctx, `SELECT day, done FROM apd_packing`)
	if err != nil {
		return nil, err
	}
	days := map[int64]bool{}
	var d int64
	var done bool
	_, err = pgx.ForEachRow(rows, []any{&d, &done}, func() error { days[d] = done; return nil })
	return days, err
}

// encodeBlock encodes an hour of a series (sorted, unique times) as
// chunks of at most chunk.MaxReadings, each after its length.
func encodeBlock(sensor string, rs []schema.Reading) []byte {
	var b []byte
	for len(rs) > 0 {
		n := min(len(rs), chunk.MaxReadings)
		c := chunk.Encode(sensor, rs[:n])
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
		rs = rs[n:]
	}
	return b
}

// decodeBlock rebuilds the readings of a block.
func decodeBlock(host, sensor string, b []byte) ([]schema.Reading, error) {
	var out []schema.Reading
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return nil, fmt.Errorf("%w: block length", chunk.ErrCorrupt)
		}
		rs, err := chunk.Decode(host, sensor, b[w:w+int(n)])
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		b = b[w+int(n):]
	}
	return out, nil
}

// blockKey names a block: a series and the hour (ms of its start).
type blockKey struct{ id, hour int64 }

// block is one series-hour being rewritten.
type block struct {
	host, sensor string
	old          []schema.Reading // stored: the block's and rows moved into it
	add          []int            // indices of new readings, in batch order
	changed      bool
}

// insertPacked stores the readings rs[i] for i in idx, all of packed days,
// by merging them into their hours' blocks; isNew[i] says which were not
// stored before.
func insertPacked(ctx context.Context, tx pgx.Tx, rs []schema.Reading, idx []int, ids map[seriesKey]int64, packing map[int64]bool, isNew []bool) error {
	blocks := map[blockKey]*block{}
	var keys []blockKey
	var days []int64
	for _, i := range idx {
		r := &rs[i]
		ms := r.Time.UnixMilli()
		k := blockKey{ids[seriesKey{r.Sensor, r.Host}], floorTo(ms, hour)}
		b := blocks[k]
		if b == nil {
			b = &block{host: r.Host, sensor: r.Sensor}
			blocks[k] = b
			keys = append(keys, k)
			days = append(days, dayOf(ms))
		}
		b.add = append(b.add, i)
	}
	slices.Sort(days)
	if err := makePartitions(ctx, tx, "apd_packed", slices.Compact(days)); err != nil {
		return err
	}
	if _, err := loadBlocks(ctx, tx, keys, blocks, packing); err != nil {
		return err
	}
	for _, b := range blocks {
		slices.SortStableFunc(b.add, func(x, y int) int { return rs[x].Time.Compare(rs[y].Time) })
		add := make([]schema.Reading, len(b.add))
		for j, i := range b.add {
			add[j] = rs[i]
		}
		merged, inserted := chunk.Merge(b.old, add)
		for j, ok := range inserted {
			if ok {
				isNew[b.add[j]] = true
				b.changed = true
			}
		}
		b.old = merged
	}
	return writeBlocks(ctx, tx, blocks)
}

// loadBlocks reads and locks the blocks of keys, and moves into them the
// rows of their hours that a day still being packed has left.
func loadBlocks(ctx context.Context, tx pgx.Tx, keys []blockKey, blocks map[blockKey]*block, packing map[int64]bool) (int, error) {
	var sids, hours, rowIDs, rowHours []int64
	for _, k := range keys {
		sids, hours = append(sids, k.id), append(hours, k.hour)
		if !packing[dayOf(k.hour)] {
			rowIDs, rowHours = append(rowIDs, k.id), append(rowHours, k.hour)
		}
	}
	rows, err := tx.Query(ctx, `SELECT p.series_id, p.hour, p.chunk FROM apd_packed p
		JOIN unnest($1::bigint[], $2::bigint[]) AS k(id, hour) ON p.series_id = k.id AND p.hour = k.hour FOR UPDATE OF p`, sids, hours)
	if err != nil {
		return 0, fmt.Errorf("read blocks: %w", err)
	}
	var k blockKey
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&k.id, &k.hour, &data}, func() error {
		b := blocks[k]
		rs, err := decodeBlock(b.host, b.sensor, data)
		if err != nil {
			return fmt.Errorf("block %d/%d: %w", k.id, k.hour, err)
		}
		b.old = rs
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read blocks: %w", err)
	}
	if len(rowIDs) == 0 {
		return 0, nil
	}
	rows, err = tx.Query(ctx, `DELETE FROM apd_readings r USING unnest($1::bigint[], $2::bigint[]) AS k(id, hour)
		WHERE r.series_id = k.id AND r.ts >= k.hour AND r.ts < k.hour + 3600000 RETURNING r.series_id, r.ts, r.payload`, rowIDs, rowHours)
	if err != nil {
		return 0, fmt.Errorf("move rows: %w", err)
	}
	moved := map[blockKey][]schema.Reading{}
	n := 0
	var ts int64
	_, err = pgx.ForEachRow(rows, []any{&k.id, &ts, &data}, func() error {
		k.hour = floorTo(ts, hour)
		b := blocks[k]
		r := schema.Reading{Host: b.host, Sensor: b.sensor}
		if _, err := chunk.ReadRow(data, &chunk.RowState{}, &r); err != nil {
			return err
		}
		moved[k] = append(moved[k], r)
		n++
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("move rows: %w", err)
	}
	for k, rs := range moved {
		chunk.SortByTime(rs)
		b := blocks[k]
		b.old, _ = chunk.Merge(b.old, rs)
		b.changed = true
	}
	return n, nil
}

// writeBlocks writes back the blocks that changed; an emptied one is
// deleted.
func writeBlocks(ctx context.Context, tx pgx.Tx, blocks map[blockKey]*block) error {
	var ids, hours, gone, goneHours []int64
	var ns []int32
	var chunks, sums [][]byte
	for k, b := range blocks {
		if !b.changed {
			continue
		}
		if len(b.old) == 0 {
			gone, goneHours = append(gone, k.id), append(goneHours, k.hour)
			continue
		}
		enc := encodeBlock(b.sensor, b.old)
		var sum []byte // none when the hour mixes units or titles
		if s, ok := chunk.Summarize(b.old, enc, store.SummaryPeriod); ok {
			sum = s.Append(nil)
		}
		ids, hours = append(ids, k.id), append(hours, k.hour)
		ns, chunks, sums = append(ns, int32(len(b.old))), append(chunks, enc), append(sums, sum)
	}
	if len(gone) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM apd_packed p USING unnest($1::bigint[], $2::bigint[]) AS k(id, hour)
			WHERE p.series_id = k.id AND p.hour = k.hour`, gone, goneHours); err != nil {
			return fmt.Errorf("write blocks: %w", err)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO apd_packed (series_id, hour, n, chunk, summary) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::bytea[], $5::bytea[])
		ON CONFLICT (series_id, hour) DO UPDATE SET n = EXCLUDED.n, chunk = EXCLUDED.chunk, summary = EXCLUDED.summary`, ids, hours, ns, chunks, sums); err != nil {
		return fmt.Errorf("write blocks: %w", err)
	}
	return nil
}

// defaultPackBudget is about how many readings one packing transaction
// moves: commits wait for it, so it stays well under a second.
const defaultPackBudget = 100_000

// Pack rewrites every day that ended more than after ago into the packed
// layout, a few series per transaction. It is safe beside commits and
// other aggregators (a day is packed by one of them at a time), and an
// interrupted Pack is taken up where it stopped by the next.
func (s *Store) Pack(ctx context.Context, after time.Duration) (store.PackStats, error) {
	var st store.PackStats
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return st, fmt.Errorf("pack: %w", err)
	}
	days, err := partitionDays(ctx, tx, "apd_readings")
	tx.Rollback(ctx)
	if err != nil {
		return st, fmt.Errorf("pack: %w", err)
	}
	cut := s.now().Add(-after).UnixMilli()
	for _, d := range days {
		if d+day > cut {
			continue
		}
		n, err := s.packDay(ctx, d)
		if err != nil {
			return st, fmt.Errorf("pack %s: %w", time.UnixMilli(d).UTC().Format(time.DateOnly), err)
		}
		st.Days++
		st.Readings += n
	}
	return st, nil
}

// inLayoutTx runs fn in a transaction holding the layout lock exclusively.
func (s *Store) inLayoutTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := lockLayout(ctx, tx, true); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// packOldDays declares packed the days of rs that ended more than
// packAfter ago and have no rows, so that their readings go straight
// into blocks. It runs before the commit's transaction, because it takes
// the layout lock exclusively.
func (s *Store) packOldDays(ctx context.Context, rs []schema.Reading) error {
	cut := s.now().Add(-s.packAfter).UnixMilli()
	var days []int64
	s.mu.Lock()
	for i := range rs {
		if d := dayOf(rs[i].Time.UnixMilli()); d+day <= cut && !s.packedDays[d] && !s.partitions[d] && !slices.Contains(days, d) {
			days = append(days, d)
		}
	}
	s.mu.Unlock()
	if len(days) == 0 {
		return nil
	}
	err := s.inLayoutTx(ctx, func(tx pgx.Tx) error {
		for _, d := range days {
			if _, err := tx.Exec(ctx, `INSERT INTO apd_packing (day, done) SELECT $1::bigint, true WHERE to_regclass($2) IS NULL ON CONFLICT DO NOTHING`, d, partitionName(d)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range days {
		s.packedDays[d] = true
	}
	return nil
}

// errNoPartition is a day's row partition dropped (by retention) while
// it was being packed.
var errNoPartition = errors.New("partition gone")

func (s *Store) packDay(ctx context.Context, d int64) (int, error) {
	part := partitionName(d)
	var counts []struct{ id, n int64 }
	err := s.inLayoutTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO apd_packing (day, done) VALUES ($1, false) ON CONFLICT DO NOTHING`, d); err != nil {
			return err
		}
		if err := makePartitions(ctx, tx, "apd_packed", []int64{d}); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT series_id, count(*) FROM `+part+` GROUP BY series_id ORDER BY series_id`)
		if err != nil {
			return err
		}
		var id, n int64
		_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
			counts = append(counts, struct{ id, n int64 }{id, n})
			return nil
		})
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		err = errNoPartition
	}
	if err != nil && !errors.Is(err, errNoPartition) {
		return 0, err
	}
	moved := 0
	for len(counts) > 0 && err == nil {
		var group []int64
		var n int64
		for len(counts) > 0 && (len(group) == 0 || n+counts[0].n <= s.packBudget) {
			group, n = append(group, counts[0].id), n+counts[0].n
			counts = counts[1:]
		}
		var m int
		m, err = s.packSeries(ctx, d, group)
		moved += m
	}
	if err != nil && !errors.Is(err, errNoPartition) {
		return moved, err
	}
	err = s.inLayoutTx(ctx, func(tx pgx.Tx) error {
		var left bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL AND EXISTS (SELECT 1 FROM apd_readings WHERE ts >= $2 AND ts < $3)`, part, d, d+day).Scan(&left); err != nil {
			return err
		}
		if left {
			return fmt.Errorf("rows of %s left after packing; run again", part)
		}
		if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+part); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE apd_packing SET done = true WHERE day = $1`, d)
		return err
	})
	s.forgetPartitions()
	return moved, err
}

// packSeries moves the rows of a day's series into their blocks.
func (s *Store) packSeries(ctx context.Context, d int64, ids []int64) (int, error) {
	moved := 0
	err := s.inLayoutTx(ctx, func(tx pgx.Tx) error {
		names := map[int64]seriesKey{}
		rows, err := tx.Query(ctx, `SELECT id, sensor, host FROM apd_series WHERE id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		var id int64
		var k seriesKey
		if _, err := pgx.ForEachRow(rows, []any{&id, &k.sensor, &k.host}, func() error { names[id] = k; return nil }); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, partitionName(d)).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return errNoPartition
		}
		blocks := map[blockKey]*block{}
		var keys []blockKey
		rows, err = tx.Query(ctx, `SELECT DISTINCT series_id, ts - ((ts % 3600000) + 3600000) % 3600000 FROM `+partitionName(d)+` WHERE series_id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		var bk blockKey
		if _, err := pgx.ForEachRow(rows, []any{&bk.id, &bk.hour}, func() error {
			n := names[bk.id]
			blocks[bk] = &block{host: n.host, sensor: n.sensor}
			keys = append(keys, bk)
			return nil
		}); err != nil {
			return err
		}
		n, err := loadBlocks(ctx, tx, keys, blocks, map[int64]bool{})
		if err != nil {
			return err
		}
		moved = n
		return writeBlocks(ctx, tx, blocks)
	})
	return moved, err
}

// deleteFromBlocks removes what q selects from the blocks: a block wholly
// inside the range goes at once, one it overlaps is rewritten without the
// readings inside.
func deleteFromBlocks(ctx context.Context, tx pgx.Tx, q store.Query, sel selection, tally func(sensor, host string, n int64)) error {
	rows, err := tx.Query(ctx, `SELECT p.series_id, p.hour, s.sensor, s.host, p.n, `+sel.whole+` AS whole, CASE WHEN `+sel.whole+` THEN NULL ELSE p.chunk END
		FROM apd_packed p JOIN apd_series s ON s.id = p.series_id`+sel.blocks+` FOR UPDATE OF p`, sel.args...)
	if err != nil {
		return err
	}
	blocks := map[blockKey]*block{}
	var k blockKey
	var sensor, host string
	var n int64
	var all bool
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&k.id, &k.hour, &sensor, &host, &n, &all, &data}, func() error {
		if all {
			blocks[k] = &block{host: host, sensor: sensor, changed: true}
			tally(sensor, host, n)
			return nil
		}
		rs, err := decodeBlock(host, sensor, data)
		if err != nil {
			return fmt.Errorf("block %s/%s: %w", sensor, host, err)
		}
		kept := slices.DeleteFunc(rs, func(r schema.Reading) bool { return inRange(q, r.Time.UnixMilli()) })
		if gone := int64(len(rs)) - int64(len(kept)); gone > 0 {
			blocks[k] = &block{host: host, sensor: sensor, old: kept, changed: true}
			tally(sensor, host, gone)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeBlocks(ctx, tx, blocks)
}

var (
	_ store.Packer     = (*Store)(nil)
	_ store.Summarizer = (*Store)(nil)
)
