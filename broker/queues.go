package broker

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Defaults of the queue bounds: messages waiting for delivery or for
// their PUBACK (mochi's in-flight messages), summed over a user's
// sessions and over everyone. At apd's ~200-byte readings the total is
// about 25 MB of memory and of broker state on disk (mochi's own
// bookkeeping, which walks every in-flight message each second, costs in
// proportion).
const (
	DefaultMaxQueuedPerUser = 32768
	DefaultMaxQueued        = 131072
)

// queueBudget bounds what sessions that do not read can make the broker
// hold. mochi bounds each client (MaxInflight) but not a user with many
// sessions, nor everyone together: ten offline and ten connected but
// silent reader sessions held 750 MB. A delivery to a client whose user
// is over its bound, or while the broker is over its total, is dropped
// and counted; the publisher is not slowed and other subscribers get it.
//
// Deliveries are refused through the access hook's read check, which mochi
// asks before it queues anything (so nothing is queued, persisted or
// half-counted); the same check answers subscriptions, which are told
// apart by OnSubscribe/OnSubscribed around them.
type queueBudget struct {
	mqtt.HookBase
	srv      *mqtt.Server
	perUser  int
	total    int64
	dropped  atomic.Uint64
	inSubMux sync.Map // *mqtt.Client → struct{}: a SUBSCRIBE is being processed

	mu     sync.Mutex
	byUser map[string]map[string]struct{} // queue key → client ids
	sums   map[string]*queuedSum          // of keys with several sessions
}

// queuedSum is a user's queued messages summed over its sessions, taken
// at a time and counted up by each delivery let through since: summing
// twenty sessions for every delivery cost more than the delivery.
type queuedSum struct {
	n  int
	at time.Time
}

// sumFresh is how long a queuedSum is used before it is taken again.
const sumFresh = 5 * time.Millisecond

func newQueueBudget(srv *mqtt.Server, perUser, total int) *queueBudget {
	if perUser <= 0 {
		perUser = DefaultMaxQueuedPerUser
	}
	if total <= 0 {
		total = DefaultMaxQueued
	}
	return &queueBudget{srv: srv, perUser: perUser, total: int64(total), byUser: map[string]map[string]struct{}{},
		sums: map[string]*queuedSum{}}
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

// admit reports whether the sessions of cl's group hold fewer than
// perUser messages, and counts the delivery it lets through.
func (q *queueBudget) admit(cl *mqtt.Client) bool {
	k := queueKey(cl)
	q.mu.Lock()
	ids := q.byUser[k]
	if len(ids) <= 1 {
		q.mu.Unlock()
		return cl.State.Inflight.Len() < q.perUser
	}
	now := time.Now()
	sum := q.sums[k]
	if sum == nil || now.Sub(sum.at) > sumFresh {
		list := make([]string, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		q.mu.Unlock()
		n := 0
		for _, id := range list {
			if c, ok := q.srv.Clients.Get(id); ok {
				n += c.State.Inflight.Len()
			}
		}
		q.mu.Lock()
		sum = &queuedSum{n: n, at: now}
		q.sums[k] = sum
	}
	ok := sum.n < q.perUser
	if ok {
		sum.n++
	}
	q.mu.Unlock()
	return ok
}

// allowDelivery reports whether a message may be queued for cl, and counts
// it dropped if not.
func (q *queueBudget) allowDelivery(cl *mqtt.Client) bool {
	if q.subscribing(cl) {
		return true
	}
	if atomic.LoadInt64(&q.srv.Info.Inflight) < q.total && q.admit(cl) {
		return true
	}
	q.dropped.Add(1)
	return false
}
