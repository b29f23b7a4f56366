package boltdb

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// scanPage is how many readings Scan gathers in one read transaction
// before it lets go of it and hands them to the caller.
const scanPage = 4096

// errPageFull ends a page of a scan.
var errPageFull = errors.New("page full")

// Scan calls fn for every reading the query selects, ordered by sensor,
// then host, then time. It reads in pages of up to scanPage readings, each
// in a read transaction that ends before fn sees the page: fn may be slow
// (a stalled network client), and a read transaction held open would
// block any commit that has to grow the file. Each page is a consistent
// snapshot; every reading committed before Scan began is seen once. An
// error from fn ends the scan and is returned, except store.ErrStop.
func (s *Store) Scan(q store.Query, fn func(*schema.Reading) error) error {
	since, until := queryKeys(q)
	page := make([]schema.Reading, 0, scanPage)
	n := 0
	return s.pages(q, func(tx *bolt.Tx, hb *bolt.Bucket, sensor, host, from []byte, stop func(last []byte) error) error {
		add := func(r *schema.Reading) error {
			page = append(page, *r)
			if len(page) == scanPage {
				return stop(timeKey(r.Time))
			}
			return nil
		}
		if err := scanSeries(hb, string(host), string(sensor), from, until, add); err != nil {
			return err
		}
		// The head's readings are later than the chunks'.
		return scanHead(s.head.series[seriesKey{string(sensor), string(host)}], string(host), string(sensor), from, until, add)
	}, func() (bool, error) {
		defer func() { page = page[:0] }()
		for i := range page {
			if err := fn(&page[i]); err != nil {
				return true, err
			}
			n++
			if q.Limit > 0 && n >= q.Limit {
				return true, nil
			}
		}
		return false, nil
	}, since)
}

// pages runs a scan in pages: visit is called for each series q selects,
// from where the last page stopped (from: the time key to start at),
// within one read transaction per page, until it returns errPageFull by
// calling stop with the time key of the last item it gathered; then the
// transaction ends and deliver hands the page to the caller (done: the
// caller wants no more), and the next page starts after that key. A
// caller's store.ErrStop ends the scan without an error.
func (s *Store) pages(q store.Query, visit func(tx *bolt.Tx, hb *bolt.Bucket, sensor, host, from []byte, stop func(last []byte) error) error,
	deliver func() (done bool, err error), since []byte) error {
	// Where the next page starts: the series (sensor, host) and, within
	// it, after the time key last.
	var resume struct {
		sensor, host, last []byte
		set                bool
	}
	for {
		full := false
		s.headMu.RLock()
		err := s.db.View(func(tx *bolt.Tx) error {
			err := eachSeries(tx, q, func(_, hb *bolt.Bucket, sensor, host []byte) error {
				from := since
				if resume.set {
					switch c := compareSeries(sensor, host, resume.sensor, resume.host); {
					case c < 0:
						return nil // done on an earlier page
					case c == 0:
						from = nextKey(resume.last)
						if since != nil && bytes.Compare(since, from) > 0 {
							from = since
						}
					}
				}
				return visit(tx, hb, sensor, host, from, func(last []byte) error {
					resume.sensor, resume.host, resume.last, resume.set = slices.Clone(sensor), slices.Clone(host), last, true
					return errPageFull
				})
			}, nil)
			if errors.Is(err, errPageFull) {
				full = true
				return nil
			}
			return err
		})
		s.headMu.RUnlock()
		if err != nil {
			return err
		}
		done, err := deliver()
		if errors.Is(err, store.ErrStop) {
			return nil
		}
		if err != nil || done || !full {
			return err
		}
	}
}

// compareSeries orders series as Scan visits them: by sensor, then host.
func compareSeries(sensor, host, sensor2, host2 []byte) int {
	if c := bytes.Compare(sensor, sensor2); c != 0 {
		return c
	}
	return bytes.Compare(host, host2)
}

// nextKey returns the time key one millisecond after k.
func nextKey(k []byte) []byte { return timeKey(keyTime(k).Add(time.Millisecond)) }

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

// scanHead calls fn for the readings of head hs (nil: none) in
// [since, until) (nil keys: open ends), in time order.
func scanHead(hs *headSeries, host, sensor string, since, until []byte, fn func(*schema.Reading) error) error {
	if hs == nil {
		return nil
	}
	if until != nil && hs.first >= keyTime(until).UnixMilli() || since != nil && hs.last < keyTime(since).UnixMilli() {
		return nil
	}
	b := hs.rows
	var st chunk.RowState
	r := schema.Reading{Host: host, Sensor: sensor}
	for i := 0; i < hs.n; i++ {
		var err error
		if b, err = chunk.ReadRow(b, &st, &r); err != nil {
			return fmt.Errorf("head of %s/%s: %w", sensor, host, err)
		}
		tk := timeKey(r.Time)
		if since != nil && bytes.Compare(tk, since) < 0 {
			continue
		}
		if until != nil && bytes.Compare(tk, until) >= 0 {
			return nil
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}
