package boltdb

import (
	"encoding/json"

	"github.com/apd-telemetry/apd/internal/store"
	bolt "go.etcd.io/bbolt"
)

// DeadLetters returns up to limit dead letters, newest first.
func (s *Store) DeadLetters(limit int) ([]store.DeadLetter, error) {
	var out []store.DeadLetter
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDead).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var d store.DeadLetter
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// deadCost is what one stored dead letter counts against the byte bound,
// so that the bound holds for the file and not only for the data: its
// key, value and bbolt's element header, doubled — pages are partly empty
// (a page holds at least two elements: a 5 KB dead letter and its
// neighbour take three 4 KB pages), and bbolt writes each changed page
// anew before it frees the old one, so under a flood about half as much
// again is in flight.
func deadCost(v []byte) int64 { return (int64(len(v)) + 8 + 16) * 2 }

// putDeadLetters stores dead letters, then drops the oldest until the
// bounds hold, keeping count in the meta bucket.
func putDeadLetters(tx *bolt.Tx, limits store.Limits, lists ...[]store.DeadLetter) error {
	meta, bucket := tx.Bucket(bucketMeta), tx.Bucket(bucketDead)
	bucket.FillPercent = 0.95 // keys only ever grow: fill pages
	count, size, dropped := metaUint(meta, keyDeadCount), metaUint(meta, keyDeadBytes), metaUint(meta, keyDeadDropped)
	kept, first, err := store.EncodeDeadLetters(limits.MaxDeadBytes, deadCost, lists...)
	if err != nil || len(kept)+first == 0 {
		return err
	}
	dropped += uint64(first)
	for _, v := range kept {
		n, _ := bucket.NextSequence()
		if err := bucket.Put(seqKey(n), v); err != nil {
			return err
		}
		count++
		size += uint64(deadCost(v))
	}
	c := bucket.Cursor()
	for k, v := c.First(); k != nil && (count > uint64(limits.MaxDeadLetters) || size > uint64(limits.MaxDeadBytes)); k, v = c.First() {
		size -= min(size, uint64(deadCost(v)))
		count--
		dropped++
		if err := c.Delete(); err != nil {
			return err
		}
	}
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{keyDeadCount, count}, {keyDeadBytes, size}, {keyDeadDropped, dropped}} {
		if err := putMetaUint(meta, kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// countDeadLetters fills in the dead-letter accounting of a file written
// before it was kept.
func countDeadLetters(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keyDeadCount) != nil {
		return nil
	}
	var count, size uint64
	_ = tx.Bucket(bucketDead).ForEach(func(_, v []byte) error {
		count++
		size += uint64(deadCost(v))
		return nil
	})
	if err := putMetaUint(meta, keyDeadCount, count); err != nil {
		return err
	}
	return putMetaUint(meta, keyDeadBytes, size)
}

// DeadLetterStats returns the dead-letter accounting.
func (s *Store) DeadLetterStats() (store.DeadLetterStats, error) {
	var st store.DeadLetterStats
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st = store.DeadLetterStats{Count: metaUint(meta, keyDeadCount), Bytes: metaUint(meta, keyDeadBytes), Dropped: metaUint(meta, keyDeadDropped)}
		return nil
	})
	return st, err
}
