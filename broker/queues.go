package broker

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Defaults of the queue bounds: what the broker holds for delivery —
// messages waiting for their PUBACK (mochi's in-flight messages) and
// messages waiting to be written to a connection — per session, summed
// over a user's sessions and over everyone. The bounds in bytes hold
// memory and the in-flight file (broker.db.inflight) alike; those in
// messages hold mochi's bookkeeping, which walks every in-flight message
// each second. A message waiting on a connection while in flight is
// counted twice, so the bounds hold with room to spare.
//
// The aggregator's sessions (role aggregator or admin) are bounded only
// by their own per-session and per-user bounds, never by the total: what
// readers leave unread cannot cut the readings' path to storage.
const (
	DefaultMaxQueuedPerUser = 32768
	DefaultMaxQueued        = 131072
	// DefaultMaxQueuedBytesPerSession and DefaultMaxQueuedBytesPerUser:
	// 16 MiB, about 80,000 readings of 200 bytes, a fleet's whole tick
	// for one aggregator.
	DefaultMaxQueuedBytesPerSession = 16 << 20
	DefaultMaxQueuedBytesPerUser    = 16 << 20
	// DefaultMaxQueuedBytes: 64 MiB for everyone but the aggregators.
	DefaultMaxQueuedBytes = 64 << 20
)

// QueueLimits bound what the broker holds for delivery (see the defaults
// above). Zero values mean the defaults.
type QueueLimits struct {
	// Messages per user and in all.
	PerUser, Total int
	// Bytes (payload and topic) per session, per user and in all.
	PerSessionBytes, PerUserBytes, TotalBytes int64
}

func (l QueueLimits) withDefaults() QueueLimits {
	if l.PerUser <= 0 {
		l.PerUser = DefaultMaxQueuedPerUser
	}
	if l.Total <= 0 {
		l.Total = DefaultMaxQueued
	}
	if l.PerSessionBytes <= 0 {
		l.PerSessionBytes = DefaultMaxQueuedBytesPerSession
	}
	if l.PerUserBytes <= 0 {
		l.PerUserBytes = DefaultMaxQueuedBytesPerUser
	}
	if l.TotalBytes <= 0 {
		l.TotalBytes = DefaultMaxQueuedBytes
	}
	return l
}

// queueBudget bounds what sessions that do not read can make the broker
// hold. mochi bounds each client in messages (MaxInflight) but not in
// bytes, nor a user with many sessions, nor everyone together: ten
// offline and ten connected but silent reader sessions held 4 GB of 60 KB
// messages. A delivery to a client whose session or user is over its
// bound, or while the broker is over its total, is dropped and counted;
// the publisher is not slowed and other subscribers get it.
//
// Deliveries are refused through the access hook's read check, which mochi
// asks before it queues anything (so nothing is queued, persisted or
// half-counted); the same check answers subscriptions, which are told
// apart by OnSubscribe/OnSubscribed around them.
type queueBudget struct {
	mqtt.HookBase
	srv      *mqtt.Server
	limits   QueueLimits
	dropped  atomic.Uint64
	inSubMux sync.Map // *mqtt.Client → struct{}: a SUBSCRIBE is being processed

	mu     sync.Mutex
	byUser map[string]map[string]struct{} // queue key → client ids
	sums   map[string]*queuedSum          // of keys with several sessions
}

// queuedSum is a user's queued messages and bytes summed over its
// sessions, taken at a time, its messages counted up by each delivery let
// through since: summing twenty sessions for every delivery cost more
// than the delivery. The bytes of those deliveries are not known when
// they are let through (mochi asks before it copies the message): the
// sum is at most sumFresh old.
type queuedSum struct {
	n     int
	bytes int64
	at    time.Time
}

// sumFresh is how long a queuedSum is used before it is taken again.
const sumFresh = 5 * time.Millisecond

func newQueueBudget(srv *mqtt.Server, limits QueueLimits) *queueBudget {
	return &queueBudget{srv: srv, limits: limits.withDefaults(), byUser: map[string]map[string]struct{}{},
		sums: map[string]*queuedSum{}}
}

