package boltdb

import (
	"bytes"
	"errors"
	"slices"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// Scan calls fn for every reading the query selects, ordered by sensor, then
// host, then time, inside one read transaction: fn sees a consistent
// snapshot. The reading passed to fn is valid only during the call. An error
// from fn ends the scan and is returned, except store.ErrStop.
func (s *Store) Scan(q store.Query, fn func(*schema.Reading) error) error {
	since, until := queryKeys(q)
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return eachSeries(tx, q, func(_, hb *bolt.Bucket, sensor, host []byte) error {
			return scanSeries(hb, string(host), string(sensor), since, until, func(r *schema.Reading) error {
				if err := fn(r); err != nil {
					return err
				}
				n++
				if q.Limit > 0 && n >= q.Limit {
					return store.ErrStop
				}
				return nil
			})
		}, nil)
	})
	if errors.Is(err, store.ErrStop) {
		return nil
	}
	return err
}

// queryKeys returns the time keys of the query's bounds, nil for an open
// end.
func queryKeys(q store.Query) (since, until []byte) {
	if !q.Since.IsZero() {
		since = timeKey(q.Since)
	}
	if !q.Until.IsZero() {
		until = timeKey(q.Until)
	}
	return since, until
}

// eachSeries calls each for every series (sensor bucket, host bucket) the
// query selects, sensors and hosts in name order, and after, if not nil,
// once a sensor's hosts are done. The lists are taken before the calls,
// so the callbacks may delete buckets.
func eachSeries(tx *bolt.Tx, q store.Query, each func(sb, hb *bolt.Bucket, sensor, host []byte) error, after func(sb *bolt.Bucket, sensor []byte) error) error {
	readings := tx.Bucket(bucketReadings)
	var sensors [][]byte
	if q.Sensor != "" {
		sensors = [][]byte{[]byte(q.Sensor)}
	} else {
		_ = readings.ForEachBucket(func(k []byte) error { sensors = append(sensors, slices.Clone(k)); return nil })
	}
	for _, sensor := range sensors {
		sb := readings.Bucket(sensor)
		if sb == nil {
			continue
		}
		var hosts [][]byte
		if len(q.Hosts) > 0 {
			for _, h := range q.Hosts {
				hosts = append(hosts, []byte(h))
			}
			slices.SortFunc(hosts, bytes.Compare)
			hosts = slices.CompactFunc(hosts, bytes.Equal)
		} else {
			_ = sb.ForEachBucket(func(k []byte) error { hosts = append(hosts, slices.Clone(k)); return nil })
		}
		for _, host := range hosts {
			if hb := sb.Bucket(host); hb != nil {
				if err := each(sb, hb, sensor, host); err != nil {
					return err
				}
			}
		}
		if after != nil {
			if err := after(sb, sensor); err != nil {
				return err
			}
		}
	}
	return nil
}

// Sensors returns the names of every sensor with stored readings, sorted.
func (s *Store) Sensors() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReadings).ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Size returns the size of the database file in bytes.
func (s *Store) Size() (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n, err
}
