// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: 2023 mochi-mqtt, mochi-co
// SPDX-FileContributor: mochi-co

package mqtt

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Inflight is a map of InflightMessage keyed on packet id.
//
// apd patch: the messages the server sends (internal) and the QoS 2
// messages it receives (receiving) are kept apart: each direction has its
// own packet identifiers (MQTT 5 §2.2.1), and a client publishing with an
// identifier the server uses for a delivery to it must not cancel that
// delivery. The payload bytes held are counted, per client and, through
// total, for the server.
type Inflight struct {
	sync.RWMutex
	internal            map[uint16]packets.Packet // internal contains the inflight packets
	receiving           map[uint16]packets.Packet // QoS 2 messages received, awaiting PUBREL (apd patch)
	bytes               int64                     // payload and topic bytes of internal (apd patch)
	total               *int64                    // the server's sum of bytes, or nil (apd patch)
	heldAcks            int32                     // acknowledgements held back by a hook (apd patch)
	quotaFreed          chan struct{}             // signalled when receive quota is returned (apd patch)
	receiveQuota        int32                     // remaining inbound qos quota for flow control
	sendQuota           int32                     // remaining outbound qos quota for flow control
	maximumReceiveQuota int32                     // maximum allowed receive quota
	maximumSendQuota    int32                     // maximum allowed send quota
}

// NewInflights returns a new instance of an Inflight packets map.
func NewInflights() *Inflight {
	return &Inflight{
		internal:   map[uint16]packets.Packet{},
		receiving:  map[uint16]packets.Packet{},
		quotaFreed: make(chan struct{}, 1),
	}
}

// heldBytes is what an in-flight message holds in memory (apd patch).
func heldBytes(pk packets.Packet) int64 {
	return int64(len(pk.Payload) + len(pk.TopicName))
}

// addBytes counts n more bytes held (apd patch). Called with the lock held.
func (i *Inflight) addBytes(n int64) {
	i.bytes += n
	if i.total != nil && n != 0 {
		atomic.AddInt64(i.total, n)
	}
}

// Bytes returns the payload and topic bytes of the in-flight messages the
// server sends (apd patch).
func (i *Inflight) Bytes() int64 {
	i.RLock()
	defer i.RUnlock()
	return i.bytes
}

// Set adds or updates an inflight packet by packet id.
func (i *Inflight) Set(m packets.Packet) bool {
	i.Lock()
	defer i.Unlock()

	old, ok := i.internal[m.PacketID]
	i.internal[m.PacketID] = m
	i.addBytes(heldBytes(m) - heldBytes(old))
	return !ok
}

// SetReceiving keeps the state of a QoS 2 message received, under the
// client's packet identifier (apd patch).
func (i *Inflight) SetReceiving(m packets.Packet) bool {
	i.Lock()
	defer i.Unlock()
	if i.receiving == nil {
		i.receiving = map[uint16]packets.Packet{}
	}
	_, ok := i.receiving[m.PacketID]
	i.receiving[m.PacketID] = m
	return !ok
}

// GetReceiving returns the state of a QoS 2 message received (apd patch).
func (i *Inflight) GetReceiving(id uint16) (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()
	m, ok := i.receiving[id]
	return m, ok
}

// DeleteReceiving forgets a QoS 2 message received, and reports whether it
// was there (apd patch).
func (i *Inflight) DeleteReceiving(id uint16) bool {
	i.Lock()
	defer i.Unlock()
	_, ok := i.receiving[id]
	delete(i.receiving, id)
	return ok
}

// Get returns an inflight packet by packet id.
func (i *Inflight) Get(id uint16) (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()

	if m, ok := i.internal[id]; ok {
		return m, true
	}

	return packets.Packet{}, false
}

// Len returns the size of the inflight messages map.
func (i *Inflight) Len() int {
	i.RLock()
	defer i.RUnlock()
	return len(i.internal)
}

// Clone returns a new instance of Inflight with the same message data.
// This is used when transferring inflights from a taken-over session.
func (i *Inflight) Clone() *Inflight {
	c := NewInflights()
	i.RLock()
	defer i.RUnlock()
	for k, v := range i.internal {
		c.internal[k] = v
	}
	for k, v := range i.receiving {
		c.receiving[k] = v
	}
	c.total = i.total
	c.addBytes(i.bytes)
	return c
}

// GetAll returns all the inflight messages.
func (i *Inflight) GetAll(immediate bool) []packets.Packet {
	i.RLock()
	defer i.RUnlock()

	m := []packets.Packet{}
	for _, v := range i.internal {
		if !immediate || (immediate && v.Expiry < 0) {
			m = append(m, v)
		}
	}

	sort.Slice(m, func(i, j int) bool {
		return uint16(m[i].Created) < uint16(m[j].Created)
	})

	return m
}

// NextImmediate returns the next inflight packet which is indicated to be sent immediately.
// This typically occurs when the quota has been exhausted, and we need to wait until new quota
// is free to continue sending.
func (i *Inflight) NextImmediate() (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()

	m := i.GetAll(true)
	if len(m) > 0 {
		return m[0], true
	}

	return packets.Packet{}, false
}

// Delete removes an in-flight message from the map. Returns true if the message existed.
func (i *Inflight) Delete(id uint16) bool {
	i.Lock()
	defer i.Unlock()

	old, ok := i.internal[id]
	delete(i.internal, id)
	i.addBytes(-heldBytes(old))

	return ok
}

// TakeRecieveQuota reduces the receive quota by 1.
func (i *Inflight) DecreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) > 0 {
		atomic.AddInt32(&i.receiveQuota, -1)
	}
}

// TakeRecieveQuota increases the receive quota by 1.
func (i *Inflight) IncreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) < atomic.LoadInt32(&i.maximumReceiveQuota) {
		atomic.AddInt32(&i.receiveQuota, 1)
	}
	select { // wake a read loop waiting for quota (apd patch)
	case i.quotaFreed <- struct{}{}:
	default:
	}
}

// waitReceiveQuota waits, while acknowledgements held back by a hook use
// the whole receive quota, for one of them to be released: the client's
// reading pauses (back-pressure through TCP) instead of the client being
// disconnected for a quota that only the server can return. It reports
// whether there is quota; false if none is held back (the client itself
// exceeded it) or the client went (apd patch).
func (i *Inflight) waitReceiveQuota(done <-chan struct{}) bool {
	for atomic.LoadInt32(&i.receiveQuota) == 0 {
		if atomic.LoadInt32(&i.heldAcks) == 0 {
			return false
		}
		select {
		case <-i.quotaFreed:
		case <-done:
			return false
		}
	}
	return true
}

// ResetReceiveQuota resets the receive quota to the maximum allowed value.
func (i *Inflight) ResetReceiveQuota(n int32) {
	atomic.StoreInt32(&i.receiveQuota, n)
	atomic.StoreInt32(&i.maximumReceiveQuota, n)
}

// DecreaseSendQuota reduces the send quota by 1.
func (i *Inflight) DecreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) > 0 {
		atomic.AddInt32(&i.sendQuota, -1)
	}
}

// IncreaseSendQuota increases the send quota by 1.
func (i *Inflight) IncreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) < atomic.LoadInt32(&i.maximumSendQuota) {
		atomic.AddInt32(&i.sendQuota, 1)
	}
}

// ResetSendQuota resets the send quota to the maximum allowed value.
func (i *Inflight) ResetSendQuota(n int32) {
	atomic.StoreInt32(&i.sendQuota, n)
	atomic.StoreInt32(&i.maximumSendQuota, n)
}
