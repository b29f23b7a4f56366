package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest/ingesttest"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/brokerhook"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// seamInput is one input of the seam's acceptance test, in both forms: a
// decoded reading or status, which a transport of its own format hands
// over as it is, and the MQTT message apd's wire format makes of it.
type seamInput struct {
	name    string
	reading *schema.Reading
	status  *store.StatusUpdate
	// undecodable is input no transport could decode, on topic.
	undecodable []byte
	topic       string
	// wire, when set, is the MQTT payload instead of the JSON form.
	wire []byte
	// want is the dead letter's reason, or empty for stored.
	want string
	// atCommit says the store refuses it (a seq jump needs the host's
	// record): Submit queues it.
	atCommit bool
}

// outcome is what Submit should say of x.
func (x seamInput) outcome() ingest.Outcome {
	if x.want == "" || x.atCommit {
		return ingest.Queued
	}
	return ingest.Rejected
}

// message is the MQTT topic and payload of x.
func (x seamInput) message(topics schema.Topics) (string, []byte) {
	switch {
	case x.reading != nil:
		p := x.wire
		if p == nil {
			p = x.reading.AppendJSON(nil, schema.WithIdentity)
		}
		return topics.Reading(x.reading.Host, x.reading.Sensor), p
	case x.status != nil:
		p, _ := json.Marshal(x.status.Status)
		return topics.Status(x.status.Host), p
	}
	return x.topic, x.undecodable
}

// submission is what a transport with decoded input submits for x:
// no topic, no payload, no JSON.
func (x seamInput) submission() ingest.Submission {
	switch {
	case x.reading != nil:
		r := *x.reading
		return ingest.Submission{Reading: &r}
	case x.status != nil:
		u := *x.status
		return ingest.Submission{Status: &u}
	}
	return ingest.Submission{Topic: x.topic, Payload: x.undecodable,
		Undecodable: &ingest.Undecodable{Reason: ingest.ReasonInvalidJSON, Err: fmt.Errorf("%w: truncated", schema.ErrInvalidJSON)}}
}

func seamInputs() []seamInput {
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	n := 0
	reading := func(host, sensor string, seq uint64) *schema.Reading {
		n++
		return &schema.Reading{Host: host, Sensor: sensor, Seq: seq, Time: base.Add(time.Duration(n) * time.Second),
			Value: schema.Quantity{Magnitude: float64(n), Unit: "degC"}.Raw(), Human: fmt.Sprintf("%d °C", n)}
	}
	status := func(host, spool string) *store.StatusUpdate {
		return &store.StatusUpdate{Host: host, Status: schema.Status{State: schema.StateOnline, Time: base, FirstSeq: 1, Spool: spool}}
	}
	ins := []seamInput{{name: "status of spool s1", status: status("pi", "s1")}}
	for seq := uint64(1); seq <= 5; seq++ {
		ins = append(ins, seamInput{name: fmt.Sprintf("good reading %d", seq), reading: reading("pi", "t", seq)})
	}
	old := reading("pi", "t", 6)
	old.Time = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	ahead := reading("pi", "t", 6)
	ahead.Time = time.Now().UTC().Add(48 * time.Hour).Truncate(time.Millisecond)
	ins = append(ins,
		seamInput{name: "ts out of window (1970)", reading: old, want: ingest.ReasonTimeWindow},
		seamInput{name: "ts out of window (ahead)", reading: ahead, want: ingest.ReasonTimeWindow},
		seamInput{name: "seq beyond 2^53", reading: reading("pi", "t", schema.MaxSeq+1), want: ingest.ReasonSeqOutOfRange},
		seamInput{name: "seq further ahead than any spool", reading: reading("pi", "t", 5+store.MaxSeqJump+10), want: ingest.ReasonSeqOutOfRange, atCommit: true},
		seamInput{name: "second series", reading: reading("pi", "u", 6)},
		seamInput{name: "series beyond the bound", reading: reading("pi", "v", 7), want: ingest.ReasonSeriesLimit},
		seamInput{name: "invalid host name", reading: reading("p_i!", "t", 1), want: ingest.ReasonInvalidName},
		seamInput{name: "undecodable", topic: "apd/pi/t", undecodable: []byte(`{"v":1,`), want: ingest.ReasonInvalidJSON},
		seamInput{name: "status with a spool id that is no name",
			status: &store.StatusUpdate{Host: "pi", Status: schema.Status{State: schema.StateOnline, Time: base, Spool: "s 1"}}, want: ingest.ReasonInvalidStatus},
		seamInput{name: "status of a new spool", status: status("pi", "s2")},
	)
	for seq := uint64(1); seq <= 3; seq++ {
		ins = append(ins, seamInput{name: fmt.Sprintf("new spool's reading %d", seq), reading: reading("pi", "t", seq)})
	}
	bare := &schema.Reading{Host: "shed", Sensor: "temperature", Value: json.RawMessage("21.5")}
	ins = append(ins, seamInput{name: "bare value, no time", reading: bare, wire: []byte("21.5")})
	return ins
}

