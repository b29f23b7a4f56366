package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
	bbolt "go.etcd.io/bbolt"
)

// persistence keeps sessions, subscriptions, retained messages and
// in-flight messages in bbolt files, so a restarted broker resumes where it
// stopped.
//
// Why mochi's bolt hook: apd already depends on bbolt and runs on SD cards,
// so a small file beats the badger or pebble engines (larger binaries,
// background compaction) and needs no Redis. Three changes make it fit:
//
//   - No fsync (bbolt NoSync). A killed process loses nothing (the writes
//     are in the page cache); a power cut may lose the latest broker state.
//     That is acceptable because the broker is not where a reading's safety
//     lies: the device keeps every reading in its spool until the
//     aggregator's $ack, and republishes.
//   - In-flight state is written only for messages the broker sends to
//     clients with a persistent session (the aggregator's). The PUBACK of
//     every inbound QoS 1 publish would otherwise cost two writes per
//     reading.
//   - In-flight messages live in a file of their own, written here: the
//     bolt hook of mochi v2.7.9 stores them without their packet id, and
//     the restarted broker then disconnects the client on every resend
//     ("missing packet id"). Retained messages live there too. They are
//     written by one goroutine in batches
//     (one transaction for all the writes waiting), in the order they
//     happened: one transaction per message fanned out to twenty
//     sessions cut a broker's throughput twentyfold. Queueing a write
//     never waits for the disk: the writes waiting are bounded by the
//     queue bounds (what they describe is held in memory too), and a
//     publisher delivering to sessions must not wait behind the file.
//   - The in-flight file is compacted once what it holds has shrunk to
//     a small part of it (a flood to offline sessions, then their
//     queues drained or expired): bbolt never gives space back.
type persistence struct {
	*bolt.Hook
	inflight     *bbolt.DB
	inflightPath string
	written      chan struct{} // closed when the writer has stopped

	mu      sync.Mutex
	waiting []inflightWrite // queued for the writer
	wake    chan struct{}   // signalled when waiting grows from empty
	stopped bool

	// forgotten holds the state topics whose retained message, written by
	// an earlier run, was removed from the file (once each).
	forgotten sync.Map
}

