package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store/boltdb"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
	mqtt "github.com/mochi-mqtt/server/v2"
)

func openStore(t *testing.T) *boltdb.Store {
	t.Helper()
	st, err := boltdb.Open(filepath.Join(t.TempDir(), "apd.db"), boltdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func dial(t *testing.T, addr, id string) *mqttc.Client {
	t.Helper()
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + addr, ClientID: id, QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func payload(host, sensor string, seq uint64, minute int, v float64) []byte {
	r := schema.Reading{Host: host, Sensor: sensor, Seq: seq,
		Time:  time.Now().UTC().Truncate(time.Hour).Add(time.Duration(minute) * time.Minute),
		Value: schema.Quantity{Magnitude: v, Unit: "degC"}.Raw()}
	return r.AppendJSON(nil, schema.WithIdentity)
}

func count(t *testing.T, st *boltdb.Store, q store.Query) int {
	t.Helper()
	n := 0
	if err := st.Scan(q, func(*schema.Reading) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// startEmbedded runs an ingester on st behind a broker on a free loopback
// port, acknowledging through the broker as apd serve does; both stop
// with the test.
func startEmbedded(t *testing.T, st *boltdb.Store, opts ingest.Options, bopts broker.Options) (*ingest.Ingester, *broker.Broker) {
	t.Helper()
	in := ingest.NewIngester(st, opts)
	bopts.Addr = testutil.FreeAddr(t)
	bopts.Hooks = []mqtt.Hook{ingest.NewHook(in)}
	brk, err := broker.New(bopts)
	if err != nil {
		t.Fatal(err)
	}
	in.Start(func(topic string, p []byte) error { return brk.Publish(topic, p, true) })
	if err := brk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brk.StopListening(); in.Close(); brk.Close() })
	return in, brk
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, 10*time.Second, cond)
}

// TestEmbeddedIngestion runs the real broker with the ingest hook, real
// MQTT clients and a real bbolt file: valid readings around bad input are
// all stored, the bad input goes to dead letters with its reason, and each
// host's $ack follows the commits.
func TestEmbeddedIngestion(t *testing.T) {
	st := openStore(t)
	in, brk := startEmbedded(t, st, ingest.Options{MaxPayload: 1024}, broker.Options{})

	watcher := dial(t, brk.Addr(), "watcher")
	acks := make(chan schema.Ack, 100)
	if err := watcher.Subscribe("apd/pi/$ack", func(_ string, p []byte) {
		var a schema.Ack
		if json.Unmarshal(p, &a) == nil {
			acks <- a
		}
	}); err != nil {
		t.Fatal(err)
	}

	pub := dial(t, brk.Addr(), "device")
	ctx := context.Background()
	send := func(topic string, p []byte) {
		t.Helper()
		if err := pub.Publish(ctx, topic, p, false); err != nil {
			t.Fatal(err)
		}
	}
	bad := []struct {
		topic, payload, reason string
	}{
		{"apd/pi/temperature", `{"v":1,`, ingest.ReasonInvalidJSON},
		{"apd/pi/temperature", `hello`, ingest.ReasonInvalidJSON},
		{"apd/pi/temperature", `{"v":7,"ts":"2026-11-23T12:00:00Z","value":1}`, ingest.ReasonVersion},
		{"apd/pi/temperature", string(payload("other", "temperature", 99, 0, 1)), ingest.ReasonTopicMismatch},
		{"apd/p%i/temperature", `1`, ingest.ReasonInvalidName},
		{"apd/pi/temperature", `{"v":1,"value":1}`, ingest.ReasonInvalidField},
		{"apd/pi/temperature", strings.Repeat("1", 2000), ingest.ReasonTooLarge},
		{"apd/pi/temperature", "\"\xff\xfe\"", ingest.ReasonInvalidUTF8},
		{"apd/pi/temperature", `1e999`, ingest.ReasonInvalidField},
		{"apd/pi/temperature", `{"v":1,"ts":"1970-01-01T00:00:00Z","seq":1000,"value":1}`, ingest.ReasonTimeWindow},
		{"apd/pi/temperature", `{"v":1,"ts":"2999-01-01T00:00:00Z","seq":1000,"value":1}`, ingest.ReasonTimeWindow},
		{"apd/pi/temperature/extra", `1`, ingest.ReasonInvalidTopic},
		{"apd/pi/../x", `1`, ingest.ReasonInvalidTopic},
		{"apd/pi/temperature", string(payload("pi", "temperature", 1<<53+1, 30, 1)), ingest.ReasonSeqOutOfRange},
		{"apd/pi/$status", `{"state":"online","first_seq":18446744073709551615}`, ingest.ReasonSeqOutOfRange},
	}
	seq := uint64(0)
	for i, b := range bad {
		seq++
		send("apd/pi/temperature", payload("pi", "temperature", seq, i, 20+float64(i)))
		send(b.topic, []byte(b.payload))
	}
	seq++
	send("apd/pi/temperature", payload("pi", "temperature", seq, 59, 30))
	send("apd/shed/temperature", []byte("21.5"))
	// A duplicate of the first reading: stored once.
	send("apd/pi/temperature", payload("pi", "temperature", 1, 0, 20))

	waitFor(t, "all readings stored", func() bool {
		return in.Metrics().Stored.Value() == seq+1 && in.Metrics().Duplicates.Value() == 1
	})
	if got := count(t, st, store.Query{Sensor: "temperature", Hosts: []string{"pi"}}); got != int(seq) {
		t.Errorf("stored %d readings of pi, want %d", got, seq)
	}
	if got := count(t, st, store.Query{Sensor: "temperature", Hosts: []string{"shed"}}); got != 1 {
		t.Errorf("bare payload stored %d times", got)
	}
	m := in.Metrics()
	if m.RejectedTotal() != uint64(len(bad)) {
		t.Errorf("rejected %d, want %d", m.RejectedTotal(), len(bad))
	}
	dead, err := st.DeadLetters(100)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, d := range dead {
		reasons[strings.SplitN(d.Reason, ":", 2)[0]]++
	}
	for _, b := range bad {
		if reasons[b.reason] == 0 {
			t.Errorf("no dead letter with reason %s (have %v)", b.reason, reasons)
		}
		if m.Rejected[b.reason].Value() == 0 {
			t.Errorf("counter for %s is 0", b.reason)
		}
	}
	waitFor(t, "ack of the last seq", func() bool {
		for {
			select {
			case a := <-acks:
				if a.Seq == seq {
					return true
				}
			default:
				return false
			}
		}
	})
}

// TestExternalBrokerSubscription runs the aggregator path of apd aggregate:
// a persistent paho subscription with manual acknowledgement to a broker
// that has no ingest hook.
func TestExternalBrokerSubscription(t *testing.T) {
	brk, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	st := openStore(t)
	aggClient, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "apd-aggregator",
		QoS: 1, Persistent: true, ManualAck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer aggClient.Close()
	in := ingest.New(st, func(topic string, p []byte) error {
		go aggClient.Publish(context.Background(), topic, p, true)
		return nil
	}, ingest.Options{})
	defer in.Close()
	if err := ingest.Subscribe(in, aggClient, ""); err != nil {
		t.Fatal(err)
	}
	device := dial(t, brk.Addr(), "device")
	acked := make(chan uint64, 10)
	_ = device.Subscribe("apd/ext/$ack", func(_ string, p []byte) {
		var a schema.Ack
		_ = json.Unmarshal(p, &a)
		acked <- a.Seq
	})
	const n = 50
	for i := 1; i <= n; i++ {
		if err := device.Publish(context.Background(), "apd/ext/t", payload("ext", "t", uint64(i), i%60, float64(i)), false); err != nil {
			t.Fatal(err)
		}
	}
	_ = device.Publish(context.Background(), "apd/ext/$status", []byte(`{"state":"online"}`), true)
	waitFor(t, fmt.Sprintf("%d stored", n), func() bool { return count(t, st, store.Query{Hosts: []string{"ext"}}) == n })
	deadline := time.After(10 * time.Second)
	for seq := uint64(0); seq != n; {
		select {
		case seq = <-acked:
		case <-deadline:
			t.Fatalf("last ack %d, want %d", seq, n)
		}
	}
	waitFor(t, "status", func() bool {
		hosts, _ := st.Hosts()
		return len(hosts) == 1 && hosts[0].State == "online"
	})
}
