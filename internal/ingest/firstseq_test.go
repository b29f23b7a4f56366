package ingest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/internal/ingest/ingesttest"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/store"
)

// TestImpossibleFirstSeqRejected: a host's $status whose first_seq would
// skip more seqs than any spool holds is counted as a seq_out_of_range
// rejection and kept as a dead letter, and the host's readings go on
// being acknowledged.
func TestImpossibleFirstSeqRejected(t *testing.T) {
	t.Parallel()
	st := ingesttest.OpenStore(t)
	acks := make(chan string, 16)
	in := ingest.New(st, func(_ string, p []byte) error { acks <- string(p); return nil }, ingest.Options{})
	defer in.Close()
	submit := func(topic string, p []byte) {
		t.Helper()
		done := make(chan struct{})
		if _, err := in.SubmitMessage(topic, p, func() { close(done) }); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	submit("apd/pi/$status", []byte(`{"state":"online","first_seq":1,"spool":"s1"}`))
	submit("apd/pi/t", ingesttest.Payload("pi", "t", 1, 1, 20))
	far := uint64(1 + store.MaxSeqJump + 2)
	submit("apd/pi/$status", fmt.Appendf(nil, `{"state":"online","first_seq":%d,"spool":"s1"}`, far))
	submit("apd/pi/t", ingesttest.Payload("pi", "t", 2, 2, 21))
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
