package pgstore

import (
	"context"
	"encoding/json"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/jackc/pgx/v5"
)

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
