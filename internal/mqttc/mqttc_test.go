package mqttc_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestReconnectAndResubscribe restarts the broker under a connected client:
// the client reconnects by itself and its subscription works again,
// although the new broker knows nothing of the old session.
func TestReconnectAndResubscribe(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	// The broker comes back on the port it had (for the moment in
	// between, another process could take it): the client knows no other.
	addr := b.Addr()
	connects := make(chan struct{}, 10)
	sub, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + addr, ClientID: "sub", QoS: 1,
		OnConnect: func() { connects <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chan string, 10)
	if err := sub.Subscribe("apd/+/x", func(topic string, p []byte) { got <- string(p) }); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = broker.Start(broker.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	<-connects // the first connection
	select {
	case <-connects:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnection within 10 s")
	}
	// Retained, it reaches the subscription whenever it is made again.
	if err := b.Publish("apd/h/x", []byte("after restart"), true); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "after restart" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message after the restart: not subscribed again")
	}
}

func TestRetryConnectsLater(t *testing.T) {
	t.Parallel()
	// The client is started first, so the broker's port is chosen for it.
	addr := testutil.FreeAddr(t)
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + addr, ClientID: "late", QoS: 1, Retry: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Publish(context.Background(), "a/b", []byte("x"), false); err == nil {
		t.Fatal("publish without a broker succeeded")
	}
	b, err := broker.Start(broker.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	testutil.WaitFor(t, "the client connected", 30*time.Second, c.Connected) // a bound, not a measure: the backoff may be seconds by then
}

func TestDialErrors(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"127.0.0.1:1883", "http://127.0.0.1:1883", "tcp://"} {
		if _, err := mqttc.Dial(mqttc.Options{URL: u}); err == nil {
			t.Errorf("Dial(%q) succeeded", u)
		}
	}
	_, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + testutil.RefusedAddr(t), ConnectTimeout: time.Second})
	if !errors.Is(err, mqttc.ErrUnreachable) {
		t.Errorf("closed port: err = %v", err)
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"apd/#", "apd/h/s", true},
		{"apd/#", "apd", true},
		{"apd/+/s", "apd/h/s", true},
		{"apd/+/s", "apd/h/t", false},
		{"apd/+/+", "apd/h/$ack", true},
		{"apd/h/$ack", "apd/h/$ack", true},
		{"apd/+", "apd/h/s", false},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
	}
	for _, tc := range tests {
		if got := mqttc.Match(tc.filter, tc.topic); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.filter, tc.topic, got)
		}
	}
}

