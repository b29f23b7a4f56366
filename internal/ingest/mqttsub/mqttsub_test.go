package mqttsub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest/ingesttest"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/mqttsub"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// TestExternalBrokerSubscription runs the aggregator path of apd aggregate:
// a persistent paho subscription with manual acknowledgement to a broker
// that has no ingest hook.
func TestExternalBrokerSubscription(t *testing.T) {
	t.Parallel()
	brk, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in := ingest.NewIngester(st, ingest.Options{})
	aggClient, err := mqttsub.New(in, mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "apd-aggregator"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer aggClient.Close()
	in.Start(func(topic string, p []byte) error {
		go aggClient.Publish(context.Background(), topic, p, true)
		return nil
	})
	defer in.Close()
	if err := aggClient.Start(); err != nil {
		t.Fatal(err)
	}
	device, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "device", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer device.Close()
	acked := make(chan uint64, 10)
	_ = device.Subscribe("apd/ext/$ack", func(_ string, p []byte) {
		var a schema.Ack
		_ = json.Unmarshal(p, &a)
		acked <- a.Seq
	})
	const n = 50
	for i := 1; i <= n; i++ {
		if err := device.Publish(context.Background(), "apd/ext/t", ingesttest.Payload("ext", "t", uint64(i), i%60, float64(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	_ = device.Publish(context.Background(), "apd/ext/$status", []byte(`{"state":"online"}`), true)
	testutil.WaitFor(t, fmt.Sprintf("%d stored", n), 10*time.Second, func() bool { return ingesttest.Count(t, st, store.Query{Hosts: []string{"ext"}}) == n })
	deadline := time.After(10 * time.Second)
	for seq := uint64(0); seq != n; {
		select {
		case seq = <-acked:
		case <-deadline:
			t.Fatalf("last ack %d, want %d", seq, n)
		}
	}
	testutil.WaitFor(t, "status", 10*time.Second, func() bool {
		hosts, _ := st.Hosts()
		return len(hosts) == 1 && hosts[0].State == "online"
	})
}

// TestQueueOfAResumedSession: messages the broker queued for the
// aggregator's persistent session while it was away arrive before the
// subscription is made again; they are stored too, and acknowledged to
// the broker only once committed (a session resumed again gets none of
// them a second time).
func TestQueueOfAResumedSession(t *testing.T) {
	t.Parallel()
	brk, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in := ingest.NewIngester(st, ingest.Options{})
	opts := mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "apd-aggregator"}
	// The session and its subscription, then the aggregator away.
	c, err := mqttsub.New(in, opts, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	device, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "device", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer device.Close()
	const n = 20
	for i := 1; i <= n; i++ {
		if err := device.Publish(context.Background(), "apd/away/t", ingesttest.Payload("away", "t", uint64(i), i, 1), false); err != nil {
			t.Fatal(err)
		}
	}
	in.Start(nil)
	c, err = mqttsub.New(in, opts, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the queued readings stored", 10*time.Second, func() bool { return ingesttest.Count(t, st, store.Query{Hosts: []string{"away"}}) == n })
	testutil.WaitFor(t, "the queued readings acknowledged to the broker", 10*time.Second, func() bool { return brk.QueuedBytes() == 0 })
	if q := brk.Queued(); q != 0 {
		t.Errorf("the broker counts %d messages queued once all are acknowledged", q)
	}
	c.Close()
	in.Close()
	if got := in.Metrics().Received.Value(); got != n {
		t.Errorf("received %d, want %d", got, n)
	}
}