// seamResult is what a path left: its store's dead letters and hosts,
// the last $ack of each host, and what was wrong on the way.
type seamResult struct {
	dead  []string
	hosts []string
	acks  map[string]string
	fails []string
}

// durable reports what is wrong if x is not durable in st, where wantDead
// dead letters are expected by now.
func durable(st store.Store, x seamInput, wantDead uint64) string {
	ds, err := st.DeadLetterStats()
	if err != nil {
		return err.Error()
	}
	if ds.Count != wantDead {
		return fmt.Sprintf("%s: %d dead letters, want %d", x.name, ds.Count, wantDead)
	}
	switch {
	case x.want != "":
	case x.reading != nil:
		q := store.Query{Sensor: x.reading.Sensor, Hosts: []string{x.reading.Host}}
		if !x.reading.Time.IsZero() {
			q.Since, q.Until = x.reading.Time, x.reading.Time.Add(time.Millisecond)
		}
		n := 0
		if err := st.Scan(q, func(*schema.Reading) error { n++; return nil }); err != nil || n != 1 {
			return fmt.Sprintf("%s: %d stored (%v), want 1", x.name, n, err)
		}
	case x.status != nil:
		hosts, err := st.Hosts()
		i := slices.IndexFunc(hosts, func(h store.Host) bool { return h.Name == x.status.Host })
		if err != nil || i < 0 || hosts[i].Spool != x.status.Status.Spool {
			return fmt.Sprintf("%s: status not recorded (%v)", x.name, err)
		}
	}
	return ""
}

func (r *seamResult) read(t *testing.T, st store.Store) {
	t.Helper()
	dl, err := st.DeadLetters(100)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dl {
		reason, _, _ := strings.Cut(d.Reason, ":")
		r.dead = append(r.dead, fmt.Sprintf("%s %s %s", d.Topic, reason, d.Payload))
	}
	slices.Sort(r.dead)
	hosts, err := st.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		r.hosts = append(r.hosts, fmt.Sprintf("%s watermark=%d max_seq=%d spool=%s state=%s lost=%d series=%d",
			h.Name, h.Watermark, h.MaxSeq, h.Spool, h.State, h.Lost, len(h.Sensors)))
	}
}

// ackRecorder keeps the latest $ack of each host.
type ackRecorder struct {
	mu   sync.Mutex
	last map[string]string
}

func (a *ackRecorder) record(topic string, p []byte) {
	var ack schema.Ack
	if json.Unmarshal(p, &ack) != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == nil {
		a.last = map[string]string{}
	}
	a.last[strings.Split(topic, "/")[1]] = fmt.Sprintf("seq=%d spool=%s", ack.Seq, ack.Spool)
}

func (a *ackRecorder) get() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.last)
}

// waitAcks waits until the recorder's acknowledgements match the hosts'
// stored watermarks.
func waitAcks(t *testing.T, st store.Store, acks *ackRecorder) map[string]string {
	t.Helper()
	want := map[string]string{}
	hosts, err := st.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if h.Watermark > 0 {
			want[h.Name] = fmt.Sprintf("seq=%d spool=%s", h.Watermark, h.Spool)
		}
	}
	waitFor(t, fmt.Sprintf("acknowledgements %v", want), func() bool {
		got := acks.get()
		for h, w := range want {
			if got[h] != w {
				return false
			}
		}
		return true
	})
	return acks.get()
}

var seamOptions = ingest.Options{MaxSeriesPerHost: 2}

// feedInMemory is a transport of its own format: it submits each input
// decoded, through Submit, and waits for its done, in which it checks
// that the input is durable.
func feedInMemory(t *testing.T, ins []seamInput) seamResult {
	st := ingesttest.OpenStore(t)
	var acks ackRecorder
	in := ingest.New(st, func(topic string, p []byte) error { acks.record(topic, p); return nil }, seamOptions)
	defer in.Close()
	var res seamResult
	var mu sync.Mutex
	dead := uint64(0)
	for _, x := range ins {
		if x.want != "" {
			dead++
		}
		done := make(chan struct{})
		outcome, err := in.Submit(x.submission(), func() {
			// On the commit loop, right after the commit.
			if msg := durable(st, x, dead); msg != "" {
				mu.Lock()
				res.fails = append(res.fails, "done before commit: "+msg)
				mu.Unlock()
			}
			close(done)
		})
		if err != nil {
			t.Fatalf("%s: %v", x.name, err)
		}
		if outcome != x.outcome() {
			res.fails = append(res.fails, fmt.Sprintf("%s: outcome %s, want %s", x.name, outcome, x.outcome()))
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: done not called", x.name)
		}
	}
	res.acks = waitAcks(t, st, &acks)
	res.read(t, st)
	return res
}

