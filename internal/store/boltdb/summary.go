package boltdb

import (
	"bytes"
	"errors"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// summaries/<sensor>/<host>/<chunk key>: each chunk's count and sum of
// numeric readings per store.SummaryPeriod (chunk.Summary), written with
// the chunk and deleted with it. A summary names its chunk by checksum,
// so one left behind by any path that rewrote the chunk without it is
// seen as stale and not used; chunks written before summaries existed
// simply have none and are read reading by reading, until a rewrite.
var bucketSummaries = []byte("summaries")

// summaryBucket returns the summaries of a series, made if missing in a
// writable transaction; nil in a read-only one without them.
func summaryBucket(tx *bolt.Tx, sensor, host string) (*bolt.Bucket, error) {
	root := tx.Bucket(bucketSummaries)
	if !tx.Writable() {
		if root == nil {
			return nil, nil
		}
		if sb := root.Bucket([]byte(sensor)); sb != nil {
			return sb.Bucket([]byte(host)), nil
		}
		return nil, nil
	}
	root, err := tx.CreateBucketIfNotExists(bucketSummaries)
	if err != nil {
		return nil, err
	}
	sb, err := root.CreateBucketIfNotExists([]byte(sensor))
	if err != nil {
		return nil, err
	}
	hb, err := sb.CreateBucketIfNotExists([]byte(host))
	if err != nil {
		return nil, err
	}
	hb.FillPercent = 0.9 // written in time order, like the chunks
	return hb, nil
}

// deleteSummaries removes a series' summaries (its chunks are gone).
func deleteSummaries(tx *bolt.Tx, sensor, host string) error {
	root := tx.Bucket(bucketSummaries)
	if root == nil {
		return nil
	}
	sb := root.Bucket([]byte(sensor))
	if sb == nil || sb.Bucket([]byte(host)) == nil {
		return nil
	}
	if err := sb.DeleteBucket([]byte(host)); err != nil {
		return err
	}
	if k, _ := sb.Cursor().First(); k == nil {
		return root.DeleteBucket([]byte(sensor))
	}
	return nil
}

// putSummary writes the summary of chunk enc (of readings rs) at key, or
// removes an old one when the readings cannot be summarised.
func putSummary(sums *bolt.Bucket, key []byte, rs []schema.Reading, enc []byte) error {
	if sums == nil {
		return nil
	}
	s, ok := chunk.Summarize(rs, enc, store.SummaryPeriod)
	if !ok {
		return sums.Delete(key)
	}
	return sums.Put(key, s.Append(nil))
}

// usableSummary reads into s the summary of the chunk v at key k and
// reports whether it matches the chunk and the chunk lies wholly in
// [since, until).
func usableSummary(sums *bolt.Bucket, k, v []byte, since, until []byte, s *chunk.Summary) bool {
	if sums == nil {
		return false
	}
	b := sums.Get(k)
	if b == nil || s.Decode(b) != nil || s.Period != store.SummaryPeriod || s.Check != chunk.Checksum(v) {
		return false
	}
	if since != nil && bytes.Compare(timeKey(time.UnixMilli(s.First)), since) < 0 {
		return false
	}
	return until == nil || bytes.Compare(timeKey(time.UnixMilli(s.Last)), until) < 0
}

// ScanSummarized is Scan, with the sums of the chunks that lie wholly in
// the range given instead of their readings; see store.Summarizer.
func (s *Store) ScanSummarized(q store.Query, fn func(*store.Part) error) error {
	since, until := queryKeys(q)
	// A page holds readings and sums apart, and their order: a reading
	// is ten times a sum's size, and sums are most of a long scan.
	type item struct {
		raw bool
		i   int32
	}
	page := make([]item, 0, scanPage)
	var readings []schema.Reading
	var sumsOf []store.PeriodSum
	var sum chunk.Summary
	return s.pages(q, func(tx *bolt.Tx, hb *bolt.Bucket, sensor, host, from []byte, stop func(last []byte) error) error {
		add := func(r *schema.Reading) error {
			page = append(page, item{raw: true, i: int32(len(readings))})
			readings = append(readings, *r)
			if len(page) >= scanPage {
				return stop(timeKey(r.Time))
			}
			return nil
		}
		hostName, sensorName := string(host), string(sensor)
		sums, err := summaryBucket(tx, sensorName, hostName)
		if err != nil {
			return err
		}
		c := hb.Cursor()
		for k, v := firstChunk(c, from); k != nil; k, v = c.Next() {
			if until != nil && bytes.Compare(k, until) >= 0 {
				break
			}
			if usableSummary(sums, k, v, from, until, &sum) {
				for _, row := range sum.Rows {
					page = append(page, item{i: int32(len(sumsOf))})
					sumsOf = append(sumsOf, store.PeriodSum{Host: hostName, Sensor: sensorName,
						Start: time.UnixMilli(row.Start).UTC(), Count: row.Count, Sum: row.Sum, Unit: sum.Unit, Title: sum.Title})
				}
				if len(page) >= scanPage {
					return stop(timeKey(time.UnixMilli(sum.Last)))
				}
				continue
			}
			if err := scanChunk(k, v, hostName, sensorName, from, until, add); err != nil {
				if errors.Is(err, errChunkEnd) {
					break
				}
				return err
			}
		}
		return scanHead(s.head.series[seriesKey{sensorName, hostName}], hostName, sensorName, from, until, add)
	}, func() (bool, error) {
		defer func() { page, readings, sumsOf = page[:0], readings[:0], sumsOf[:0] }()
		var part store.Part
		for _, it := range page {
			part = store.Part{}
			if it.raw {
				part.Reading = &readings[it.i]
			} else {
				part.Sum = &sumsOf[it.i]
			}
			if err := fn(&part); err != nil {
				return true, err
			}
		}
		return false, nil
	}, since)
}
