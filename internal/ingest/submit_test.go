package ingest_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest/ingesttest"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// TestSubmitChecksDecodedInput: what a transport hands over decoded is
// judged by the core, whatever the transport checked: each bad
// submission becomes a dead letter with its reason, counted under it,
// and its done is called after the commit like any other's.
func TestSubmitChecksDecodedInput(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Second)
	good := func() *schema.Reading {
		return &schema.Reading{Host: "pi", Sensor: "t", Seq: 1, Time: now.Add(-time.Minute), Value: json.RawMessage("1")}
	}
	with := func(change func(*schema.Reading)) *schema.Reading { r := good(); change(r); return r }
	tests := []struct {
		name string
		sub  ingest.Submission
		want string // reason, or empty for stored
	}{
		{"good reading", ingest.Submission{Reading: good()}, ""},
		{"bad host", ingest.Submission{Reading: with(func(r *schema.Reading) { r.Host = "a/b" })}, ingest.ReasonInvalidName},
		{"no sensor", ingest.Submission{Reading: with(func(r *schema.Reading) { r.Sensor = "" })}, ingest.ReasonInvalidName},
		{"neither value nor error", ingest.Submission{Reading: with(func(r *schema.Reading) { r.Value = nil })}, ingest.ReasonInvalidField},
		{"both value and error", ingest.Submission{Reading: with(func(r *schema.Reading) {
			r.Error = &schema.SampleError{Kind: schema.Persistent, Message: "gone"}
		})}, ingest.ReasonInvalidField},
		{"unknown error kind", ingest.Submission{Reading: with(func(r *schema.Reading) {
			r.Value, r.Error = nil, &schema.SampleError{Kind: "sometimes"}
		})}, ingest.ReasonInvalidField},
		{"seq beyond 2^53", ingest.Submission{Reading: with(func(r *schema.Reading) { r.Seq = schema.MaxSeq + 1 })}, ingest.ReasonSeqOutOfRange},
		{"too old", ingest.Submission{Reading: with(func(r *schema.Reading) { r.Time = now.Add(-400 * 24 * time.Hour) })}, ingest.ReasonTimeWindow},
		{"too far ahead", ingest.Submission{Reading: with(func(r *schema.Reading) { r.Time = now.Add(25 * time.Hour) })}, ingest.ReasonTimeWindow},
		{"old for now, fine when received", ingest.Submission{Received: now.Add(-300 * 24 * time.Hour),
			Reading: with(func(r *schema.Reading) { r.Time = now.Add(-400 * 24 * time.Hour) })}, ""},
		{"status without state", ingest.Submission{Status: &store.StatusUpdate{Host: "pi"}}, ingest.ReasonInvalidStatus},
		{"status of a bad host", ingest.Submission{Status: &store.StatusUpdate{Host: "$SYS", Status: schema.Status{State: "online"}}}, ingest.ReasonInvalidName},
		{"status with first_seq beyond 2^53", ingest.Submission{Status: &store.StatusUpdate{Host: "pi",
			Status: schema.Status{State: "online", FirstSeq: schema.MaxSeq + 1}}}, ingest.ReasonSeqOutOfRange},
		{"status with a spool id that is no name", ingest.Submission{Status: &store.StatusUpdate{Host: "pi",
			Status: schema.Status{State: "online", Spool: "a/b"}}}, ingest.ReasonInvalidStatus},
		{"undecodable", ingest.Submission{Topic: "influx", Payload: []byte("cpu x"),
			Undecodable: &ingest.Undecodable{Reason: ingest.ReasonInvalidField, Err: errors.New("no field")}}, ingest.ReasonInvalidField},
		{"undecodable, a reason of its own", ingest.Submission{Topic: "influx", Payload: []byte("cpu x"),
			Undecodable: &ingest.Undecodable{Reason: "line_protocol", Err: errors.New("no field")}}, "line_protocol"},
		{"empty", ingest.Submission{}, ingest.ReasonInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := ingesttest.OpenStore(t)
			in := ingest.New(st, nil, ingest.Options{})
			defer in.Close()
			done := make(chan struct{})
			outcome, err := in.Submit(tc.sub, func() { close(done) })
			if err != nil {
				t.Fatal(err)
			}
			<-done
			dl, err := st.DeadLetters(10)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if outcome != ingest.Queued || len(dl) != 0 || in.Metrics().Stored.Value()+in.Metrics().Statuses.Value() != 1 {
					t.Fatalf("outcome %s, dead letters %+v, stored %d; want it stored", outcome, dl, in.Metrics().Stored.Value())
				}
				return
			}
			if outcome != ingest.Rejected || len(dl) != 1 || !strings.HasPrefix(dl[0].Reason, tc.want+": ") {
				t.Fatalf("outcome %s, dead letters %+v; want one rejected with reason %s", outcome, dl, tc.want)
			}
			label := tc.want
			if _, ok := in.Metrics().Rejected[label]; !ok {
				label = ingest.ReasonInvalid
			}
			if got := in.Metrics().Rejected[label].Value(); got != 1 {
				t.Errorf("apd_rejected_total{reason=%q} = %d, want 1", label, got)
			}
			if (tc.sub.Reading != nil || tc.sub.Status != nil) && (dl[0].Topic == "" || len(dl[0].Payload) == 0) {
				t.Errorf("dead letter %+v: want the topic and JSON it would have had", dl[0])
			}
		})
	}
}

