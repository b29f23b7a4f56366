// SPDX-License-Identifier: MIT
// apd patch: tests of acknowledgements held back by a hook, per-direction
// packet identifiers and in-flight bytes.

package mqtt

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// holdHook holds back the acknowledgement of every PUBLISH whose packet
// identifier is in hold.
type holdHook struct {
	HookBase
	hold     map[uint16]bool
	mu       sync.Mutex
	releases map[uint16]func()
}

func (h *holdHook) ID() string { return "hold" }

func (h *holdHook) Provides(b byte) bool { return b == OnPublishAck }

func (h *holdHook) OnPublishAck(_ *Client, pk packets.Packet, release func()) bool {
	if !h.hold[pk.PacketID] {
		return false
	}
	h.mu.Lock()
	h.releases[pk.PacketID] = release
	h.mu.Unlock()
	return true
}

func publishQos1(id uint16) packets.Packet {
	pk := *packets.TPacketData[packets.Publish].Get(packets.TPublishQos1).Packet
	pk.PacketID = id
	return pk
}

// readAcks reads n 4-byte MQTT 3.1.1 PUBACKs from r and returns their
// packet identifiers.
func readAcks(t *testing.T, r io.Reader, n int) []uint16 {
	t.Helper()
	var ids []uint16
	buf := make([]byte, 4)
	for j := 0; j < n; j++ {
		_, err := io.ReadFull(r, buf)
		require.NoError(t, err)
		require.Equal(t, packets.Puback<<4, buf[0])
		ids = append(ids, uint16(buf[2])<<8|uint16(buf[3]))
	}
	return ids
}

func TestHeldAcknowledgementsGoOutInOrder(t *testing.T) {
	s := newServer()
	h := &holdHook{hold: map[uint16]bool{7: true}, releases: map[uint16]func(){}}
	require.NoError(t, s.AddHook(h, nil))
	cl, r, _ := newTestClient()
	cl.ops.hooks = s.hooks

	require.NoError(t, s.processPacket(cl, publishQos1(7)))
	require.NoError(t, s.processPacket(cl, publishQos1(8)))

	// Nothing may arrive before 7 is released, though 8 is not held.
	_ = r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := r.Read(make([]byte, 1))
	require.Error(t, err, "an acknowledgement overtook a held one")
	_ = r.SetReadDeadline(time.Time{})

	h.mu.Lock()
	release := h.releases[7]
	h.mu.Unlock()
	release()
	release() // a second call does nothing
	require.Equal(t, []uint16{7, 8}, readAcks(t, r, 2))
	require.Equal(t, int32(0), cl.State.Inflight.heldAcks)
	require.Equal(t, int32(10), cl.State.Inflight.receiveQuota)
}

func TestHeldAcknowledgementsPauseReadingAtQuota(t *testing.T) {
	s := newServer()
	h := &holdHook{hold: map[uint16]bool{1: true, 2: true}, releases: map[uint16]func(){}}
	require.NoError(t, s.AddHook(h, nil))
	cl, r, _ := newTestClient()
	cl.ops.hooks = s.hooks
	cl.State.Inflight.ResetReceiveQuota(2)

	require.NoError(t, s.processPacket(cl, publishQos1(1)))
	require.NoError(t, s.processPacket(cl, publishQos1(2)))
	third := make(chan error, 1)
	go func() { third <- s.processPacket(cl, publishQos1(3)) }()
	select {
	case err := <-third:
		t.Fatalf("third publish processed while two acknowledgements held the quota: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	require.False(t, cl.Closed(), "client disconnected for a quota the server holds")

	go func() { _ = readAcks(t, r, 3) }()
	h.mu.Lock()
	release := h.releases[1]
	h.mu.Unlock()
	release()
	require.NoError(t, <-third)
	require.False(t, cl.Closed())
}

func TestPublishDoesNotCancelDeliveryWithSameID(t *testing.T) {
	s := newServer()
	cl, r, _ := newTestClient()
	go func() { _, _ = io.Copy(io.Discard, r) }()
	delivery := packets.Packet{PacketID: 7, FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName: "a/b", Payload: []byte("hello")}
	cl.State.Inflight.Set(delivery)
	require.NoError(t, s.processPacket(cl, publishQos1(7)))
	got, ok := cl.State.Inflight.Get(7)
	require.True(t, ok, "the client's publish cancelled the server's delivery")
	require.Equal(t, "hello", string(got.Payload))
}

func TestPubackMqtt5SaysSuccess(t *testing.T) {
	s := newServer()
	s.Options.Capabilities.Compatibilities.NoInheritedPropertiesOnAck = true
	cl, r, _ := newTestClient()
	cl.Properties.ProtocolVersion = 5
	pk := *packets.TPacketData[packets.Publish].Get(packets.TPublishQos1Mqtt5).Packet
	pk.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
	done := make(chan []byte, 1)
	go func() {
		b := make([]byte, 64)
		n, _ := r.Read(b)
		done <- b[:n]
	}()
	require.NoError(t, s.processPacket(cl, pk))
	ack := <-done
	// PUBACK, remaining length 2 (packet id only: reason Success and no
	// properties may be left out, MQTT 5 §3.4.2.1), or 3 with reason 0x00.
	require.Equal(t, packets.Puback<<4, ack[0])
	if ack[1] > 2 {
		require.Equal(t, byte(0), ack[4], "PUBACK reason code")
	}
	require.False(t, bytes.Contains(ack, []byte("k")), "user properties echoed on the PUBACK")
}

func TestInflightBytes(t *testing.T) {
	var total int64
	i := newInflightsCounted(&total)
	i.Set(packets.Packet{PacketID: 1, TopicName: "ab", Payload: make([]byte, 10)})
	i.Set(packets.Packet{PacketID: 2, TopicName: "ab", Payload: make([]byte, 20)})
	require.Equal(t, int64(34), i.Bytes())
	i.Set(packets.Packet{PacketID: 2, TopicName: "ab", Payload: make([]byte, 5)}) // replaced
	require.Equal(t, int64(19), i.Bytes())
	c := i.Clone()
	require.Equal(t, int64(38), total)
	i.Delete(1)
	i.Delete(2)
	require.Equal(t, int64(0), i.Bytes())
	require.Equal(t, int64(19), c.Bytes())
	require.Equal(t, int64(19), total)
}