// queue hands a change to the writer without waiting; after Stop it is
// dropped.
func (h *persistence) queue(w inflightWrite) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	h.waiting = append(h.waiting, w)
	if len(h.waiting) == 1 {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

// take returns the writes waiting, up to max, and whether the writer is to
// stop after them.
func (h *persistence) take(max int) ([]inflightWrite, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := min(len(h.waiting), max)
	batch := append([]inflightWrite(nil), h.waiting[:n]...)
	rest := copy(h.waiting, h.waiting[n:])
	clear(h.waiting[rest:])
	h.waiting = h.waiting[:rest]
	if cap(h.waiting) > 65536 && rest < cap(h.waiting)/8 {
		h.waiting = append([]inflightWrite(nil), h.waiting...) // give a flood's backing array back
	}
	return batch, h.stopped && rest == 0
}

// inflightWrite is one change to the in-flight file: a put (value set),
// a delete, or the deletion of every key with a prefix, in the in-flight
// bucket or, with retained set, the retained one.
type inflightWrite struct {
	key, value []byte
	// retainedMsg is a retained message to put, encoded by the writer:
	// only the last of a topic's in a batch is written (an aggregator
	// acknowledges the same hosts again and again).
	retainedMsg *storage.Message
	prefix      bool
	retained    bool
}

type persistenceConfig struct {
	bolt         *bolt.Options
	inflightPath string
}

func newPersistence(path string) (*persistence, *persistenceConfig) {
	return &persistence{Hook: new(bolt.Hook)}, &persistenceConfig{
		bolt:         &bolt.Options{Path: path, Options: &bbolt.Options{Timeout: 2 * time.Second, NoSync: true}},
		inflightPath: path + ".inflight",
	}
}

var (
	inflightBucket = []byte("inflight")
	// retainedBucket holds retained messages by topic. They are written
	// here, in batches, rather than by mochi's bolt hook one transaction
	// each: an aggregator acknowledging 10,000 hosts per tick would make
	// 10,000 writes per tick.
	retainedBucket = []byte("retained")
)

// Init opens both files.
func (h *persistence) Init(config any) error {
	cfg, ok := config.(*persistenceConfig)
	if !ok {
		return mqtt.ErrInvalidConfigType
	}
	if err := h.Hook.Init(cfg.bolt); err != nil {
		return err
	}
	db, err := bbolt.Open(cfg.inflightPath, 0o600, &bbolt.Options{Timeout: 2 * time.Second, NoSync: true})
	if err != nil {
		return fmt.Errorf("open %s: %w", cfg.inflightPath, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{inflightBucket, retainedBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return err
	}
	h.inflight, h.inflightPath = db, cfg.inflightPath
	h.wake, h.written = make(chan struct{}, 1), make(chan struct{})
	go h.writeInflight()
	return nil
}

// writeInflight applies the queued changes, up to 4,096 in one
// transaction, until Stop. After writing it looks, within compactEvery,
// whether the file is worth compacting.
func (h *persistence) writeInflight() {
	defer close(h.written)
	var due <-chan time.Time // set while a look at the file is due
	for {
		batch, stop := h.take(4096)
		if len(batch) == 0 {
			if stop {
				return
			}
			select {
			case <-h.wake:
			case <-due:
				due = nil
				if err := h.compactIfSparse(); err != nil {
					h.Log.Error("compact the in-flight file", "error", err)
				}
			}
			continue
		}
		h.writeBatch(batch)
		if due == nil {
			due = time.After(compactEvery)
		}
	}
}

// writeBatch applies one batch of changes in one transaction.
func (h *persistence) writeBatch(batch []inflightWrite) {
	last := map[string]int{} // a retained topic's last write in the batch
	for i, w := range batch {
		if w.retained && !w.prefix {
			last[string(w.key)] = i
		}
	}
	err := h.inflight.Update(func(tx *bbolt.Tx) error {
		for i, w := range batch {
			if w.retained && !w.prefix && last[string(w.key)] != i {
				continue // superseded later in this batch
			}
			if w.retainedMsg != nil {
				v, err := json.Marshal(w.retainedMsg)
				if err != nil {
					continue
				}
				w.value = v
			}
			b := tx.Bucket(inflightBucket)
			if w.retained {
				b = tx.Bucket(retainedBucket)
			}
			if err := applyInflight(b, w); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		h.Log.Error("store in-flight messages", "error", err, "writes", len(batch))
	}
}

// Compaction of the in-flight file: looked at compactEvery after writes,
// once it is larger than compactAbove, and rewritten when what it holds
// is less than a quarter of it.
const (
	compactAbove = 8 << 20
	compactEvery = 10 * time.Second
)

// compactIfSparse rewrites the in-flight file when it is mostly free
// pages. Only the writer goroutine calls it: nothing else writes the file,
// and it is read only at start.
func (h *persistence) compactIfSparse() error {
	fi, err := os.Stat(h.inflightPath)
	if err != nil || fi.Size() < compactAbove {
		return err
	}
	var inUse int64
	if err := h.inflight.View(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{inflightBucket, retainedBucket} {
			st := tx.Bucket(name).Stats()
			inUse += int64(st.LeafInuse + st.BranchInuse + st.InlineBucketInuse)
		}
		return nil
	}); err != nil {
		return err
	}
	if inUse >= fi.Size()/4 {
		return nil
	}
	tmp := h.inflightPath + ".compact"
	_ = os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: 2 * time.Second, NoSync: true})
	if err != nil {
		return err
	}
	if err := bbolt.Compact(dst, h.inflight, 1<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return err
	}
	if err := errors.Join(dst.Sync(), dst.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := h.inflight.Close(); err != nil {
		return err
	}
	renameErr := os.Rename(tmp, h.inflightPath)
	db, err := bbolt.Open(h.inflightPath, 0o600, &bbolt.Options{Timeout: 2 * time.Second, NoSync: true})
	if err != nil {
		return fmt.Errorf("reopen %s after compacting: %w", h.inflightPath, errors.Join(renameErr, err))
	}
	h.inflight = db
	if renameErr != nil {
		return renameErr
	}
	h.Log.Info("in-flight file compacted", "bytes_before", fi.Size(), "bytes_in_use", inUse)
	return nil
}

func applyInflight(b *bbolt.Bucket, w inflightWrite) error {
	switch {
	case w.prefix:
		c := b.Cursor()
		for k, _ := c.Seek(w.key); k != nil && bytes.HasPrefix(k, w.key); k, _ = c.Seek(w.key) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	case w.value != nil:
		return b.Put(w.key, w.value)
	}
	return b.Delete(w.key)
}

// Stop writes what is queued and closes both files.
func (h *persistence) Stop() error {
	err := h.Hook.Stop()
	if h.inflight != nil {
		h.mu.Lock()
		h.stopped = true
		h.mu.Unlock()
		select {
		case h.wake <- struct{}{}:
		default:
		}
		<-h.written
		err = errors.Join(err, h.inflight.Close())
	}
	return err
}

func inflightKey(cl *mqtt.Client, pk packets.Packet) []byte {
	return []byte(cl.ID + ":" + pk.FormatID())
}

// OnQosPublish stores outbound messages to persistent sessions, packet id
// included.
func (h *persistence) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish || cl.Properties.Clean {
		return
	}
	m := storage.Message{
		ID: string(inflightKey(cl, pk)), T: storage.InflightKey, Client: cl.ID, Origin: pk.Origin,
		PacketID: pk.PacketID, FixedHeader: pk.FixedHeader, TopicName: pk.TopicName, Payload: pk.Payload,
		Sent: sent, Created: pk.Created,
		Properties: storage.MessageProperties{MessageExpiryInterval: pk.Properties.MessageExpiryInterval},
	}
	v, err := json.Marshal(m)
	if err != nil {
		return
	}
	h.queue(inflightWrite{key: []byte(m.ID), value: v})
}

// OnQosComplete removes a stored in-flight message; clean sessions have none.
func (h *persistence) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if cl.Properties.Clean {
		return
	}
	h.queue(inflightWrite{key: inflightKey(cl, pk)})
}

// OnQosDropped removes a stored in-flight message.
func (h *persistence) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { h.OnQosComplete(cl, pk) }

// OnClientExpired forgets the client and its in-flight messages.
func (h *persistence) OnClientExpired(cl *mqtt.Client) {
	h.Hook.OnClientExpired(cl)
	h.queue(inflightWrite{key: []byte(cl.ID + ":"), prefix: true})
}

// OnRetainMessage stores (r 1) or removes (r -1) a topic's retained
// message, in the batched writer.
func (h *persistence) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if isStateMessage(cl, pk) {
		// Rebuilt by its publisher at every start (the aggregator
		// republishes each stored watermark): keeping it would be one
		// write per $ack for nothing. A copy an earlier run kept goes.
		if _, done := h.forgotten.LoadOrStore(pk.TopicName, struct{}{}); !done {
			h.queue(inflightWrite{key: []byte(pk.TopicName), retained: true})
		}
		return
	}
	if r == -1 {
		h.queue(inflightWrite{key: []byte(pk.TopicName), retained: true})
		h.forgetOldRetained(cl, pk)
		return
	}
	m := &storage.Message{ID: "RET_" + pk.TopicName, T: storage.RetainedKey, FixedHeader: pk.FixedHeader, TopicName: pk.TopicName,
		Payload: pk.Payload, Created: pk.Created, Client: cl.ID, Origin: pk.Origin,
		Properties: storage.MessageProperties{MessageExpiryInterval: pk.Properties.MessageExpiryInterval}}
	h.queue(inflightWrite{key: []byte(pk.TopicName), retainedMsg: m, retained: true})
}

