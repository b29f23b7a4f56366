package boltdb

import (
	"fmt"

	"github.com/apd-telemetry/apd/internal/store"
	bolt "go.etcd.io/bbolt"
)

// Delete removes the readings q selects (Limit is ignored) and returns how
// many it removed. Deleting all of a host's readings, with no time bounds
// and no sensor, also forgets the host itself (its state, counts and seq
// watermark): a household must be able to remove its data. The file does
// not shrink until Compact.
func (s *Store) Delete(q store.Query) (int, error) {
	removed := 0
	defer func() {
		// A series deleted may have lost its bucket: its next reading
		// must make it again in a commit readers see (deferrable).
		s.headMu.Lock()
		clear(s.head.sealedLast)
		s.headMu.Unlock()
	}()
	err := s.update(func(tx *bolt.Tx, ht *headTx) error {
		ht.quarantine = quarantineTo(tx, nil)
		readings, hostsB := tx.Bucket(bucketReadings), tx.Bucket(bucketHosts)
		since, until := queryKeys(q)
		perHost := map[string]map[string]uint64{}
		err := eachSeries(tx, q, func(sb, hb *bolt.Bucket, sensor, host []byte) error {
			// The head first: the readings to delete may be there.
			if err := ht.sealSeries(seriesKey{string(sensor), string(host)}); err != nil {
				return err
			}
			sums, err := summaryBucket(tx, string(sensor), string(host))
			if err != nil {
				return err
			}
			n, err := deleteSeries(hb, sums, string(host), string(sensor), since, until)
			if err != nil || n == 0 {
				return err
			}
			removed += n
			if perHost[string(host)] == nil {
				perHost[string(host)] = map[string]uint64{}
			}
			perHost[string(host)][string(sensor)] += uint64(n)
			if k, _ := hb.Cursor().First(); k == nil {
				if err := deleteSummaries(tx, string(sensor), string(host)); err != nil {
					return err
				}
				return sb.DeleteBucket(host)
			}
			return nil
		}, func(sb *bolt.Bucket, sensor []byte) error {
			if k, _ := sb.Cursor().First(); k == nil {
				return readings.DeleteBucket(sensor)
			}
			return nil
		})
		if err != nil {
			return err
		}
		wholeHosts := q.Sensor == "" && q.Since.IsZero() && q.Until.IsZero() && len(q.Hosts) > 0
		for host, counts := range perHost {
			if wholeHosts {
				continue
			}
			rec, err := ht.host(hostsB, host)
			if err != nil {
				return err
			}
			for sensor, n := range counts {
				if st := rec.Sensors[sensor]; st != nil {
					st.Count -= min(st.Count, n)
					if st.Count == 0 {
						delete(rec.Sensors, sensor)
					}
				}
			}
			if err := ht.putHost(hostsB, host, rec); err != nil {
				return err
			}
		}
		if wholeHosts {
			for _, h := range q.Hosts {
				if err := ht.deleteHost(hostsB, h); err != nil {
					return err
				}
				if tx.Bucket(bucketPending).Bucket([]byte(h)) != nil {
					if err := tx.Bucket(bucketPending).DeleteBucket([]byte(h)); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	return removed, nil
}
