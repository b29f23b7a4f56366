package pgstore

import (
	"context"
	"fmt"

	"github.com/apd-telemetry/apd/schema"
	"github.com/jackc/pgx/v5"
)

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
