// Package brokerhook is the embedded broker's transport into the
// ingester: a mochi hook that submits each publish in-process, before it
// is delivered to any subscriber, and releases its PUBACK only after the
// commit that stores it.
package brokerhook

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/schema"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Hook feeds the embedded broker's traffic into an ingest.Ingester
// in-process, with no MQTT subscriber in between. It runs on the
// publishing client's read loop, before the message is delivered to any
// subscriber, so a full
// ingest queue slows that client down rather than losing its messages,
// and no subscriber's queue stands between a reading and storage.
//
// The PUBACK of a QoS 1 (or the PUBREC of a QoS 2) reading is held back
// until the commit that stores it: a plain MQTT client without apd's
// spool (Tasmota, mosquitto_pub) loses nothing it was acknowledged. The
// client goes on publishing meanwhile, up to its receive quota.
//
// Each sender (see Sender) may have at most MaxUncommittedPerSender bytes
// submitted and not yet committed, and everyone together
// MaxUncommitted; beyond, its read loop waits for its earlier messages'
// commit. A sender flooding large payloads therefore waits for itself,
// and a well-behaved device's reading is never queued behind more than
// a few senders' budgets.
//
// A client whose messages are rejected more than MaxRejects times within
// RejectWindow is cut off (disconnected), and said so once a minute: a
// flood of garbage costs the flooder its connection, not the other
// clients their readings. The count is kept per user (per remote address
// without users), not per client id, which a flooder may change at every
// connection (see Sender).
type Hook struct {
	mqtt.HookBase
	in *ingest.Ingester
	// Sender names who is behind a client (the broker's user, or remote
	// address); nil counts per client id.
	Sender func(*mqtt.Client) string

	mu      sync.Mutex
	rejects map[string]*rejectWindow

	budget *uncommittedBudget
}

type rejectWindow struct {
	start, logged time.Time
	n             int
}

// Flood limits of the hook.
const (
	MaxRejects   = 500
	RejectWindow = 10 * time.Second
)

var errTooManyRejected = errors.New("too many rejected messages")

// Bounds of what a sender may have submitted and not yet committed, in
// payload and topic bytes. 1 MiB is about 5,000 readings of apd-publish,
// more than a device's spool replays at once; 16 MiB bounds the
// ingestion queue's memory whatever the payload size.
const (
	MaxUncommittedPerSender = 1 << 20
	MaxUncommitted          = 16 << 20
)

// New returns a hook submitting to in.
func New(in *ingest.Ingester) *Hook {
	return &Hook{in: in, rejects: map[string]*rejectWindow{},
		budget: newUncommittedBudget(MaxUncommittedPerSender, MaxUncommitted)}
}

// tooManyRejects counts a rejection of client id and reports whether the
// client went over the limit.
func (h *Hook) tooManyRejects(id string, now time.Time) (over, log bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.rejects[id]
	if w == nil || now.Sub(w.start) > RejectWindow {
		if len(h.rejects) > 10000 { // forget idle clients rather than grow
			h.rejects = map[string]*rejectWindow{}
		}
		old := w
		w = &rejectWindow{start: now}
		if old != nil {
			w.logged = old.logged
		}
		h.rejects[id] = w
	}
	w.n++
	if w.n <= MaxRejects {
		return false, false
	}
	log = now.Sub(w.logged) >= time.Minute
	if log {
		w.logged = now
	}
	return true, log
}

// sender names who is behind a client for the flood limit.
func (h *Hook) sender(cl *mqtt.Client) string {
	if h.Sender != nil {
		return h.Sender(cl)
	}
	return cl.ID
}

// ID implements mqtt.Hook.
func (h *Hook) ID() string { return "apd-ingest" }

// Provides implements mqtt.Hook.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublish, mqtt.OnPublishAck, mqtt.OnWillSent}, []byte{b})
}

