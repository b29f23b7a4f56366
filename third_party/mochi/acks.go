// SPDX-License-Identifier: MIT
// apd patch: acknowledgements a hook holds back, written in order.

package mqtt

import (
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/packets"
)

// newInflightsCounted returns an Inflight whose bytes are also summed into
// total (nil: not summed).
func newInflightsCounted(total *int64) *Inflight {
	i := NewInflights()
	i.total = total
	return i
}

// addOutboundBytes counts n more bytes queued for the connection.
func (cl *Client) addOutboundBytes(n int64) {
	atomic.AddInt64(&cl.State.outboundBytes, n)
	if cl.ops.outboundBytes != nil {
		atomic.AddInt64(cl.ops.outboundBytes, n)
	}
}

// OutboundBytes returns the payload and topic bytes of the messages queued
// for the client's connection and not yet written.
func (cl *Client) OutboundBytes() int64 { return atomic.LoadInt64(&cl.State.outboundBytes) }

// ackQueue keeps a client's acknowledgements of QoS 1 and 2 PUBLISHes in
// the order the PUBLISHes arrived [MQTT-4.6.0-2] while hooks hold some of
// them back: each is written once it and every one before it are
// released.
type ackQueue struct {
	mu      sync.Mutex
	pending []*heldAck
}

type heldAck struct {
	ack      packets.Packet
	released bool
}

// acknowledge sends the acknowledgement ack of pk, or, when a hook holds
// it back, queues it until the hook releases it. Without a hook that can
// hold acknowledgements back it is written at once, as upstream does.
func (cl *Client) acknowledge(pk, ack packets.Packet) error {
	hooks := cl.ops.hooks
	if !hooks.Provides(OnPublishAck) {
		if err := cl.WritePacket(ack); err != nil {
			return err
		}
		cl.ackWritten(ack)
		return nil
	}
	h := &heldAck{ack: ack}
	q := &cl.State.acks
	q.mu.Lock()
	q.pending = append(q.pending, h)
	q.mu.Unlock()
	atomic.AddInt32(&cl.State.Inflight.heldAcks, 1)
	var once sync.Once
	release := func() { once.Do(func() { cl.releaseAck(h) }) }
	if !hooks.OnPublishAck(cl, pk, release) {
		release()
	}
	return nil
}

// releaseAck marks h released and queues, in order, every acknowledgement
// at the head of the queue that is released. It never blocks: an
// acknowledgement that finds the connection's outbound queue full is not
// sent (the client publishes the message again, as after a lost
// connection).
func (cl *Client) releaseAck(h *heldAck) {
	q := &cl.State.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	h.released = true
	n := 0
	for n < len(q.pending) && q.pending[n].released {
		ack := q.pending[n].ack
		q.pending[n] = nil
		n++
		atomic.AddInt32(&cl.State.Inflight.heldAcks, -1)
		// The quota is returned before the write so that a read loop
		// waiting for it goes on.
		cl.ackWritten(ack)
		if cl.Closed() {
			continue
		}
		select {
		case cl.State.outbound <- &ack:
			atomic.AddInt32(&cl.State.outboundQty, 1)
		default:
			cl.ops.log.Debug("acknowledgement not sent: outbound queue full", "client", cl.ID, "packet_id", ack.PacketID)
		}
	}
	q.pending = q.pending[n:]
}

// ackWritten returns the receive quota of a QoS 1 PUBLISH; a QoS 2 one
// keeps it until its PUBREL.
func (cl *Client) ackWritten(ack packets.Packet) {
	if ack.FixedHeader.Type == packets.Puback {
		cl.State.Inflight.IncreaseReceiveQuota()
	}
}
