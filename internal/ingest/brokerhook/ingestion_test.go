package brokerhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest/ingesttest"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// TestEmbeddedIngestion runs the real broker with the ingest hook, real
// MQTT clients and a real bbolt file: valid readings around bad input are
// all stored, the bad input goes to dead letters with its reason, and each
// host's $ack follows the commits.
func TestEmbeddedIngestion(t *testing.T) {
	t.Parallel()
	st := ingesttest.OpenStore(t)
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
		{"apd/pi/temperature", string(ingesttest.Payload("other", "temperature", 99, 0, 1)), ingest.ReasonTopicMismatch},
		{"apd/p%i/temperature", `1`, ingest.ReasonInvalidName},
		{"apd/pi/temperature", `{"v":1,"value":1}`, ingest.ReasonInvalidField},
		{"apd/pi/temperature", strings.Repeat("1", 2000), ingest.ReasonTooLarge},
		{"apd/pi/temperature", "\"\xff\xfe\"", ingest.ReasonInvalidUTF8},
		{"apd/pi/temperature", `1e999`, ingest.ReasonInvalidField},
		{"apd/pi/temperature", `{"v":1,"ts":"1970-01-01T00:00:00Z","seq":1000,"value":1}`, ingest.ReasonTimeWindow},
		{"apd/pi/temperature", `{"v":1,"ts":"2999-01-01T00:00:00Z","seq":1000,"value":1}`, ingest.ReasonTimeWindow},
		{"apd/pi/temperature/extra", `1`, ingest.ReasonInvalidTopic},
		{"apd/pi/../x", `1`, ingest.ReasonInvalidTopic},
		{"apd/pi/temperature", string(ingesttest.Payload("pi", "temperature", 1<<53+1, 30, 1)), ingest.ReasonSeqOutOfRange},
		{"apd/pi/$status", `{"state":"online","first_seq":18446744073709551615}`, ingest.ReasonSeqOutOfRange},
	}
	seq := uint64(0)
	for i, b := range bad {
		seq++
		send("apd/pi/temperature", ingesttest.Payload("pi", "temperature", seq, i, 20+float64(i)))
		send(b.topic, []byte(b.payload))
	}
	seq++
	send("apd/pi/temperature", ingesttest.Payload("pi", "temperature", seq, 59, 30))
	send("apd/shed/temperature", []byte("21.5"))
	// A duplicate of the first reading: stored once.
	send("apd/pi/temperature", ingesttest.Payload("pi", "temperature", 1, 0, 20))

	waitFor(t, "all readings stored", func() bool {
		return in.Metrics().Stored.Value() == seq+1 && in.Metrics().Duplicates.Value() == 1
	})
	if got := ingesttest.Count(t, st, store.Query{Sensor: "temperature", Hosts: []string{"pi"}}); got != int(seq) {
		t.Errorf("stored %d readings of pi, want %d", got, seq)
	}
	if got := ingesttest.Count(t, st, store.Query{Sensor: "temperature", Hosts: []string{"shed"}}); got != 1 {
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

// TestFirstSeqAheadOfSentSeqsWaits: through the real broker, a device
// that has sent seqs 1..54 publishes a retained $status with first_seq
// 99999 (same spool), then readings 55..60. The status is no proof that
// seqs up to 99998 were ever made: the readings 55..60 are acknowledged
// on the host's $ack, nothing is counted lost, and the declared floor
// waits in the host's record until a reading at or above it arrives.
func TestFirstSeqAheadOfSentSeqsWaits(t *testing.T) {
	t.Parallel()
	st := ingesttest.OpenStore(t)
	_, brk := startEmbedded(t, st, ingest.Options{}, broker.Options{})
	watcher := dial(t, brk.Addr(), "watcher")
	acks := make(chan schema.Ack, 256)
	if err := watcher.Subscribe("apd/pi/$ack", func(_ string, p []byte) {
		var a schema.Ack
		if json.Unmarshal(p, &a) == nil {
			acks <- a
		}
	}); err != nil {
		t.Fatal(err)
	}
	awaitAck := func(seq uint64) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case a := <-acks:
				if a.Seq > seq {
					t.Fatalf("ack %d (spool %s) beyond %d", a.Seq, a.Spool, seq)
				}
				if a.Seq == seq && a.Spool == "s1" {
					return
				}
			case <-timeout:
				t.Fatalf("no ack %d of spool s1", seq)
			}
		}
	}
	dev := dial(t, brk.Addr(), "pi")
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	n := 0
	send := func(from, to uint64) {
		t.Helper()
		for q := from; q <= to; q++ {
			r := schema.Reading{Host: "pi", Sensor: "t", Seq: q, Time: base.Add(time.Duration(n) * time.Second),
				Value: schema.Quantity{Magnitude: 20, Unit: "degC"}.Raw()}
			n++
			if err := dev.Publish(ctx, "apd/pi/t", r.AppendJSON(nil, schema.WithIdentity), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	status := func(first uint64) {
		t.Helper()
		p := fmt.Appendf(nil, `{"state":"online","first_seq":%d,"spool":"s1"}`, first)
		if err := dev.Publish(ctx, "apd/pi/$status", p, true); err != nil {
			t.Fatal(err)
		}
	}
	status(1)
	send(1, 54)
	awaitAck(54)
	status(99_999)
	send(55, 60)
	awaitAck(60)
	hosts, err := st.Hosts()
	if err != nil || len(hosts) != 1 || hosts[0].Watermark != 60 || hosts[0].Lost != 0 {
		t.Fatalf("hosts %+v, %v; want pi at watermark 60, nothing lost", hosts, err)
	}
	// Readings from 99999 on prove the overflow: the floor applies.
	send(99_999, 100_001)
	awaitAck(100_001)
	hosts, err = st.Hosts()
	if err != nil || len(hosts) != 1 || hosts[0].Lost != 99_999-61 {
		t.Errorf("hosts %+v, %v; want %d lost", hosts, err, 99_999-61)
	}
}