// OnPublish submits every publish that is not acknowledged to its client,
// the broker's own (inline) ones too: those are the acknowledgements,
// which the ingester passes over, and the outcomes of rules, which are
// readings like any other. A client's QoS 1 and 2 publishes are submitted
// by OnPublishAck.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		h.submit(cl, pk, nil)
	}
	return pk, nil
}

// OnPublishAck submits a client's QoS 1 or 2 publish and holds its
// acknowledgement back until the commit that stores it (or until it is
// found to need no storing: not a reading, or a dead letter committed).
func (h *Hook) OnPublishAck(cl *mqtt.Client, pk packets.Packet, release func()) bool {
	h.submit(cl, pk, release)
	return true
}

// submit hands a publish to the ingester, within the sender's budget;
// release, if not nil, is called after its commit.
func (h *Hook) submit(cl *mqtt.Client, pk packets.Packet, release func()) {
	done := release
	if !cl.Net.Inline {
		// The broker's own publishes are not bounded: they come from the
		// commit loop's side (acknowledgements, rule outcomes) and must
		// not wait for it.
		sender, size := h.sender(cl), int64(len(pk.Payload)+len(pk.TopicName))
		h.budget.take(sender, size)
		done = func() {
			h.budget.give(sender, size)
			if release != nil {
				release()
			}
		}
	}
	outcome, err := h.in.SubmitMessage(pk.TopicName, pk.Payload, done)
	if err != nil {
		// Not acknowledged: the client publishes it again.
		h.in.Logger().Warn("ingest closed; message not stored", "topic", pk.TopicName)
		if !cl.Net.Inline {
			h.budget.give(h.sender(cl), int64(len(pk.Payload)+len(pk.TopicName)))
		}
	}
	if outcome == ingest.Rejected && !cl.Net.Inline {
		if over, log := h.tooManyRejects(h.sender(cl), time.Now()); over {
			if log {
				h.in.Logger().Warn("cutting off a client sending bad input", "client", cl.ID, "sender", h.sender(cl),
					"rejected", fmt.Sprintf("more than %d in %s", MaxRejects, RejectWindow))
			}
			h.in.Metrics().CutOff.Inc()
			cl.Stop(errTooManyRejected)
		}
	}
}

// uncommittedBudget counts the bytes each sender has submitted and not
// yet seen committed, and makes a sender over its bound, or everyone over
// the total, wait.
type uncommittedBudget struct {
	perSender, total int64

	mu    sync.Mutex
	freed *sync.Cond
	held  map[string]int64
	sum   int64
}

func newUncommittedBudget(perSender, total int64) *uncommittedBudget {
	b := &uncommittedBudget{perSender: perSender, total: total, held: map[string]int64{}}
	b.freed = sync.NewCond(&b.mu)
	return b
}

// take waits until sender may submit n more bytes, and counts them. A
// sender holding nothing may always submit one message (else one larger
// than the bound would wait forever), and so may anyone while nothing is
// held at all.
func (b *uncommittedBudget) take(sender string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		own := b.held[sender]
		if (own == 0 || own+n <= b.perSender) && (b.sum == 0 || b.sum+n <= b.total) {
			break
		}
		b.freed.Wait()
	}
	b.held[sender] += n
	b.sum += n
}

// give counts n bytes of sender's committed.
func (b *uncommittedBudget) give(sender string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[sender] -= n; b.held[sender] <= 0 {
		delete(b.held, sender)
	}
	b.sum -= n
	b.freed.Broadcast()
}

// OnWillSent records a dead client's last will ({"state":"lost"} on its
// $status topic), which the broker publishes without OnPublish.
func (h *Hook) OnWillSent(_ *mqtt.Client, pk packets.Packet) {
	if t, err := h.in.Topics().Parse(pk.TopicName); err == nil && t.Kind == schema.KindStatus {
		_, _ = h.in.SubmitMessage(pk.TopicName, pk.Payload, nil)
	}
}
