package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

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
