package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// fakeSensor returns its results in turn, the last one forever.
type fakeSensor struct {
	title   string
	results []func(ctx context.Context) (any, error)
	calls   atomic.Int32
}

func (f *fakeSensor) Title() string { return f.title }
func (f *fakeSensor) Read(ctx context.Context) (any, error) {
	i := int(f.calls.Add(1)) - 1
	if i >= len(f.results) {
		i = len(f.results) - 1
	}
	return f.results[i](ctx)
}

func value(v any) func(context.Context) (any, error) {
	return func(context.Context) (any, error) { return v, nil }
}
func fail(err error) func(context.Context) (any, error) {
	return func(context.Context) (any, error) { return nil, err }
}
func hang(ctx context.Context) (any, error) { select {} }

var fast = ReadPolicy{Timeout: 50 * time.Millisecond, Attempts: 3, RetryPause: time.Millisecond}

func TestReadPolicy(t *testing.T) {
	tests := []struct {
		name      string
		results   []func(context.Context) (any, error)
		wantValue string
		wantKind  schema.ErrorKind
		wantCalls int32
	}{
		{"value", []func(context.Context) (any, error){value(schema.Quantity{Magnitude: 21, Unit: "degC"})}, `{"magnitude":21,"unit":"degC"}`, "", 1},
		{"intermittent then value", []func(context.Context) (any, error){fail(Intermittent(errors.New("checksum"))), value(1)}, "1", "", 2},
		{"intermittent three times", []func(context.Context) (any, error){fail(Intermittent(errors.New("checksum")))}, "", schema.Intermittent, 3},
		{"unclassified counts as intermittent", []func(context.Context) (any, error){fail(errors.New("odd"))}, "", schema.Intermittent, 3},
		{"persistent not retried", []func(context.Context) (any, error){fail(Persistent(errors.New("no battery")))}, "", schema.Persistent, 1},
		{"missing hardware is persistent", []func(context.Context) (any, error){fail(fmt.Errorf("zone: %w", ErrNotPresent))}, "", schema.Persistent, 1},
		{"hang is cut off and retried", []func(context.Context) (any, error){hang}, "", schema.Intermittent, 3},
		{"panic is persistent", []func(context.Context) (any, error){func(context.Context) (any, error) { panic("boom") }}, "", schema.Persistent, 1},
		{"unencodable value", []func(context.Context) (any, error){value(make(chan int))}, "", schema.Persistent, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &fakeSensor{title: "T", results: tc.results}
			start := time.Now()
			got := Named{Name: "temperature", Sensor: s, Policy: fast}.Read(context.Background(), time.Now())
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Fatalf("read took %s", elapsed)
			}
			if calls := s.calls.Load(); calls != tc.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if tc.wantKind != "" {
				if got.Err == nil || KindOf(got.Err) != tc.wantKind {
					t.Fatalf("err = %v, want kind %s", got.Err, tc.wantKind)
				}
				r := got.Reading("h")
				if r.Error == nil || r.Error.Kind != tc.wantKind || r.Value != nil {
					t.Fatalf("reading = %+v", r)
				}
				return
			}
			if got.Err != nil || string(got.Value) != tc.wantValue {
				t.Fatalf("got %s, %v; want %s", got.Value, got.Err, tc.wantValue)
			}
		})
	}
}

func TestReadAllIsolatesSlowSensors(t *testing.T) {
	sensors := []Named{
		{Name: "slow", Sensor: &fakeSensor{title: "Slow", results: []func(context.Context) (any, error){hang}},
			Policy: ReadPolicy{Timeout: 200 * time.Millisecond, Attempts: 1}},
		{Name: "cpu_load", Sensor: &fakeSensor{title: "CPU Usage", results: []func(context.Context) (any, error){value(schema.Quantity{Magnitude: 0.098, Unit: "ratio"})}}, Policy: fast},
	}
	start := time.Now()
	got := ReadAll(context.Background(), sensors, time.Now())
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("ReadAll took %s", elapsed)
	}
	if got[0].Err == nil || got[1].Err != nil || got[1].Human != "9.8%" || got[1].Title != "CPU Usage" {
		t.Fatalf("samples = %+v", got)
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	r.Register("b", func(Env) (Sensor, error) { return &fakeSensor{}, nil })
	r.Register("a", func(Env) (Sensor, error) { return nil, errors.New("bad params") })
	if got := strings.Join(r.Names(), ","); got != "a,b" {
		t.Errorf("names = %s", got)
	}
	if _, err := r.New("zz", Env{}); !errors.Is(err, ErrUnknownSensor) || !strings.Contains(err.Error(), "a, b") {
		t.Errorf("unknown sensor err = %v", err)
	}
	if _, err := r.New("a", Env{}); err == nil || !strings.Contains(err.Error(), "sensor a") {
		t.Errorf("factory err = %v", err)
	}
	for _, name := range []string{"b", "bad/name"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", name)
				}
			}()
			r.Register(name, nil)
		}()
	}
}

