package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
//     sessions cut a broker's throughput twentyfold.
type persistence struct {
	*bolt.Hook
	inflight *bbolt.DB
	writes   chan inflightWrite
	written  chan struct{} // closed when the writer has stopped
	mu       sync.RWMutex  // held for reading while queueing a write
	stopped  bool

	// forgotten holds the state topics whose retained message, written by
	// an earlier run, was removed from the file (once each).
	forgotten sync.Map
}

// queue hands a change to the writer; after Stop it is dropped.
func (h *persistence) queue(w inflightWrite) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if !h.stopped {
		h.writes <- w
	}
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
	h.inflight = db
	h.writes, h.written = make(chan inflightWrite, 8192), make(chan struct{})
	go h.writeInflight()
	return nil
}

// writeInflight applies the queued changes, all that are waiting in one
// transaction, until Stop.
func (h *persistence) writeInflight() {
	defer close(h.written)
	for w := range h.writes {
		batch := []inflightWrite{w}
	more:
		for len(batch) < 4096 {
			select {
			case w, ok := <-h.writes:
				if !ok {
					break more
				}
				batch = append(batch, w)
			default:
				break more
			}
		}
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
		close(h.writes)
		h.mu.Unlock()
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