// TestMessagesArriveInOrder: a subscriber's handler sees one publisher's
// QoS 1 messages in the order they were published (a host's readings
// must reach the aggregator in order), even when the handler is slow.
func TestMessagesArriveInOrder(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sub, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "sub", QoS: 1, ManualAck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const n = 300
	got := make(chan int, n)
	err = sub.SubscribeMessages("apd/h/+", func(m mqttc.Message) {
		var i int
		_, _ = fmt.Sscan(string(m.Payload), &i)
		if i%7 == 0 {
			time.Sleep(time.Millisecond) // a handler that sometimes takes a while: what is tested
		}
		m.Ack()
		got <- i
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := b.Publish("apd/h/s", []byte(fmt.Sprint(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	for want := range n {
		select {
		case i := <-got:
			if i != want {
				t.Fatalf("message %d arrived at position %d", i, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d messages arrived", want, n)
		}
	}
}

// TestSeveralBrokers: with the nodes of a cluster given as a list, the
// client connects to one that answers, and when that one goes away it
// reconnects to another.
func TestSeveralBrokers(t *testing.T) {
	t.Parallel()
	a, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dead, addrA, addrB := testutil.RefusedAddr(t), a.Addr(), b.Addr()
	connects := make(chan struct{}, 10)
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + dead + ", tcp://" + addrA + ",tcp://" + addrB, ClientID: "device", QoS: 1,
		OnConnect: func() { connects <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-connects
	if !a.WaitGone("nobody", 0) || a.WaitGone("device", 0) {
		t.Fatal("not connected to the first broker that answers")
	}
	a.Close()
	select {
	case <-connects:
	case <-time.After(15 * time.Second):
		t.Fatal("no reconnection to the other broker within 15 s")
	}
	if b.WaitGone("device", 0) {
		t.Fatal("reconnected, but not to the broker left")
	}
	if _, err := mqttc.New(mqttc.Options{URL: "tcp://" + addrA + ",bogus"}); err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("a bad URL in the list: %v", err)
	}
}

// holdAcks is a broker hook that holds back the PUBACK of every QoS 1
// PUBLISH until the test releases it, and reports each arrival.
type holdAcks struct {
	mqtt.HookBase
	mu      sync.Mutex
	release []func()
	topics  []string
	arrived chan string
}

func newHoldAcks() *holdAcks { return &holdAcks{arrived: make(chan string, 1000)} }

func (h *holdAcks) ID() string { return "hold-acks" }

func (h *holdAcks) Provides(b byte) bool { return b == mqtt.OnPublishAck }

func (h *holdAcks) OnPublishAck(_ *mqtt.Client, pk packets.Packet, release func()) bool {
	h.mu.Lock()
	h.release = append(h.release, release)
	h.topics = append(h.topics, pk.TopicName)
	h.mu.Unlock()
	h.arrived <- pk.TopicName
	return true
}

// releaseFirst releases the acknowledgements of the first n PUBLISHes.
func (h *holdAcks) releaseFirst(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.release[:n] {
		r()
	}
}

func (h *holdAcks) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.topics)
}

// waitArrivals waits until n more PUBLISHes arrived.
func (h *holdAcks) waitArrivals(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-h.arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d PUBLISHes arrived within 10 s", i, n)
		}
	}
}

func startHolding(t *testing.T) (*holdAcks, *broker.Broker, *mqttc.Client) {
	t.Helper()
	h := newHoldAcks()
	b, err := broker.Start(broker.Options{Addr: "127.0.0.1:0", Hooks: []mqtt.Hook{h}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "device", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return h, b, c
}

func messages(n int) ([]string, [][]byte) {
	topics, payloads := make([]string, n), make([][]byte, n)
	for i := range n {
		topics[i], payloads[i] = fmt.Sprintf("apd/pi/s%d", i), []byte(fmt.Sprint(i))
	}
	return topics, payloads
}

// TestPublishAllDoesNotWaitInBetween: a broker that acknowledges only
// after storing receives every message of a batch before it has
// acknowledged any, in the order given, and PublishAll returns once all
// are acknowledged.
func TestPublishAllDoesNotWaitInBetween(t *testing.T) {
	t.Parallel()
	h, _, c := startHolding(t)
	const n = 30
	topics, payloads := messages(n)
	done := make(chan []error, 1)
	go func() { done <- c.PublishAll(context.Background(), topics, payloads) }()
	h.waitArrivals(t, n) // no PUBACK has been released
	if got := h.received(); !slices.Equal(got, topics) {
		t.Fatalf("received in the order %v", got)
	}
	select {
	case errs := <-done:
		t.Fatalf("PublishAll returned before any acknowledgement: %v", errs)
	default:
	}
	h.releaseFirst(n)
	select {
	case errs := <-done:
		if len(errs) != n {
			t.Fatalf("%d errors for %d messages", len(errs), n)
		}
		for i, err := range errs {
			if err != nil {
				t.Errorf("message %d: %v", i, err)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PublishAll did not return after every acknowledgement")
	}
}

// TestPublishAllBoundsInFlight: beyond MaxInFlight unacknowledged
// messages, the next waits for the oldest's acknowledgement.
func TestPublishAllBoundsInFlight(t *testing.T) {
	t.Parallel()
	h, _, c := startHolding(t)
	n := mqttc.MaxInFlight + 10
	topics, payloads := messages(n)
	done := make(chan []error, 1)
	go func() { done <- c.PublishAll(context.Background(), topics, payloads) }()
	h.waitArrivals(t, mqttc.MaxInFlight)
	select {
	case topic := <-h.arrived:
		t.Fatalf("%s sent with %d messages unacknowledged", topic, mqttc.MaxInFlight)
	case <-time.After(200 * time.Millisecond):
	}
	h.releaseFirst(1)
	h.waitArrivals(t, 1)
	if got := h.received(); got[mqttc.MaxInFlight] != topics[mqttc.MaxInFlight] {
		t.Fatalf("after the first acknowledgement came %s", got[mqttc.MaxInFlight])
	}
	h.releaseFirst(mqttc.MaxInFlight + 1)
	h.waitArrivals(t, n-mqttc.MaxInFlight-1)
	h.releaseFirst(n)
	select {
	case errs := <-done:
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PublishAll did not return after every acknowledgement")
	}
	if got := h.received(); !slices.Equal(got, topics) {
		t.Fatalf("received in the order %v", got)
	}
}

// TestPublishAllErrorsPerMessage: the messages acknowledged before ctx
// ends succeed, the rest fail with ctx's error, each naming its topic;
// without a connection every message fails.
func TestPublishAllErrorsPerMessage(t *testing.T) {
	t.Parallel()
	h, b, c := startHolding(t)
	marker := make(chan struct{}, 1)
	if err := c.Subscribe("apd/marker", func(string, []byte) { marker <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	const n, acked = 20, 7
	topics, payloads := messages(n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan []error, 1)
	go func() { done <- c.PublishAll(ctx, topics, payloads) }()
	h.waitArrivals(t, n)
	h.releaseFirst(acked)
	// The broker writes what it sends the client in order: once a message
	// published after the release arrives, the PUBACKs released are in.
	if err := b.Publish("apd/marker", nil, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-marker:
	case <-time.After(10 * time.Second):
		t.Fatal("no marker message")
	}
	cancel()
	var errs []error
	select {
	case errs = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("PublishAll did not return when ctx ended")
	}
	for i, err := range errs {
		switch {
		case i < acked && err != nil:
			t.Errorf("message %d, acknowledged: %v", i, err)
		case i >= acked && !errors.Is(err, context.Canceled):
			t.Errorf("message %d, not acknowledged: err = %v", i, err)
		case i >= acked && !strings.Contains(err.Error(), topics[i]):
			t.Errorf("message %d: error %q does not name its topic", i, err)
		}
	}
	c.Close()
	for i, err := range c.PublishAll(context.Background(), topics[:3], payloads[:3]) {
		if err == nil || !strings.Contains(err.Error(), "not connected") {
			t.Errorf("closed client, message %d: err = %v", i, err)
		}
	}
}