func openSpool(t *testing.T, path string) *Spool {
	t.Helper()
	s, err := OpenSpool(path, SpoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSpoolSeqSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openSpool(t, path)
	r := schema.Reading{Host: "h", Sensor: "s", Time: time.Unix(1, 0), Value: json.RawMessage("1")}
	got, _, err := s.Append([]schema.Reading{r, r, r})
	if err != nil || len(got) != 3 || got[0].Seq != 1 || got[2].Seq != 3 {
		t.Fatalf("append = %+v, %v", got, err)
	}
	if !strings.Contains(string(got[1].Payload), `"seq":2`) {
		t.Errorf("payload %s has no seq 2", got[1].Payload)
	}
	s.Close()
	s = openSpool(t, path)
	defer s.Close()
	got, _, _ = s.Append([]schema.Reading{r})
	if got[0].Seq != 4 || s.LastSeq() != 4 || s.Depth() != 4 {
		t.Fatalf("after restart seq %d, last %d, depth %d", got[0].Seq, s.LastSeq(), s.Depth())
	}
	if n, _ := s.Ack(2); n != 2 || s.Depth() != 2 || s.Acked() != 2 {
		t.Fatalf("ack removed %d, depth %d", n, s.Depth())
	}
	if n, _ := s.Ack(1); n != 0 {
		t.Fatalf("stale ack removed %d", n)
	}
	pending, _ := s.Pending(0, 10)
	if len(pending) != 2 || pending[0].Seq != 3 || pending[0].Sensor != "s" {
		t.Fatalf("pending = %+v", pending)
	}
}

func TestSpoolDropsOldestWhenFull(t *testing.T) {
	r := schema.Reading{Host: "h", Sensor: "s", Time: time.Unix(1, 0), Value: json.RawMessage("1")}
	one := int64(len("s\n") + len(r.AppendJSON(nil, schema.WithIdentity)) + len(`,"seq":1`))
	s, err := OpenSpool(filepath.Join(t.TempDir(), "spool.db"), SpoolOptions{MaxBytes: 3*one + 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	total := 0
	for i := 0; i < 5; i++ {
		_, dropped, err := s.Append([]schema.Reading{r})
		if err != nil {
			t.Fatal(err)
		}
		total += dropped
	}
	if total != 2 || s.Depth() != 3 || s.FirstSeq() != 3 {
		t.Fatalf("dropped %d, depth %d, first seq %d; want 2, 3, 3", total, s.Depth(), s.FirstSeq())
	}
	if _, d := s.Stats(); d != 2 {
		t.Errorf("dropped counter %d", d)
	}
	// Acknowledged space is given back: appending more drops nothing.
	if _, err := s.Ack(5); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Stats(); b != 0 || s.FirstSeq() != 6 {
		t.Errorf("after ack: %d bytes, first seq %d", b, s.FirstSeq())
	}
	if _, dropped, _ := s.Append([]schema.Reading{r, r}); dropped != 0 {
		t.Errorf("dropped %d after the spool emptied", dropped)
	}
}

// fakeClient records publishes and lets tests deliver acknowledgements.
type fakeClient struct {
	mu        sync.Mutex
	published []string // topic + " " + payload
	batches   []int    // the number of messages of each PublishAll
	fail      bool
	// takeFirst is how many publishes still succeed once fail is set (a
	// connection lost in the middle of a batch).
	takeFirst int
	subs      map[string]func(string, []byte)
}

func (f *fakeClient) Publish(_ context.Context, topic string, payload []byte, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		if f.takeFirst == 0 {
			return errors.New("not connected")
		}
		f.takeFirst--
	}
	f.published = append(f.published, topic+" "+string(payload))
	return nil
}

func (f *fakeClient) PublishAll(ctx context.Context, topics []string, payloads [][]byte) []error {
	f.mu.Lock()
	f.batches = append(f.batches, len(topics))
	f.mu.Unlock()
	errs := make([]error, len(topics))
	for i := range topics {
		errs[i] = f.Publish(ctx, topics[i], payloads[i], false)
	}
	return errs
}

func (f *fakeClient) batchSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

// SubscribeLatest is Subscribe: the fake has no QoS.
func (f *fakeClient) SubscribeLatest(filter string, fn func(string, []byte)) error {
	return f.Subscribe(filter, fn)
}

func (f *fakeClient) Subscribe(filter string, fn func(string, []byte)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[string]func(string, []byte){}
	}
	f.subs[filter] = fn
	return nil
}

func (f *fakeClient) ack(t *testing.T, topic string, seq uint64) {
	t.Helper()
	f.ackSpool(t, topic, seq, "")
}

// ackSpool delivers an acknowledgement naming a spool id.
func (f *fakeClient) ackSpool(t *testing.T, topic string, seq uint64, spool string) {
	t.Helper()
	f.mu.Lock()
	fn := f.subs[topic]
	f.mu.Unlock()
	if fn == nil {
		t.Fatalf("nobody subscribed to %s", topic)
	}
	b, _ := json.Marshal(schema.Ack{Seq: seq, Time: time.Now(), Spool: spool})
	fn(topic, b)
}

func (f *fakeClient) count(part string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.published {
		if strings.Contains(p, part) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, 5*time.Second, cond)
}

func TestPublisherOnceSpoolsUntilAcknowledged(t *testing.T) {
	spool := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	defer spool.Close()
	client := &fakeClient{fail: true}
	sensors := []Named{
		{Name: "a", Sensor: &fakeSensor{title: "A", results: []func(context.Context) (any, error){value(1)}}, Policy: fast},
		{Name: "b", Sensor: &fakeSensor{title: "B", results: []func(context.Context) (any, error){value(2)}}, Policy: fast},
	}
	p := New(Options{Host: "pi", Sensors: sensors, Interval: time.Second}, spool, client)

	// Broker down: nothing is published, everything is kept.
	if err := p.Once(context.Background(), 10*time.Millisecond); err == nil {
		t.Fatal("Once with the broker down returned nil")
	}
	if spool.Depth() != 2 {
		t.Fatalf("depth = %d, want 2", spool.Depth())
	}

	// Broker back: the connection replays the spool and subscribes to $ack.
	client.mu.Lock()
	client.fail = false
	client.mu.Unlock()
	p.Connected(context.Background())
	waitFor(t, "replay", func() bool { return client.count("apd/pi/a ")+client.count("apd/pi/b ") == 2 })
	if client.count(`apd/pi/$status {"state":"online"`) == 0 || client.count(`"first_seq":1,"sensors":{"a":{"state":"ok"},"b":{"state":"ok"}}}`) == 0 {
		t.Errorf("no online status with first_seq 1: %v", client.published)
	}
	client.ack(t, "apd/pi/$ack", 1)
	if spool.Depth() != 1 {
		t.Fatalf("after ack 1 depth = %d", spool.Depth())
	}
	// An acknowledgement beyond anything issued is from another spool.
	client.ack(t, "apd/pi/$ack", 99)
	if spool.Depth() != 1 {
		t.Fatalf("a foreign ack removed readings: depth %d", spool.Depth())
	}
	client.ack(t, "apd/pi/$ack", 2)
	if spool.Depth() != 0 {
		t.Fatalf("after ack 2 depth = %d", spool.Depth())
	}
	if !p.WaitAcked(context.Background(), 2, time.Millisecond) {
		t.Error("WaitAcked(2) = false after ack 2")
	}
}

func TestPublisherRunSamplesOnSchedule(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for clock ticks")
	}
	spool := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	defer spool.Close()
	client := &fakeClient{}
	slow := &fakeSensor{title: "Slow", results: []func(context.Context) (any, error){hang}}
	quick := &fakeSensor{title: "Quick", results: []func(context.Context) (any, error){value(true)}}
	p := New(Options{Host: "pi", Interval: 100 * time.Millisecond, DrainTimeout: 100 * time.Millisecond, Sensors: []Named{
		{Name: "slow", Sensor: slow, Policy: ReadPolicy{Timeout: time.Hour, Attempts: 1}},
		{Name: "quick", Sensor: quick, Policy: fast},
	}}, spool, client)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "three quick readings", func() bool { return client.count("apd/pi/quick ") >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if client.count("apd/pi/slow ") != 0 {
		t.Error("hung sensor published")
	}
	if client.count(`apd/pi/$status {"state":"offline"`) != 1 {
		t.Error("no offline status on clean shutdown")
	}
	// seq is one higher per reading, across sensors.
	pending, _ := spool.Pending(0, 100)
	for i, s := range pending {
		if s.Seq != uint64(i+1) {
			t.Fatalf("seq %d at position %d", s.Seq, i)
		}
	}
}

func TestReplayIsRateLimited(t *testing.T) {
	spool := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	defer spool.Close()
	r := schema.Reading{Host: "pi", Sensor: "s", Time: time.Unix(1, 0), Value: json.RawMessage("1")}
	batch := make([]schema.Reading, 20)
	for i := range batch {
		batch[i] = r
	}
	if _, _, err := spool.Append(batch); err != nil {
		t.Fatal(err)
	}
	client := &fakeClient{}
	p := New(Options{Host: "pi", ReplayRate: 50}, spool, client)
	start := time.Now()
	p.replay(context.Background(), 0)
	// 20 readings at 50/s cannot take less than 0.38 s (the first window
	// goes at once).
	if elapsed := time.Since(start); elapsed < 380*time.Millisecond {
		t.Errorf("replayed 20 readings in %s at 50/s", elapsed)
	}
	if n := client.count("apd/pi/s "); n != 20 {
		t.Errorf("replayed %d, want 20", n)
	}
	// In seq order.
	client.mu.Lock()
	defer client.mu.Unlock()
	for i, m := range client.published {
		if !strings.Contains(m, fmt.Sprintf(`"seq":%d,`, i+1)) {
			t.Fatalf("position %d: %s", i, m)
		}
	}
}

// TestOneSpoolWritePerTick: the sensors of one tick go to the spool in one
// transaction, not one each (each is an fsync on a Pi's SD card).
func TestOneSpoolWritePerTick(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for clock ticks")
	}
	spool := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	defer spool.Close()
	client := &fakeClient{}
	var sensors []Named
	for i := 0; i < 8; i++ {
		sensors = append(sensors, Named{Name: fmt.Sprintf("s%d", i), Sensor: &fakeSensor{title: "S", results: []func(context.Context) (any, error){value(i)}}, Policy: fast})
	}
	p := New(Options{Host: "pi", Interval: 200 * time.Millisecond, DrainTimeout: 100 * time.Millisecond, Sensors: sensors}, spool, client)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "three ticks of readings", func() bool { return client.count("apd/pi/s7 ") >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ticks := client.count("apd/pi/s7 ")
	if n := spool.Appends(); n > uint64(ticks)+1 {
		t.Errorf("%d spool writes for %d ticks of 8 sensors, want about one per tick", n, ticks)
	}
	for i := 0; i < 8; i++ {
		if c := client.count(fmt.Sprintf("apd/pi/s%d ", i)); c < ticks-1 {
			t.Errorf("sensor s%d published %d times in %d ticks", i, c, ticks)
		}
	}
}

// TestSpoolIdentity: a spool keeps its id across restarts, a new spool
// gets a new one, the status carries it, and an acknowledgement of
// another spool (retained from before the device was wiped) removes
// nothing, even when its seq is within this spool's.
func TestSpoolIdentity(t *testing.T) {
	dir := t.TempDir()
	spool := openSpool(t, filepath.Join(dir, "spool.db"))
	id := spool.ID()
	spool.Close()
	spool = openSpool(t, filepath.Join(dir, "spool.db"))
	defer spool.Close()
	other := openSpool(t, filepath.Join(dir, "other.db"))
	defer other.Close()
	if len(id) != 16 || spool.ID() != id || other.ID() == id {
		t.Fatalf("ids: %q, reopened %q, another spool %q", id, spool.ID(), other.ID())
	}
	client := &fakeClient{}
	sensors := []Named{{Name: "a", Sensor: &fakeSensor{title: "A", results: []func(context.Context) (any, error){value(1)}}, Policy: fast}}
	p := New(Options{Host: "pi", Sensors: sensors, Interval: time.Second}, spool, client)
	p.Connected(context.Background())
	waitFor(t, "status", func() bool { return client.count(`"spool":"`+id+`"`) == 1 })
	for range 3 {
		_ = p.Once(context.Background(), time.Millisecond)
	}
	waitFor(t, "subscription", func() bool { client.mu.Lock(); defer client.mu.Unlock(); return client.subs["apd/pi/$ack"] != nil })
	client.ackSpool(t, "apd/pi/$ack", 2, other.ID())
	if spool.Depth() != 3 {
		t.Fatalf("another spool's ack removed readings: depth %d, want 3", spool.Depth())
	}
	client.ackSpool(t, "apd/pi/$ack", 2, id)
	if spool.Depth() != 1 {
		t.Fatalf("own ack: depth %d, want 1", spool.Depth())
	}
	client.ack(t, "apd/pi/$ack", 3) // from an aggregator that names no spool
	if spool.Depth() != 0 {
		t.Fatalf("ack without spool: depth %d, want 0", spool.Depth())
	}
}

// TestTickPublishedTogether: a tick's readings are handed to the client
// in one PublishAll, in seq order, not one publish each (each waits for a
// server commit).
func TestTickPublishedTogether(t *testing.T) {
	spool := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	defer spool.Close()
	client := &fakeClient{}
	var sensors []Named
	for i := range 13 {
		sensors = append(sensors, Named{Name: fmt.Sprintf("s%d", i), Sensor: &fakeSensor{title: "S", results: []func(context.Context) (any, error){value(i)}}, Policy: fast})
	}
	p := New(Options{Host: "pi", Sensors: sensors, Interval: time.Second}, spool, client)
	if err := p.Once(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := client.batchSizes(); !slices.Equal(got, []int{13}) {
		t.Fatalf("PublishAll batches %v, want one of 13", got)
	}
	client.mu.Lock()
	defer client.mu.Unlock()
	for i, m := range client.published[:13] {
		if !strings.Contains(m, fmt.Sprintf(`"seq":%d,`, i+1)) {
			t.Fatalf("position %d: %s", i, m)
		}
	}
}

// TestReplayStopsAtAFailedWindow: the replay publishes the backlog a
// window at a time; a window the broker does not take whole ends it, the
// readings stay in the spool, and the failure is logged once however
// many replays fail, until a publish succeeds again.
func TestReplayStopsAtAFailedWindow(t *testing.T) {
	spool := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	defer spool.Close()
	r := schema.Reading{Host: "pi", Sensor: "s", Time: time.Unix(1, 0), Value: json.RawMessage("1")}
	backlog := make([]schema.Reading, 150)
	for i := range backlog {
		backlog[i] = r
	}
	if _, _, err := spool.Append(backlog); err != nil {
		t.Fatal(err)
	}
	// The connection is lost in the second window.
	client := &fakeClient{fail: true, takeFirst: replayWindow + 5}
	var logs strings.Builder
	p := New(Options{Host: "pi", ReplayRate: 100000, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, spool, client)
	p.replay(context.Background(), 0)
	p.replay(context.Background(), 0)
	if got := client.batchSizes(); !slices.Equal(got, []int{replayWindow, replayWindow, replayWindow}) {
		t.Fatalf("PublishAll batches %v, want two windows, then one", got)
	}
	if n := client.count("apd/pi/s "); n != replayWindow+5 {
		t.Errorf("%d readings taken, want %d", n, replayWindow+5)
	}
	if spool.Depth() != 150 {
		t.Errorf("depth %d, want 150", spool.Depth())
	}
	if n := strings.Count(logs.String(), "publishing failed"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, logs.String())
	}
	client.mu.Lock()
	client.fail, client.batches, client.published = false, nil, nil
	client.mu.Unlock()
	p.replay(context.Background(), 0)
	if got := client.batchSizes(); !slices.Equal(got, []int{replayWindow, replayWindow, 150 - 2*replayWindow}) {
		t.Fatalf("PublishAll batches %v once the broker takes them", got)
	}
	client.mu.Lock()
	for i, m := range client.published {
		if !strings.Contains(m, fmt.Sprintf(`"seq":%d,`, i+1)) {
			t.Fatalf("position %d: %s", i, m)
		}
	}
	client.mu.Unlock()
	if n := strings.Count(logs.String(), "publishing again"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestStatusCarriesWear: the retained $status is published again every
// StatusEvery while running, each time with what Wear reports then.
func TestStatusCarriesWear(t *testing.T) {
	spool := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	defer spool.Close()
	client := &fakeClient{}
	var calls atomic.Uint64
	since := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	quick := &fakeSensor{title: "Quick", results: []func(context.Context) (any, error){value(true)}}
	p := New(Options{Host: "pi", Interval: time.Hour, StatusEvery: 20 * time.Millisecond, DrainTimeout: 10 * time.Millisecond,
		Sensors: []Named{{Name: "quick", Sensor: quick, Policy: fast}},
		Wear: func() *schema.Wear {
			n := calls.Add(1)
			return &schema.Wear{Since: since, BytesWritten: 4096 * n, Syncs: n}
		}}, spool, client)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "three statuses with a growing wear", func() bool {
		return client.count(`apd/pi/$status {"state":"online"`) >= 3 && client.count(`"bytes_written":12288,"syncs":3`) == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if client.count(`"wear":{"since":"2026-12-03T08:00:00.000Z"`) < 4 || client.count(`apd/pi/$status {"state":"offline"`) != 1 {
		t.Fatalf("statuses: %d with wear, %d offline", client.count(`"wear":{`), client.count(`apd/pi/$status {"state":"offline"`))
	}
}
