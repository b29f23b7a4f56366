package publisher

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	spoolMeta   = []byte("meta")
	spoolOutbox = []byte("outbox")
	keyNextSeq  = []byte("next_seq")
	keyAcked    = []byte("acked")
	keyBytes    = []byte("bytes")
	keyDropped  = []byte("dropped")
	keySpoolID  = []byte("id")
)

// DefaultSpoolMaxBytes is the default bound of the spool's contents.
const DefaultSpoolMaxBytes = 64 << 20

// Spool is the device's outbox: every reading is written to it, with its
// seq, before it is published, and leaves it only when the aggregator's
// acknowledgement covers its seq. It also keeps the host's seq counter, so
// seq continues across restarts. Its methods are safe for concurrent use.
type Spool struct {
	db       *bolt.DB
	maxBytes int64
	appends  atomic.Uint64
	id       string
}

// Appends counts the calls of Append since open: each is one transaction
// and one fsync, the writes that wear a Pi's SD card.
func (s *Spool) Appends() uint64 { return s.appends.Load() }

// Spooled is a reading waiting in the spool, ready to publish.
type Spooled struct {
	Seq     uint64
	Sensor  string
	Payload []byte
}

// OpenSpool opens or creates the spool file at path. maxBytes bounds the
// size of the readings it holds (0 means DefaultSpoolMaxBytes): past it,
// Append drops the oldest.
func OpenSpool(path string, maxBytes int64) (*Spool, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultSpoolMaxBytes
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create spool directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err == berrors.ErrTimeout {
		return nil, fmt.Errorf("open spool %s: in use by another apd-publish", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	var id string
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{spoolMeta, spoolOutbox} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// The spool's identity: made once, with the file (or on the first
		// open of a spool from before identities).
		meta := tx.Bucket(spoolMeta)
		if v := meta.Get(keySpoolID); v != nil {
			id = string(v)
			return nil
		}
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		id = hex.EncodeToString(b[:])
		return meta.Put(keySpoolID, []byte(id))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	return &Spool{db: db, maxBytes: maxBytes, id: id}, nil
}

// ID returns the spool's identity, a random id made when the spool was
// created: the aggregator sees a new one when the device's seqs start
// again.
func (s *Spool) ID() string { return s.id }

// Close closes the spool file.
func (s *Spool) Close() error { return s.db.Close() }

func getUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bolt.Bucket, k []byte, n uint64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], n)
	return b.Put(k, v[:])
}

// Append gives each reading the next seq of this host, encodes it and
// stores it, all in one transaction: when Append returns nil the readings
// and the counter are on disk. It returns what to publish and how many of
// the oldest readings it dropped to stay within the size bound.
func (s *Spool) Append(readings []schema.Reading) ([]Spooled, int, error) {
	out := make([]Spooled, 0, len(readings))
	dropped := 0
	s.appends.Add(1)
	err := s.db.Update(func(tx *bolt.Tx) error {
		out, dropped = out[:0], 0
		meta, box := tx.Bucket(spoolMeta), tx.Bucket(spoolOutbox)
		size := int64(getUint(meta, keyBytes))
		seq := getUint(meta, keyNextSeq)
		if seq == 0 {
			seq = 1
		}
		for i := range readings {
			r := readings[i]
			r.Seq = seq
			payload := r.AppendJSON(nil, schema.WithIdentity)
			val := make([]byte, 0, len(r.Sensor)+1+len(payload))
			val = append(append(append(val, r.Sensor...), '\n'), payload...)
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], seq)
			if err := box.Put(k[:], val); err != nil {
				return err
			}
			size += int64(len(val))
			out = append(out, Spooled{Seq: seq, Sensor: r.Sensor, Payload: payload})
			seq++
		}
		c := box.Cursor()
		for k, v := c.First(); k != nil && size > s.maxBytes; k, v = c.First() {
			size -= int64(len(v))
			if err := c.Delete(); err != nil {
				return err
			}
			dropped++
		}
		if err := putUint(meta, keyDropped, getUint(meta, keyDropped)+uint64(dropped)); err != nil {
			return err
		}
		if err := putUint(meta, keyBytes, uint64(size)); err != nil {
			return err
		}
		return putUint(meta, keyNextSeq, seq)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("spool readings: %w", err)
	}
	return out, dropped, nil
}

// Ack removes every reading with seq ≤ upTo and returns how many it removed.
func (s *Spool) Ack(upTo uint64) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		meta := tx.Bucket(spoolMeta)
		if upTo <= getUint(meta, keyAcked) {
			return nil
		}
		size := getUint(meta, keyBytes)
		c := tx.Bucket(spoolOutbox).Cursor()
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, v = c.First() {
			size -= min(size, uint64(len(v)))
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		if err := putUint(meta, keyBytes, size); err != nil {
			return err
		}
		return putUint(meta, keyAcked, upTo)
	})
	if err != nil {
		return 0, fmt.Errorf("spool ack %d: %w", upTo, err)
	}
	return n, nil
}

// Pending returns up to limit spooled readings with seq > after, in seq
// order.
func (s *Spool) Pending(after uint64, limit int) ([]Spooled, error) {
	var out []Spooled
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(spoolOutbox).Cursor()
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], after+1)
		for key, v := c.Seek(k[:]); key != nil && len(out) < limit; key, v = c.Next() {
			sensor, payload, ok := bytes.Cut(v, []byte{'\n'})
			if !ok {
				continue
			}
			out = append(out, Spooled{Seq: binary.BigEndian.Uint64(key), Sensor: string(sensor), Payload: bytes.Clone(payload)})
		}
		return nil
	})
	return out, err
}

// Depth returns the number of readings waiting for acknowledgement.
func (s *Spool) Depth() int {
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(spoolOutbox).Stats().KeyN; return nil })
	return n
}

// LastSeq returns the seq of the last reading appended, 0 if none ever was.
func (s *Spool) LastSeq() uint64 {
	var n uint64
	_ = s.db.View(func(tx *bolt.Tx) error {
		if next := getUint(tx.Bucket(spoolMeta), keyNextSeq); next > 0 {
			n = next - 1
		}
		return nil
	})
	return n
}

// FirstSeq returns the lowest seq the spool may still publish: the oldest
// reading it holds, or the next seq when it holds none. Every lower seq was
// acknowledged or dropped.
func (s *Spool) FirstSeq() uint64 {
	var n uint64
	_ = s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(spoolOutbox).Cursor().First(); k != nil {
			n = binary.BigEndian.Uint64(k)
			return nil
		}
		n = max(getUint(tx.Bucket(spoolMeta), keyNextSeq), 1)
		return nil
	})
	return n
}

// Stats returns the bytes held and the readings ever dropped to stay within
// the size bound.
func (s *Spool) Stats() (bytes, dropped uint64) {
	_ = s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(spoolMeta)
		bytes, dropped = getUint(meta, keyBytes), getUint(meta, keyDropped)
		return nil
	})
	return bytes, dropped
}

// Acked returns the highest acknowledgement the spool has applied.
func (s *Spool) Acked() uint64 {
	var n uint64
	_ = s.db.View(func(tx *bolt.Tx) error { n = getUint(tx.Bucket(spoolMeta), keyAcked); return nil })
	return n
}
