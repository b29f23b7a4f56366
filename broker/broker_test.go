package broker

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/apd-telemetry/apd/internal/mqttc"
)

func TestSysTopicsAndRetained(t *testing.T) {
	t.Parallel()
	b, err := Start(Options{Addr: "127.0.0.1:0", SysInterval: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !strings.HasPrefix(b.Addr(), "127.0.0.1:") || strings.HasSuffix(b.Addr(), ":0") {
		t.Fatalf("Addr = %s", b.Addr())
	}
	if err := b.Publish("apd/h/$ack", []byte(`{"seq":3}`), true); err != nil {
		t.Fatal(err)
	}
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "t", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan string, 10)
	for _, f := range []string{"$SYS/broker/version", "apd/h/$ack"} {
		if err := c.Subscribe(f, func(topic string, p []byte) { got <- topic + " " + string(p) }); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for !seen["sys"] || !seen["ack"] {
		select {
		case m := <-got:
			if strings.HasPrefix(m, "$SYS/broker/version ") {
				seen["sys"] = true
			}
			if m == `apd/h/$ack {"seq":3}` {
				seen["ack"] = true
			}
		case <-timeout:
			t.Fatalf("saw %v", seen)
		}
	}
	if !b.WaitGone("nobody", 0) {
		t.Error("WaitGone of an unknown client = false")
	}
	c.Close()
	if !b.WaitGone("t", 2*time.Second) {
		t.Error("client still connected after Close")
	}
}

func TestStartAddressInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Start(Options{Addr: l.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v", err)
	}
}

// TestStateSurvivesRestart: a persistent subscriber's session, its
// subscription, the messages queued for it while it was away and retained
// messages all survive a broker restart.
func TestStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	// What survives is in the state file: the restarted broker may listen
	// on another port.
	state := filepath.Join(t.TempDir(), "broker.db")
	b, err := Start(Options{Addr: "127.0.0.1:0", StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 100)
	handler := func(topic string, p []byte) { got <- topic + " " + string(p) }
	sub, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "aggregator", QoS: 1, Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe("apd/+/t", handler); err != nil {
		t.Fatal(err)
	}
	sub.Close()
	b.WaitGone("aggregator", 2*time.Second)
	pub, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "device", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := pub.Publish(context.Background(), "apd/h/t", []byte(fmt.Sprint(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	_ = pub.Publish(context.Background(), "apd/h/$status", []byte(`{"state":"online"}`), true)
	pub.Close()
	b.Close()

	b, err = Start(Options{Addr: "127.0.0.1:0", StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The session is resumed: its queue arrives before any new subscription.
	sub, err = mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "aggregator", QoS: 1, Persistent: true,
		Unsolicited: func(m mqttc.Message) { handler(m.Topic, m.Payload) }})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Retained messages are back for any new subscriber.
	watcher, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "watcher", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	_ = watcher.Subscribe("apd/+/$status", handler)
	want := map[string]bool{"apd/h/t 0": true, "apd/h/t 1": true, "apd/h/t 2": true, `apd/h/$status {"state":"online"}`: true}
	timeout := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-got:
			delete(want, m)
		case <-timeout:
			t.Fatalf("after restart still missing %v", want)
		}
	}
}

// TestRetainedLastWriteWins: retained messages published faster than the
// state writer writes them (an aggregator acknowledging its hosts commit
// after commit) are written in batches in which a topic's last message
// supersedes the earlier ones; after a restart each topic holds its last,
// and a cleared topic stays cleared.
func TestRetainedLastWriteWins(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "broker.db")
	b, err := Start(Options{Addr: "127.0.0.1:0", StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		for _, h := range []string{"a", "b", "gone"} {
			if err := b.Publish("apd/"+h+"/$ack", fmt.Appendf(nil, `{"seq":%d}`, i), true); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Publish("apd/gone/$ack", nil, true); err != nil { // an empty retained message clears the topic
		t.Fatal(err)
	}
	b.Close()

	b, err = Start(Options{Addr: "127.0.0.1:0", StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The broker's retained messages, as restored from the file: what any
	// subscriber is sent.
	var restored []string
	for _, pk := range b.srv.Topics.Messages("apd/+/$ack") {
		restored = append(restored, pk.TopicName+" "+string(pk.Payload))
	}
	sort.Strings(restored)
	if want := []string{`apd/a/$ack {"seq":499}`, `apd/b/$ack {"seq":499}`}; fmt.Sprint(restored) != fmt.Sprint(want) {
		t.Errorf("after restart the retained messages are %q, want %q", restored, want)
	}
	got := make(chan string, 10)
	watcher, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "watcher", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	if err := watcher.Subscribe("apd/+/$ack", func(topic string, p []byte) { got <- topic + " " + string(p) }); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{`apd/a/$ack {"seq":499}`: true, `apd/b/$ack {"seq":499}`: true}
	timeout := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-got:
			if !want[m] {
				t.Errorf("after restart: %s", m)
			}
			delete(want, m)
		case <-timeout:
			t.Fatalf("after restart still missing %v", want)
		}
	}
}

// TestPublishState: state messages ($acks) reach a QoS 1 subscriber at QoS
// 0 (no in-flight entry, no PUBACK), are retained, and a subscriber that
// comes later gets the latest. They are not kept in the state file (their
// publisher publishes them again at start), nor is a copy an earlier run
// kept.
func TestPublishState(t *testing.T) {
	t.Parallel()
	// An earlier apd published its $ack as an ordinary retained message,
	// which its state file kept.
	state := filepath.Join(t.TempDir(), "broker.db")
	b, err := Start(Options{Addr: "127.0.0.1:0", StatePath: state})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("apd/pi/$ack", []byte(`{"seq":0}`), true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if b, err = Start(Options{Addr: "127.0.0.1:0", StatePath: state}); err != nil {
		t.Fatal(err)
	}
	defer func() { b.Close() }()
	type msg struct {
		payload string
		qos     byte
	}
	got := make(chan msg, 10)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("device"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Subscribe("apd/pi/$ack", 1, func(_ paho.Client, m paho.Message) { got <- msg{string(m.Payload()), m.Qos()} }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case m := <-got: // the earlier run's, retained
		if m.payload != `{"seq":0}` {
			t.Errorf("retained %q, want the earlier run's", m.payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the earlier run's retained message never arrived")
	}
	for _, p := range []string{`{"seq":1}`, `{"seq":2}`} {
		if err := b.PublishState("apd/pi/$ack", []byte(p)); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m.payload != p || m.qos != 0 {
				t.Errorf("got %q at QoS %d, want %q at QoS 0", m.payload, m.qos, p)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s never arrived", p)
		}
	}
	late, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "late", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	retained := make(chan string, 10)
	_ = late.Subscribe("apd/pi/$ack", func(_ string, p []byte) { retained <- string(p) })
	select {
	case p := <-retained:
		if p != `{"seq":2}` {
			t.Errorf("retained %s, want the latest", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained message")
	}
	late.Close()
	c.Disconnect(0)
	b.Close()

	// Restarted, the broker has no retained message on the topic to send
	// a subscriber: neither the state messages nor the earlier run's.
	if b, err = Start(Options{Addr: "127.0.0.1:0", StatePath: state}); err != nil {
		t.Fatal(err)
	}
	for _, pk := range b.srv.Topics.Messages("apd/pi/$ack") {
		t.Errorf("after a restart the state file gave back %s", pk.Payload)
	}
}
