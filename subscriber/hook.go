package subscriber

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/schema"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Hook feeds the embedded broker's traffic into an Ingester in-process, with
// no MQTT subscriber in between. OnPublish runs on the publishing client's
// read loop before the broker answers PUBACK, so a full ingest queue slows
// that client down rather than losing its messages.
//
// A client whose messages are rejected more than MaxRejects times within
// RejectWindow is cut off (disconnected), and said so once a minute: a
// flood of garbage costs the flooder its connection, not the other
// clients their readings. The count is kept per user (per remote address
// without users), not per client id, which a flooder may change at every
// connection (see Sender).
type Hook struct {
	mqtt.HookBase
	in *Ingester
	// Sender names who is behind a client (the broker's user, or remote
	// address); nil counts per client id.
	Sender func(*mqtt.Client) string

	mu      sync.Mutex
	rejects map[string]*rejectWindow
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

// NewHook returns a hook submitting to in.
func NewHook(in *Ingester) *Hook { return &Hook{in: in, rejects: map[string]*rejectWindow{}} }

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
	return bytes.Contains([]byte{mqtt.OnPublish, mqtt.OnWillSent}, []byte{b})
}

// OnPublish submits every publish, the broker's own (inline) ones too:
// those are the acknowledgements, which the ingester passes over, and the
// outcomes of rules, which are readings like any other.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	rejected, err := h.in.submit(pk.TopicName, pk.Payload, nil)
	if err != nil {
		h.in.log.Warn("ingest closed; message not stored", "topic", pk.TopicName)
	}
	if rejected && !cl.Net.Inline {
		if over, log := h.tooManyRejects(h.sender(cl), time.Now()); over {
			if log {
				h.in.log.Warn("cutting off a client sending bad input", "client", cl.ID, "sender", h.sender(cl),
					"rejected", fmt.Sprintf("more than %d in %s", MaxRejects, RejectWindow))
			}
			h.in.metrics.CutOff.Inc()
			cl.Stop(errTooManyRejected)
		}
	}
	return pk, nil
}

// OnWillSent records a dead client's last will ({"state":"lost"} on its
// $status topic), which the broker publishes without OnPublish.
func (h *Hook) OnWillSent(_ *mqtt.Client, pk packets.Packet) {
	if t, err := h.in.opts.Topics.Parse(pk.TopicName); err == nil && t.Kind == schema.KindStatus {
		_ = h.in.Submit(pk.TopicName, pk.Payload, nil)
	}
}