// feedOverMQTT publishes each input's MQTT form at QoS 1 to the embedded
// broker with the ingestion hook: the PUBACK is the hook's done, so when
// Publish returns the input must be durable.
func feedOverMQTT(t *testing.T, ins []seamInput) seamResult {
	st := ingesttest.OpenStore(t)
	in := ingest.NewIngester(st, seamOptions)
	brk, err := broker.New(broker.Options{Addr: "127.0.0.1:0", Hooks: []mqtt.Hook{brokerhook.New(in)}})
	if err != nil {
		t.Fatal(err)
	}
	in.Start(brk.PublishState)
	if err := brk.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { brk.StopListening(); in.Close(); brk.Close() }()
	var acks ackRecorder
	watcher, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "watcher"})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	if err := watcher.Subscribe("apd/+/$ack", acks.record); err != nil {
		t.Fatal(err)
	}
	device, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "device", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer device.Close()
	var res seamResult
	dead := uint64(0)
	for _, x := range ins {
		if x.want != "" {
			dead++
		}
		topic, p := x.message(in.Topics())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := device.Publish(ctx, topic, p, x.status != nil)
		cancel()
		if err != nil {
			t.Fatalf("%s: publish: %v", x.name, err)
		}
		if msg := durable(st, x, dead); msg != "" {
			res.fails = append(res.fails, "PUBACK before commit: "+msg)
		}
	}
	res.acks = waitAcks(t, st, &acks)
	res.read(t, st)
	return res
}

// TestSeamSameWhateverTheTransport is the acceptance test of the
// ingestion seam: the same inputs, handed over decoded by an in-memory
// transport and published over MQTT to the embedded broker, leave the
// same dead letters (topic, reason, payload), the same hosts
// (watermarks, spools, series) and the same $acks, and each input's
// acknowledgement (done, the PUBACK) comes after the commit that stores
// it.
func TestSeamSameWhateverTheTransport(t *testing.T) {
	t.Parallel()
	ins := seamInputs()
	memory := feedInMemory(t, ins)
	overMQTT := feedOverMQTT(t, ins)
	for _, r := range []struct {
		path string
		res  seamResult
	}{{"in memory", memory}, {"over MQTT", overMQTT}} {
		for _, f := range r.res.fails {
			t.Errorf("%s: %s", r.path, f)
		}
	}
	var wantReasons []string
	for _, x := range ins {
		if x.want != "" {
			wantReasons = append(wantReasons, x.want)
		}
	}
	slices.Sort(wantReasons)
	var gotReasons []string
	for _, d := range memory.dead {
		gotReasons = append(gotReasons, strings.Fields(d)[1])
	}
	slices.Sort(gotReasons)
	if !slices.Equal(gotReasons, wantReasons) {
		t.Errorf("dead letter reasons %v, want %v", gotReasons, wantReasons)
	}
	if !slices.Equal(memory.dead, overMQTT.dead) {
		t.Errorf("dead letters differ:\nin memory:\n  %s\nover MQTT:\n  %s", strings.Join(memory.dead, "\n  "), strings.Join(overMQTT.dead, "\n  "))
	}
	if !slices.Equal(memory.hosts, overMQTT.hosts) {
		t.Errorf("hosts differ:\nin memory:\n  %s\nover MQTT:\n  %s", strings.Join(memory.hosts, "\n  "), strings.Join(overMQTT.hosts, "\n  "))
	}
	if want := "pi watermark=3 max_seq=3 spool=s2 state=online lost=0 series=2"; len(memory.hosts) == 0 || memory.hosts[0] != want {
		t.Errorf("host pi: %v, want %q", memory.hosts, want)
	}
	if fmt.Sprint(memory.acks) != fmt.Sprint(overMQTT.acks) || memory.acks["pi"] != "seq=3 spool=s2" {
		t.Errorf("last $acks in memory %v, over MQTT %v; want pi at seq=3 spool=s2 in both", memory.acks, overMQTT.acks)
	}
}
