package store

import (
	"bytes"
	"errors"
	"slices"
	"time"

	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// Query selects readings. The zero value selects everything.
type Query struct {
	// Sensor selects one sensor; empty means all.
	Sensor string
	// Hosts selects these hosts; empty means all.
	Hosts []string
	// Since and Until bound the time range, half-open: Since ≤ ts < Until.
	// A zero time leaves that side open.
	Since, Until time.Time
	// Limit stops the scan after this many readings; 0 means no limit.
	Limit int
}

// ErrStop may be returned by a Scan callback to end the scan early without
// an error.
var ErrStop = errors.New("stop scan")

// Scan calls fn for every reading the query selects, ordered by sensor, then
// host, then time, inside one read transaction: fn sees a consistent
// snapshot. The reading passed to fn is valid only during the call. An error
// from fn ends the scan and is returned, except ErrStop.
func (s *Store) Scan(q Query, fn func(*schema.Reading) error) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		readings := tx.Bucket(bucketReadings)
		var sensors [][]byte
		if q.Sensor != "" {
			sensors = [][]byte{[]byte(q.Sensor)}
		} else {
			_ = readings.ForEachBucket(func(k []byte) error {
				sensors = append(sensors, slices.Clone(k))
				return nil
			})
		}
		n := 0
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
				_ = sb.ForEachBucket(func(k []byte) error {
					hosts = append(hosts, slices.Clone(k))
					return nil
				})
			}
			for _, host := range hosts {
				hb := sb.Bucket(host)
				if hb == nil {
					continue
				}
				var since, until []byte
				if !q.Since.IsZero() {
					since = timeKey(q.Since)
				}
				if !q.Until.IsZero() {
					until = timeKey(q.Until)
				}
				err := scanSeries(hb, string(host), string(sensor), since, until, func(r *schema.Reading) error {
					if err := fn(r); err != nil {
						return err
					}
					n++
					if q.Limit > 0 && n >= q.Limit {
						return ErrStop
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
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
