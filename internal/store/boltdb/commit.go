package boltdb

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// Commit writes a batch in one transaction: readings not already stored
// under (host, sensor, ts) are inserted, duplicates are counted and left as
// they are; status updates and dead letters are recorded; each host's seq
// watermark advances over the contiguous run of committed seqs. Either all
// of it is durable when Commit returns nil, or none of it is.
func (s *Store) Commit(b *store.Batch) (store.CommitResult, error) {
	res := store.CommitResult{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		res = store.CommitResult{}
		return commit(tx, b, s.limits, s.now(), &res)
	})
	return res, err
}

func commit(tx *bolt.Tx, b *store.Batch, limits store.Limits, now time.Time, res *store.CommitResult) error {
	readings := tx.Bucket(bucketReadings)
	hostsB := tx.Bucket(bucketHosts)
	pendingB := tx.Bucket(bucketPending)
	hosts := map[string]*hostRecord{}
	host := func(name string) (*hostRecord, error) {
		if h, ok := hosts[name]; ok {
			return h, nil
		}
		h, err := getHost(hostsB, name)
		hosts[name] = h
		return h, err
	}
	// Statuses first: a new spool restarts its host's seqs before this
	// batch's readings (sent after the status) are counted.
	floors := map[string]uint64{}
	restarted := map[string]bool{}
	for _, st := range b.Statuses {
		h, err := host(st.Host)
		if err != nil {
			return err
		}
		if sp := st.Status.Spool; sp != "" {
			if h.Spool != "" && h.Spool != sp {
				h.Restart(sp)
				if pendingB.Bucket([]byte(st.Host)) != nil {
					if err := pendingB.DeleteBucket([]byte(st.Host)); err != nil {
						return err
					}
				}
				restarted[st.Host] = true
				delete(floors, st.Host)
			}
			h.Spool = sp
		}
		if st.Status.FirstSeq > 0 {
			floors[st.Host] = max(floors[st.Host], st.Status.FirstSeq-1)
		}
		t := st.Status.Time
		if t.IsZero() {
			t = now.UTC().Truncate(time.Millisecond)
		}
		h.State, h.StateTime = st.Status.State, t
		if st.Status.Version != "" {
			h.Version = st.Status.Version
		}
	}
	kept, dead, err := refuseSeqJumps(b, host, now, res)
	if err != nil {
		return err
	}
	quarantine := func(sensor, host string) func(key, value []byte, err error) error {
		return func(key, value []byte, cerr error) error {
			qb, err := tx.CreateBucketIfNotExists(bucketQuarantine)
			if err == nil {
				qb, err = qb.CreateBucketIfNotExists([]byte(sensor))
			}
			if err == nil {
				qb, err = qb.CreateBucketIfNotExists([]byte(host))
			}
			if err != nil {
				return err
			}
			res.Quarantined = append(res.Quarantined, fmt.Sprintf("chunk %s/%s at %s: %v", sensor, host, schema.FormatTime(keyTime(key)), cerr))
			return qb.Put(key, value)
		}
	}
	if err := storeReadings(readings, kept, host, quarantine, res); err != nil {
		return err
	}
	changes := map[string]*store.SeqChange{}
	change := func(name string) *store.SeqChange {
		if changes[name] == nil {
			changes[name] = &store.SeqChange{}
		}
		return changes[name]
	}
	for i := range kept {
		if r := &kept[i]; !b.Imported && r.Seq != 0 {
			ch := change(r.Host)
			ch.Arrived = append(ch.Arrived, r.Seq)
		}
	}
	for name, floor := range floors {
		ch := change(name)
		ch.Floor, ch.HasFloor = floor, true
	}
	for name := range restarted {
		change(name).Restarted = true
	}
	for name, ch := range changes {
		h, err := host(name)
		if err != nil {
			return err
		}
		ack, lost, err := store.Advance(&h.SeqState, *ch, &pending{parent: pendingB, name: []byte(name)})
		if err != nil {
			return err
		}
		res.Lost += lost
		if ack {
			if res.Acks == nil {
				res.Acks = make(map[string]store.HostAck)
			}
			res.Acks[name] = store.HostAck{Seq: h.Watermark, Spool: h.Spool}
		}
	}
	names := make([]string, 0, len(hosts))
	for name := range hosts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v, err := json.Marshal(hosts[name])
		if err != nil {
			return err
		}
		if err := hostsB.Put([]byte(name), v); err != nil {
			return err
		}
	}
	return putDeadLetters(tx, limits, b.DeadLetters, dead)
}

// refuseSeqJumps returns the batch's readings without those whose seq is
// more than store.MaxSeqJump above their host's watermark, and dead letters for
// those, whose indexes it records in res.Refused. The batch itself is not
// changed: a failed commit is retried with it.
func refuseSeqJumps(b *store.Batch, host func(string) (*hostRecord, error), now time.Time, res *store.CommitResult) ([]schema.Reading, []store.DeadLetter, error) {
	if b.Imported {
		return b.Readings, nil, nil
	}
	var dead []store.DeadLetter
	for i := range b.Readings {
		r := &b.Readings[i]
		if r.Seq == 0 {
			continue
		}
		h, err := host(r.Host)
		if err != nil {
			return nil, nil, err
		}
		if !h.TooFarAhead(r.Seq) {
			continue
		}
		res.Refused = append(res.Refused, i)
		dead = append(dead, store.DeadLetter{Received: now.UTC(), Topic: b.Topics.Reading(r.Host, r.Sensor),
			Reason:  fmt.Sprintf("%s: seq %d is more than %d above the host's watermark %d", store.ReasonSeqOutOfRange, r.Seq, store.MaxSeqJump, h.Watermark),
			Payload: r.AppendJSON(nil, schema.WithIdentity)})
	}
	return store.WithoutRefused(b.Readings, res.Refused), dead, nil
}

// storeReadings inserts the batch's readings, series by series, counting
// what is new and what was already stored, and updating each host's
// per-sensor statistics.
func storeReadings(readings *bolt.Bucket, batch []schema.Reading, host func(string) (*hostRecord, error),
	quarantine func(sensor, host string) func(key, value []byte, err error) error, res *store.CommitResult) error {
	type series struct{ sensor, host string }
	groups := map[series][]schema.Reading{}
	var order []series
	for _, r := range batch {
		k := series{r.Sensor, r.Host}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		rs := groups[k]
		chunk.SortByTime(rs)
		sb, err := readings.CreateBucketIfNotExists([]byte(k.sensor))
		if err != nil {
			return fmt.Errorf("sensor bucket %s: %w", k.sensor, err)
		}
		hb, err := sb.CreateBucketIfNotExists([]byte(k.host))
		if err != nil {
			return fmt.Errorf("host bucket %s/%s: %w", k.sensor, k.host, err)
		}
		hb.FillPercent = 0.9 // chunks are appended in time order: pack pages fuller
		inserted, err := insertSeries(hb, k.host, k.sensor, rs, quarantine(k.sensor, k.host))
		if err != nil {
			return err
		}
		h, err := host(k.host)
		if err != nil {
			return err
		}
		for i, ins := range inserted {
			if !ins {
				res.Duplicates++
				continue
			}
			res.Stored++
			r := &rs[i]
			st := h.Sensors[r.Sensor]
			if st == nil {
				st = &store.SensorStats{}
				h.Sensors[r.Sensor] = st
			}
			st.Count++
			if r.Time.After(st.Last) {
				st.Last = r.Time
			}
			if r.Time.After(h.LastSeen) {
				h.LastSeen = r.Time
			}
		}
	}
	return nil
}
