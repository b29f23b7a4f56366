package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
)

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