// sessionBytes is what the broker holds for cl: in flight, and waiting
// to be written to its connection.
func sessionBytes(cl *mqtt.Client) int64 {
	return cl.State.Inflight.Bytes() + cl.OutboundBytes()
}

func (q *queueBudget) ID() string { return "apd-queues" }

func (q *queueBudget) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired,
		mqtt.OnSubscribe, mqtt.OnSubscribed}, []byte{b})
}

// queueKey groups a client with the other sessions of its user; without
// a user each client is its own group (the total still holds).
func queueKey(cl *mqtt.Client) string {
	if len(cl.Properties.Username) > 0 {
		return "user " + string(cl.Properties.Username)
	}
	return "client " + cl.ID
}

func (q *queueBudget) add(cl *mqtt.Client) {
	k := queueKey(cl)
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := q.byUser[k]
	if ids == nil {
		ids = map[string]struct{}{}
		q.byUser[k] = ids
	}
	ids[cl.ID] = struct{}{}
}

func (q *queueBudget) remove(cl *mqtt.Client) {
	k := queueKey(cl)
	q.mu.Lock()
	defer q.mu.Unlock()
	if ids := q.byUser[k]; ids != nil {
		delete(ids, cl.ID)
		if len(ids) == 0 {
			delete(q.byUser, k)
			delete(q.sums, k)
		}
	}
}

func (q *queueBudget) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) { q.add(cl) }

// OnDisconnect keeps a persistent session counted (mochi also calls it
// for each session restored from the broker state at start) and forgets
// one that ends with its connection.
func (q *queueBudget) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire {
		q.remove(cl)
		return
	}
	q.add(cl)
}

func (q *queueBudget) OnClientExpired(cl *mqtt.Client) { q.remove(cl) }

func (q *queueBudget) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	q.inSubMux.Store(cl, struct{}{})
	return pk
}

func (q *queueBudget) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	q.inSubMux.Delete(cl)
}

// subscribing reports whether cl's read check is for its SUBSCRIBE (or
// the retained messages that answer it), not a delivery.
func (q *queueBudget) subscribing(cl *mqtt.Client) bool {
	_, ok := q.inSubMux.Load(cl)
	return ok
}

// admit reports whether cl's session and the sessions of its group hold
// less than their bounds, and counts the delivery it lets through.
func (q *queueBudget) admit(cl *mqtt.Client) bool {
	own := sessionBytes(cl)
	if own >= q.limits.PerSessionBytes {
		return false
	}
	k := queueKey(cl)
	q.mu.Lock()
	ids := q.byUser[k]
	if len(ids) <= 1 {
		q.mu.Unlock()
		return cl.State.Inflight.Len() < q.limits.PerUser && own < q.limits.PerUserBytes
	}
	now := time.Now()
	sum := q.sums[k]
	if sum == nil || now.Sub(sum.at) > sumFresh {
		list := make([]string, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		q.mu.Unlock()
		n, bytes := 0, int64(0)
		for _, id := range list {
			if c, ok := q.srv.Clients.Get(id); ok {
				n += c.State.Inflight.Len()
				bytes += sessionBytes(c)
			}
		}
		q.mu.Lock()
		sum = &queuedSum{n: n, bytes: bytes, at: now}
		q.sums[k] = sum
	}
	ok := sum.n < q.limits.PerUser && sum.bytes < q.limits.PerUserBytes
	if ok {
		sum.n++
	}
	q.mu.Unlock()
	return ok
}

// allowDelivery reports whether a message may be queued for cl, and counts
// it dropped if not. An aggregator's session (ownBoundsOnly) is not
// refused for what others hold.
func (q *queueBudget) allowDelivery(cl *mqtt.Client, ownBoundsOnly bool) bool {
	if q.subscribing(cl) {
		return true
	}
	if (ownBoundsOnly || q.withinTotal()) && q.admit(cl) {
		return true
	}
	q.dropped.Add(1)
	return false
}

// withinTotal reports whether the broker holds less than its totals.
func (q *queueBudget) withinTotal() bool {
	return atomic.LoadInt64(&q.srv.Info.Inflight) < int64(q.limits.Total) &&
		q.srv.InflightBytes()+q.srv.OutboundBytes() < q.limits.TotalBytes
}
