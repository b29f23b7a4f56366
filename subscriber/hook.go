package subscriber

import (
	"bytes"

	"github.com/apd-telemetry/apd/schema"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Hook feeds the embedded broker's traffic into an Ingester in-process, with
// no MQTT subscriber in between. OnPublish runs on the publishing client's
// read loop before the broker answers PUBACK, so a full ingest queue slows
// that client down rather than losing its messages.
type Hook struct {
	mqtt.HookBase
	in *Ingester
}

// NewHook returns a hook submitting to in.
func NewHook(in *Ingester) *Hook { return &Hook{in: in} }

// ID implements mqtt.Hook.
func (h *Hook) ID() string { return "apd-ingest" }

// Provides implements mqtt.Hook.
func (h *Hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublish, mqtt.OnWillSent}, []byte{b})
}

// OnPublish submits every client's publish; the broker's own (inline)
// publishes are the acknowledgements and are skipped.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if err := h.in.Submit(pk.TopicName, pk.Payload, nil); err != nil {
		h.in.log.Warn("ingest closed; message not stored", "topic", pk.TopicName)
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
