package pgstore

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/jackc/pgx/v5"
)

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