// isStateMessage reports whether pk was published by Broker.PublishState:
// from inside the process (mochi's inline client), retained, at QoS 0.
func isStateMessage(cl *mqtt.Client, pk packets.Packet) bool {
	return cl.Net.Inline && pk.FixedHeader.Retain && pk.FixedHeader.Qos == 0
}

// OnRetainedExpired removes an expired retained message.
func (h *persistence) OnRetainedExpired(topic string) {
	h.queue(inflightWrite{key: []byte(topic), retained: true})
	h.Hook.OnRetainedExpired(topic)
}

// forgetOldRetained removes a retained message from where apds before
// the batched writer kept it (mochi's bolt file), so it cannot come back
// after a restart. Removals are rare (a cleared Home Assistant config).
func (h *persistence) forgetOldRetained(cl *mqtt.Client, pk packets.Packet) {
	h.Hook.OnRetainMessage(cl, pk, -1)
}

// StoredRetainedMessages returns the retained messages to restore: those
// of the batched writer, and those an earlier apd left in mochi's file
// for topics it has none of.
func (h *persistence) StoredRetainedMessages() ([]storage.Message, error) {
	old, err := h.Hook.StoredRetainedMessages()
	if err != nil {
		return nil, err
	}
	byTopic := map[string]storage.Message{}
	for _, m := range old {
		byTopic[m.TopicName] = m
	}
	err = h.inflight.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(retainedBucket).ForEach(func(_, v []byte) error {
			var m storage.Message
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			byTopic[m.TopicName] = m
			return nil
		})
	})
	out := make([]storage.Message, 0, len(byTopic))
	for _, m := range byTopic {
		out = append(out, m)
	}
	return out, err
}

// OnSysInfoTick stores nothing: $SYS counters restart from zero, as mochi
// does by default, which saves a write per tick.
func (h *persistence) OnSysInfoTick(*system.Info) {}

// StoredSysInfo returns nothing to restore (see OnSysInfoTick); asking the
// bolt hook would log an error on every first start.
func (h *persistence) StoredSysInfo() (storage.SystemInfo, error) { return storage.SystemInfo{}, nil }

// StoredInflightMessages returns the in-flight messages to restore.
func (h *persistence) StoredInflightMessages() ([]storage.Message, error) {
	var out []storage.Message
	err := h.inflight.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(inflightBucket).ForEach(func(_, v []byte) error {
			var m storage.Message
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// dropCounter counts messages the broker dropped instead of delivering
// (a subscriber over its in-flight or pending-write limit, or expired
// in-flight messages).
type dropCounter struct {
	mqtt.HookBase
	publishes atomic.Uint64
	inflight  atomic.Uint64
}

func (d *dropCounter) ID() string { return "apd-drop-counter" }

func (d *dropCounter) Provides(b byte) bool {
	return b == mqtt.OnPublishDropped || b == mqtt.OnQosDropped
}

func (d *dropCounter) OnPublishDropped(*mqtt.Client, packets.Packet) { d.publishes.Add(1) }

func (d *dropCounter) OnQosDropped(*mqtt.Client, packets.Packet) { d.inflight.Add(1) }
