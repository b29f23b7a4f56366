package mqttc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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
	testutil.WaitFor(t, "the client connected", 10*time.Second, c.Connected)
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
