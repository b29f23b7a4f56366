package boltdb

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// firstChunk positions c on the chunk that holds (or would hold) time key
// from: the chunk starting at or before it, else the first chunk. A nil
// from gives the first chunk.
func firstChunk(c *bolt.Cursor, from []byte) ([]byte, []byte) {
	if from == nil {
		return c.First()
	}
	k, v := c.Seek(from)
	if k != nil && bytes.Equal(k, from) {
		return k, v
	}
	if pk, pv := c.Prev(); pk != nil {
		return pk, pv
	}
	return c.First()
}

// insertSeries stores readings of one series (sorted by time) into its
// bucket of chunks and reports, per reading, whether it was new. Each
// chunk touched is decoded, merged and written back once per call, so a
// batch costs one rewrite per series and chunk, not one per reading.
//
// A chunk that does not decode is handed to quarantine (which keeps its
// bytes aside) and the readings are written as if it were not there: a
// corrupt chunk, failing the same way on every retry, would otherwise
// stop every commit for good.
func insertSeries(hb, sums *bolt.Bucket, host, sensor string, rs []schema.Reading, quarantine func(key, value []byte, err error) error) ([]bool, error) {
	inserted := make([]bool, len(rs))
	for pos := 0; pos < len(rs); {
		c := hb.Cursor()
		k, v := firstChunk(c, timeKey(rs[pos].Time))
		var old []schema.Reading
		var oldKey, nextKey []byte
		if k != nil {
			oldKey = slices.Clone(k)
			var err error
			if nk, _ := c.Next(); nk != nil {
				nextKey = slices.Clone(nk)
			}
			if old, err = chunk.Decode(host, sensor, v); err != nil {
				if err := quarantine(oldKey, slices.Clone(v), err); err != nil {
					return nil, err
				}
				if err := deleteChunk(hb, sums, oldKey); err != nil {
					return nil, err
				}
				old, oldKey = nil, nil
			}
		}
		end := pos
		for end < len(rs) && (nextKey == nil || bytes.Compare(timeKey(rs[end].Time), nextKey) < 0) {
			end++
		}
		merged, ins := chunk.Merge(old, rs[pos:end])
		copy(inserted[pos:end], ins)
		pos = end
		if len(merged) == len(old) {
			continue // all duplicates: nothing to write
		}
		if oldKey != nil {
			if err := deleteChunk(hb, sums, oldKey); err != nil {
				return nil, err
			}
		}
		if err := putChunks(hb, sums, sensor, merged); err != nil {
			return nil, err
		}
	}
	return inserted, nil
}

// putChunks writes readings as chunks of at most chunk.MaxReadings, each
// under the time key of its first reading, and each chunk's summary under
// the same key in sums (when not nil; see summary.go).
func putChunks(hb, sums *bolt.Bucket, sensor string, rs []schema.Reading) error {
	for len(rs) > 0 {
		n := min(len(rs), chunk.MaxReadings)
		key, enc := timeKey(rs[0].Time), chunk.Encode(sensor, rs[:n])
		if err := hb.Put(key, enc); err != nil {
			return err
		}
		if err := putSummary(sums, key, rs[:n], enc); err != nil {
			return err
		}
		rs = rs[n:]
	}
	return nil
}

// deleteChunk removes the chunk at key and its summary.
func deleteChunk(hb, sums *bolt.Bucket, key []byte) error {
	if err := hb.Delete(key); err != nil {
		return err
	}
	if sums != nil {
		return sums.Delete(key)
	}
	return nil
}

// scanSeries calls fn for the readings of one series in [since, until)
// (nil keys: open ends), in time order.
func scanSeries(hb *bolt.Bucket, host, sensor string, since, until []byte, fn func(*schema.Reading) error) error {
	c := hb.Cursor()
	for k, v := firstChunk(c, since); k != nil; k, v = c.Next() {
		if until != nil && bytes.Compare(k, until) >= 0 {
			return nil
		}
		if err := scanChunk(k, v, host, sensor, since, until, fn); err != nil {
			if errors.Is(err, errChunkEnd) {
				return nil
			}
			return err
		}
	}
	return nil
}

// errChunkEnd says a chunk reached until: the series has nothing more in
// the range.
var errChunkEnd = errors.New("end of range")

// scanChunk calls fn for the readings of chunk v (at key k) in
// [since, until), and returns errChunkEnd once one reaches until.
func scanChunk(k, v []byte, host, sensor string, since, until []byte, fn func(*schema.Reading) error) error {
	rs, err := chunk.Decode(host, sensor, v)
	if err != nil {
		return fmt.Errorf("chunk %s/%s at %s: %w", sensor, host, keyTime(k), err)
	}
	for i := range rs {
		tk := timeKey(rs[i].Time)
		if since != nil && bytes.Compare(tk, since) < 0 {
			continue
		}
		if until != nil && bytes.Compare(tk, until) >= 0 {
			return errChunkEnd
		}
		if err := fn(&rs[i]); err != nil {
			return err
		}
	}
	return nil
}

// deleteSeries removes the readings of one series in [since, until) and
// returns how many it removed.
func deleteSeries(hb, sums *bolt.Bucket, host, sensor string, since, until []byte) (int, error) {
	type rewrite struct {
		key  []byte
		keep []schema.Reading
	}
	var rewrites []rewrite
	removed := 0
	c := hb.Cursor()
	for k, v := firstChunk(c, since); k != nil; k, v = c.Next() {
		if until != nil && bytes.Compare(k, until) >= 0 {
			break
		}
		rs, err := chunk.Decode(host, sensor, v)
		if err != nil {
			return 0, fmt.Errorf("chunk %s/%s at %s: %w", sensor, host, keyTime(k), err)
		}
		keep := rs[:0:0]
		for _, r := range rs {
			tk := timeKey(r.Time)
			if (since == nil || bytes.Compare(tk, since) >= 0) && (until == nil || bytes.Compare(tk, until) < 0) {
				continue
			}
			keep = append(keep, r)
		}
		if len(keep) != len(rs) {
			removed += len(rs) - len(keep)
			rewrites = append(rewrites, rewrite{slices.Clone(k), keep})
		}
	}
	for _, rw := range rewrites {
		if err := deleteChunk(hb, sums, rw.key); err != nil {
			return 0, err
		}
		if err := putChunks(hb, sums, sensor, rw.keep); err != nil {
			return 0, err
		}
	}
	return removed, nil
}
