package boltdb

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// hostRecord is what the store keeps about a host besides its readings.
type hostRecord struct {
	State     string    `json:"state,omitempty"`
	StateTime time.Time `json:"state_time,omitzero"`
	Version   string    `json:"version,omitempty"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	store.SeqState
	Sensors map[string]*store.SensorStats `json:"sensors,omitempty"`
	Meta    store.HostMeta                `json:"meta,omitzero"`
}

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
	err := s.db.View(func(tx *bolt.Tx) error {
		pending := tx.Bucket(bucketPending)
		return tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
			var rec hostRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("host %s: %w", k, err)
			}
			if rec.Sensors == nil {
				rec.Sensors = map[string]*store.SensorStats{}
			}
			out = append(out, store.Host{Name: string(k), State: rec.State, StateTime: rec.StateTime,
				Version: rec.Version, LastSeen: rec.LastSeen, Watermark: rec.Watermark, MaxSeq: rec.MaxSeq,
				Lost: rec.Lost, Spool: rec.Spool, Sensors: rec.Sensors, HostMeta: rec.Meta})
			if rec.MaxSeq > rec.Watermark {
				committed := uint64(0)
				if pb := pending.Bucket(k); pb != nil {
					committed = uint64(pb.Stats().KeyN)
				}
				out[len(out)-1].Awaited = rec.MaxSeq - rec.Watermark - committed
			}
			return nil
		})
	})
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

// appendJSON appends h as encoding/json would encode it (the test checks
// they agree): that took a third of a fleet commit's time, most of it
// reflection.
func (h *hostRecord) appendJSON(b []byte) ([]byte, error) {
	b = append(b, '{')
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	var err error
	if h.State != "" {
		field("state")
		b = appendJSONString(b, h.State)
	}
	if !h.StateTime.IsZero() {
		field("state_time")
		if b, err = appendJSONTime(b, h.StateTime); err != nil {
			return nil, err
		}
	}
	if h.Version != "" {
		field("version")
		b = appendJSONString(b, h.Version)
	}
	if !h.LastSeen.IsZero() {
		field("last_seen")
		if b, err = appendJSONTime(b, h.LastSeen); err != nil {
			return nil, err
		}
	}
	field("watermark")
	b = strconv.AppendUint(b, h.Watermark, 10)
	if h.HasMark {
		field("has_mark")
		b = append(b, "true"...)
	}
	if h.MaxSeq != 0 {
		field("max_seq")
		b = strconv.AppendUint(b, h.MaxSeq, 10)
	}
	if h.Lost != 0 {
		field("lost")
		b = strconv.AppendUint(b, h.Lost, 10)
	}
	if h.Spool != "" {
		field("spool")
		b = appendJSONString(b, h.Spool)
	}
	if len(h.Sensors) > 0 {
		field("sensors")
		names := make([]string, 0, len(h.Sensors))
		for name := range h.Sensors {
			names = append(names, name)
		}
		slices.Sort(names)
		b = append(b, '{')
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, name)
			b = append(b, ':')
			st := h.Sensors[name]
			if st == nil {
				b = append(b, "null"...)
				continue
			}
			b = append(b, `{"count":`...)
			b = strconv.AppendUint(b, st.Count, 10)
			b = append(b, `,"last":`...)
			if b, err = appendJSONTime(b, st.Last); err != nil {
				return nil, err
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if !h.Meta.IsZero() {
		// Set by hand, rarely: encoding/json is fast enough.
		field("meta")
		m, err := json.Marshal(h.Meta)
		if err != nil {
			return nil, err
		}
		b = append(b, m...)
	}
	return append(b, '}'), nil
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

// appendJSONString appends s quoted; anything encoding/json would escape
// goes through it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		q, err := json.Marshal(t) // its error, word for word
		return append(b, q...), err
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}