// TestSubmitGivesTimes: a reading or status without a time is given the
// time it was received; a reading's time is cut to the millisecond, by
// which the store knows it.
func TestSubmitGivesTimes(t *testing.T) {
	t.Parallel()
	st := ingesttest.OpenStore(t)
	in := ingest.New(st, nil, ingest.Options{})
	received := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	precise := received.Add(-time.Second + 123456789)
	for _, s := range []ingest.Submission{
		{Received: received, Reading: &schema.Reading{Host: "shed", Sensor: "t", Value: json.RawMessage("21.5")}},
		{Received: received, Reading: &schema.Reading{Host: "shed", Sensor: "u", Value: json.RawMessage("1"), Time: precise}},
		{Received: received, Status: &store.StatusUpdate{Host: "shed", Status: schema.Status{State: "online"}}},
	} {
		if outcome, err := in.Submit(s, nil); err != nil || outcome != ingest.Queued {
			t.Fatalf("%s, %v", outcome, err)
		}
	}
	in.Close()
	var got []time.Time
	if err := st.Scan(store.Query{}, func(r *schema.Reading) error { got = append(got, r.Time); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []time.Time{received, precise.Truncate(time.Millisecond)}; len(got) != 2 || !got[0].Equal(want[0]) || !got[1].Equal(want[1]) {
		t.Errorf("stored times %v, want %v", got, want)
	}
	hosts, err := st.Hosts()
	if err != nil || len(hosts) != 1 || !hosts[0].StateTime.Equal(received) {
		t.Errorf("hosts %+v, %v; want the state at %s", hosts, err, received)
	}
}

// TestSubmitMessageIgnoresWhatIsNotTheAggregators: an $ack and a topic
// outside the prefix are not submitted; their done is called at once.
func TestSubmitMessageIgnoresWhatIsNotTheAggregators(t *testing.T) {
	t.Parallel()
	in := ingest.New(ingesttest.OpenStore(t), nil, ingest.Options{})
	defer in.Close()
	for _, topic := range []string{"apd/pi/$ack", "other/pi/t", "$SYS/broker/uptime"} {
		called := false
		outcome, err := in.SubmitMessage(topic, []byte("1"), func() { called = true })
		if err != nil || outcome != ingest.Ignored || !called {
			t.Errorf("%s: %s, %v, done called %v; want ignored and done at once", topic, outcome, err, called)
		}
	}
	if n := in.Metrics().Received.Value(); n != 0 {
		t.Errorf("received %d, want 0", n)
	}
}

// TestSubmitAfterClose: nothing is taken after Close, and done is never
// called: the transport does not acknowledge it.
func TestSubmitAfterClose(t *testing.T) {
	t.Parallel()
	in := ingest.New(ingesttest.OpenStore(t), nil, ingest.Options{})
	in.Close()
	_, err := in.Submit(ingest.Submission{Reading: &schema.Reading{Host: "pi", Sensor: "t", Value: json.RawMessage("1")}},
		func() { t.Error("done called after Close") })
	if !errors.Is(err, ingest.ErrClosed) {
		t.Errorf("Submit after Close: %v, want ErrClosed", err)
	}
}
