package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

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
