package boltdb

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

func checkVersion(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, nil
	}
	var v int
	if _, err := fmt.Sscan(string(meta.Get(keySchema)), &v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if v > SchemaVersion {
		return v, fmt.Errorf("%w: file has %d, this apd knows up to %d", ErrNewerSchema, v, SchemaVersion)
	}
	return v, nil
}

// migrations[i] moves a database from version i to i+1.
var migrations = []func(*bolt.Tx) error{
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketReadings, bucketHosts, bucketPending, bucketDead} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	migrateToChunks,
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLog, bucketHeadMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
}

// migrateToChunks rewrites version 1's one-record-per-reading layout into
// chunks, series by series, a chunk's worth of records at a time.
func migrateToChunks(tx *bolt.Tx) error {
	readings := tx.Bucket(bucketReadings)
	var sensors [][]byte
	_ = readings.ForEachBucket(func(k []byte) error { sensors = append(sensors, slices.Clone(k)); return nil })
	for _, sensor := range sensors {
		sb := readings.Bucket(sensor)
		var hosts [][]byte
		_ = sb.ForEachBucket(func(k []byte) error { hosts = append(hosts, slices.Clone(k)); return nil })
		for _, host := range hosts {
			if err := migrateSeries(sb.Bucket(host), string(host), string(sensor)); err != nil {
				return fmt.Errorf("%s/%s: %w", sensor, host, err)
			}
		}
	}
	return nil
}

func migrateSeries(hb *bolt.Bucket, host, sensor string) error {
	c := hb.Cursor()
	for k, v := c.First(); k != nil; {
		var group []schema.Reading
		var keys [][]byte
		for ; k != nil && len(group) < chunk.MaxReadings; k, v = c.Next() {
			r, err := schema.DecodeStored(host, sensor, keyTime(k), v)
			if err != nil {
				return fmt.Errorf("record at %s: %w", keyTime(k), err)
			}
			group = append(group, r)
			keys = append(keys, slices.Clone(k))
		}
		for _, key := range keys {
			if err := hb.Delete(key); err != nil {
				return err
			}
		}
		if err := putChunks(hb, nil, sensor, group); err != nil { // summaries come with the next rewrite
			return err
		}
		// The chunk sits under its first record's key; go on after its last.
		k, v = c.Seek(keys[len(keys)-1])
		if k != nil && bytes.Equal(k, keys[len(keys)-1]) {
			k, v = c.Next()
		}
	}
	return nil
}

func migrate(tx *bolt.Tx) error {
	v, err := checkVersion(tx)
	if err != nil {
		return err
	}
	for ; v < SchemaVersion; v++ {
		if err := migrations[v](tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
		}
		if err := tx.Bucket(bucketMeta).Put(keySchema, fmt.Appendf(nil, "%d", v+1)); err != nil {
			return err
		}
	}
	return nil
}
