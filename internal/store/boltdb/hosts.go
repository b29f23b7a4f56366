package boltdb

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// hostRecord is what the store keeps about a host besides its readings
// (store.HostRecord, encoded by its AppendJSON).
type hostRecord = store.HostRecord

func getHost(b *bolt.Bucket, host string) (*hostRecord, error) {
	rec := &hostRecord{}
	if v := b.Get([]byte(host)); v != nil {
		if err := json.Unmarshal(v, rec); err != nil {
			return nil, fmt.Errorf("host %s: %w", host, err)
		}
	}
	if rec.Sensors == nil {
		rec.Sensors = make(map[string]*store.SensorStats)
	}
	return rec, nil
}

// Hosts returns every host the store has seen, sorted by name.
func (s *Store) Hosts() ([]store.Host, error) {
	var out []store.Host
	add := func(name string, v []byte, committed uint64) error {
		var rec hostRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
		if rec.Sensors == nil {
			rec.Sensors = map[string]*store.SensorStats{}
		}
		h := rec.Host(name)
		if rec.MaxSeq > rec.Watermark {
			h.Awaited = rec.MaxSeq - rec.Watermark - committed
		}
		out = append(out, h)
		return nil
	}
	// The file and the overlay of deferred commits as of one moment.
	s.headMu.RLock()
	defer s.headMu.RUnlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		pending := tx.Bucket(bucketPending)
		hosts := tx.Bucket(bucketHosts)
		err := hosts.ForEach(func(k, v []byte) error {
			if _, deferred := s.overlay[string(k)]; deferred {
				return nil
			}
			committed := uint64(0)
			if pb := pending.Bucket(k); pb != nil {
				committed = uint64(pb.Stats().KeyN)
			}
			return add(string(k), v, committed)
		})
		if err != nil {
			return err
		}
		for name, o := range s.overlay {
			if err := add(name, o.record, o.pendingSeqs); err != nil {
				return err
			}
		}
		return nil
	})
	if len(s.overlay) > 0 {
		slices.SortFunc(out, func(a, b store.Host) int { return strings.Compare(a.Name, b.Name) })
	}
	return out, err
}

// pending is a host's pending seqs (store.Pending): the keys of its bucket
// under the pending bucket, made when the first seq is added.
type pending struct {
	parent *bolt.Bucket
	name   []byte
}

func (p *pending) Min() (uint64, bool, error) {
	b := p.parent.Bucket(p.name)
	if b == nil {
		return 0, false, nil
	}
	k, _ := b.Cursor().First()
	if k == nil {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(k), true, nil
}

func (p *pending) DeleteMin() error {
	b := p.parent.Bucket(p.name)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	if k, _ := c.First(); k == nil {
		return nil
	}
	return c.Delete()
}

func (p *pending) Add(seq uint64) error {
	b, err := p.parent.CreateBucketIfNotExists(p.name)
	if err != nil {
		return err
	}
	return b.Put(seqKey(seq), nil)
}

// RestoreHost replaces a host's record; see store.HostRestorer.
func (s *Store) RestoreHost(name string, rec store.HostRecord) error {
	if err := schema.ValidateName(name); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	err := s.update(func(tx *bolt.Tx, ht *headTx) error {
		ht.quarantine = quarantineTo(tx, nil)
		if rec.Sensors == nil {
			rec.Sensors = map[string]*store.SensorStats{}
		}
		return ht.putHost(tx.Bucket(bucketHosts), name, &rec)
	})
	if err != nil {
		return fmt.Errorf("restore host %s: %w", name, err)
	}
	return nil
}

// SetHostMeta replaces how host is shown; see store.Store.
func (s *Store) SetHostMeta(host string, m store.HostMeta) error {
	if err := schema.ValidateName(host); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	if err := m.Validate(); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx, ht *headTx) error {
		ht.quarantine = quarantineTo(tx, nil) // the commit may seal old heads
		b := tx.Bucket(bucketHosts)
		rec, err := ht.host(b, host)
		if err != nil {
			return err
		}
		rec.Meta = m
		return ht.putHost(b, host, rec)
	})
	if err != nil {
		return fmt.Errorf("set host %s: %w", host, err)
	}
	return nil
}
