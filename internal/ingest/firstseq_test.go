package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// TestImpossibleFirstSeqRejected: a host's $status whose first_seq would
// skip more seqs than any spool holds is counted as a seq_out_of_range
// rejection and kept as a dead letter, and the host's readings go on
// being acknowledged.
func TestImpossibleFirstSeqRejected(t *testing.T) {
	st := openStore(t)
	acks := make(chan string, 16)
	in := ingest.New(st, func(_ string, p []byte) error { acks <- string(p); return nil }, ingest.Options{})
	defer in.Close()
	submit := func(topic string, p []byte) {
		t.Helper()
		done := make(chan struct{})
		if err := in.Submit(topic, p, func() { close(done) }); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	submit("apd/pi/$status", []byte(`{"state":"online","first_seq":1,"spool":"s1"}`))
	submit("apd/pi/t", payload("pi", "t", 1, 1, 20))
	far := uint64(1 + store.MaxSeqJump + 2)
	submit("apd/pi/$status", fmt.Appendf(nil, `{"state":"online","first_seq":%d,"spool":"s1"}`, far))
	submit("apd/pi/t", payload("pi", "t", 2, 2, 21))
	if got := in.Metrics().Rejected[ingest.ReasonSeqOutOfRange].Value(); got != 1 {
		t.Errorf("seq_out_of_range rejections %d, want 1", got)
	}
	dl, err := st.DeadLetters(10)
	if err != nil || len(dl) != 1 || dl[0].Topic != "apd/pi/$status" || !strings.Contains(dl[0].Reason, "first_seq") {
		t.Errorf("dead letters %+v, %v; want the status", dl, err)
	}
	hosts, err := st.Hosts()
	if err != nil || len(hosts) != 1 || hosts[0].Watermark != 2 {
		t.Errorf("hosts %+v, %v; want watermark 2", hosts, err)
	}
}

// TestFirstSeqAheadOfSentSeqsWaits: through the real broker, a device
// that has sent seqs 1..54 publishes a retained $status with first_seq
// 99999 (same spool), then readings 55..60. The status is no proof that
// seqs up to 99998 were ever made: the readings 55..60 are acknowledged
// on the host's $ack, nothing is counted lost, and the declared floor
// waits in the host's record until a reading at or above it arrives.
func TestFirstSeqAheadOfSentSeqsWaits(t *testing.T) {
	st := openStore(t)
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
