// Package storetest is the conformance suite of the storage contract
// (package store): what any engine must do, run by each engine's tests
// with an Opener of its own —
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, l store.Limits) store.Store { … })
//	}
//
// It covers idempotence, time order, half-open ranges, out-of-order and
// late inserts, every kind of value round-tripping byte for byte,
// watermarks with gaps, floors, spool restarts and impossible seqs, dead
// letters and their bounds, deletes and retention, and readers running
// while commits do.
package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// Opener opens a new, empty store of the engine under test, bound by
// limits, and closes it when the test ends.
type Opener func(t *testing.T, limits store.Limits) store.Store

// Run runs the whole suite against the engine open makes.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, Opener)
	}{
		{"ScanHalfOpenRanges", testScanHalfOpenRanges},
		{"ScanOrderAndRoundTrip", testScanOrderAndRoundTrip},
		{"CommitIdempotent", testCommitIdempotent},
		{"Watermark", testWatermark},
		{"StatusAndDeadLetters", testStatusAndDeadLetters},
		{"StatusFloorDeclaresLostSeqs", testStatusFloorDeclaresLostSeqs},
		{"Delete", testDelete},
		{"RetentionStyleDelete", testRetentionStyleDelete},
		{"WatermarkStartsWhereTheDeviceSays", testWatermarkStartsWhereTheDeviceSays},
		{"NewSpoolRestartsSeqs", testNewSpoolRestartsSeqs},
		{"SeqJumpRefused", testSeqJumpRefused},
		{"FirstSeqJumpRefused", testFirstSeqJumpRefused},
		{"FloorAboveWhatWasSentWaits", testFloorAboveWhatWasSentWaits},
		{"DeadLettersBounded", testDeadLettersBounded},
		{"DeadLetterBatchBounded", testDeadLetterBatchBounded},
		{"ValueKindsRoundTrip", testValueKindsRoundTrip},
		{"ReadersDuringWrites", testReadersDuringWrites},
		{"LongScans", testLongScans},
		{"HostMeta", testHostMeta},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open) })
	}
}

var T0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func Reading(host, sensor string, minute int, value float64, seq uint64) schema.Reading {
	return schema.Reading{Host: host, Sensor: sensor, Time: T0.Add(time.Duration(minute) * time.Minute),
		Seq: seq, Value: json.RawMessage(fmt.Sprint(value))}
}

// fixture is nine readings: two hosts, two sensors, a minute apart; the
// range [12:01, 12:03) has readings exactly on both ends.
func Fixture() []schema.Reading {
	return []schema.Reading{
		Reading("a", "temperature", 0, 20, 0),
		Reading("a", "temperature", 1, 21, 0),
		Reading("a", "temperature", 2, 22, 0),
		Reading("a", "temperature", 3, 23, 0),
		Reading("b", "temperature", 1, 11, 0),
		Reading("b", "temperature", 2, 12, 0),
		Reading("a", "humidity", 0, 40, 0),
		Reading("a", "humidity", 2, 42, 0),
		Reading("b", "humidity", 3, 53, 0),
	}
}

func testScanHalfOpenRanges(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	if _, err := s.Commit(&store.Batch{Readings: Fixture()}); err != nil {
		t.Fatal(err)
	}
	since, until := T0.Add(time.Minute), T0.Add(3*time.Minute)
	tests := []struct {
		name string
		q    store.Query
		want int
	}{
		{"no filter", store.Query{}, 9},
		{"sensor temperature", store.Query{Sensor: "temperature"}, 6},
		{"sensor humidity", store.Query{Sensor: "humidity"}, 3},
		{"host a", store.Query{Hosts: []string{"a"}}, 6},
		{"host b", store.Query{Hosts: []string{"b"}}, 3},
		{"hosts a and b", store.Query{Hosts: []string{"b", "a", "b"}}, 9},
		{"unknown host", store.Query{Hosts: []string{"zz"}}, 0},
		{"since is inclusive", store.Query{Since: since}, 7},
		{"until is exclusive", store.Query{Until: until}, 7},
		{"since and until", store.Query{Since: since, Until: until}, 5},
		{"sensor, host and range", store.Query{Sensor: "temperature", Hosts: []string{"a"}, Since: since, Until: until}, 2},
		{"empty range", store.Query{Since: since, Until: since}, 0},
		{"limit", store.Query{Limit: 4}, 4},
		{"unknown sensor", store.Query{Sensor: "pressure"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			if err := s.Scan(tc.q, func(*schema.Reading) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			if n != tc.want {
				t.Errorf("got %d readings, want %d", n, tc.want)
			}
		})
	}
}

func testScanOrderAndRoundTrip(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	in := Fixture()
	in[0].Title, in[0].Human, in[0].Seq = "Ambient Temperature", "20", 9
	in[0].Extra = map[string]json.RawMessage{"note": json.RawMessage(`"x"`)}
	if _, err := s.Commit(&store.Batch{Readings: in}); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := s.Scan(store.Query{Sensor: "temperature"}, func(r *schema.Reading) error {
		got = append(got, fmt.Sprintf("%s %s", r.Host, r.Time.Format("15:04")))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a 12:00", "a 12:01", "a 12:02", "a 12:03", "b 12:01", "b 12:02"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("order %v, want %v", got, want)
	}
	var first []byte
	_ = s.Scan(store.Query{Sensor: "temperature", Limit: 1}, func(r *schema.Reading) error {
		first = r.AppendJSON(nil, schema.WithIdentity)
		return nil
	})
	if want := string(in[0].AppendJSON(nil, schema.WithIdentity)); string(first) != want {
		t.Errorf("round trip\n got %s\nwant %s", first, want)
	}
}

func testCommitIdempotent(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	b := &store.Batch{Readings: Fixture()}
	res, err := s.Commit(b)
	if err != nil || res.Stored != 9 || res.Duplicates != 0 {
		t.Fatalf("first commit %+v, %v", res, err)
	}
	again := Fixture()
	again[0].Value = json.RawMessage("99") // same key, other value: first write wins
	res, err = s.Commit(&store.Batch{Readings: again})
	if err != nil || res.Stored != 0 || res.Duplicates != 9 {
		t.Fatalf("second commit %+v, %v", res, err)
	}
	var v string
	_ = s.Scan(store.Query{Sensor: "temperature", Limit: 1}, func(r *schema.Reading) error { v = string(r.Value); return nil })
	if v != "20" {
		t.Errorf("value after duplicate = %s, want 20", v)
	}
	hosts, _ := s.Hosts()
	if len(hosts) != 2 || hosts[0].Sensors["temperature"].Count != 4 {
		t.Errorf("host counts after duplicates: %+v", hosts)
	}
}

func testWatermark(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	commit := func(seqs ...uint64) map[string]store.HostAck {
		t.Helper()
		var b store.Batch
		for _, q := range seqs {
			b.Readings = append(b.Readings, Reading("pi", "s", int(q), 1, q))
		}
		res, err := s.Commit(&b)
		if err != nil {
			t.Fatal(err)
		}
		return res.Acks
	}
	steps := []struct {
		name string
		seqs []uint64
		want uint64 // 0: no ack expected
	}{
		{"first contact, no status: waits for seq 1", []uint64{3, 4}, 0},
		{"from seq 1", []uint64{1, 2, 5, 6}, 6},
		{"gap holds the mark", []uint64{8, 9}, 0},
		{"gap filled", []uint64{7}, 9},
		{"duplicate below mark", []uint64{6}, 0},
		{"out of order in batch", []uint64{12, 10, 11}, 12},
	}
	for _, st := range steps {
		acks := commit(st.seqs...)
		if got := acks["pi"].Seq; got != st.want {
			t.Errorf("%s: ack %d, want %d", st.name, got, st.want)
		}
	}
	hosts, _ := s.Hosts()
	if hosts[0].Watermark != 12 || hosts[0].Awaited != 0 {
		t.Errorf("stored watermark %d, awaited %d", hosts[0].Watermark, hosts[0].Awaited)
	}
	commit(15, 17)
	hosts, _ = s.Hosts()
	if h := hosts[0]; h.MaxSeq != 17 || h.Awaited != 3 {
		t.Errorf("after 15 and 17 over 12: max %d, awaited %d; want 17, 3 (13, 14, 16)", h.MaxSeq, h.Awaited)
	}
}

func testStatusAndDeadLetters(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	_, err := s.Commit(&store.Batch{
		Statuses:    []store.StatusUpdate{{Host: "pi", Status: schema.Status{State: schema.StateOnline, Time: T0, Version: "1.0"}}},
		DeadLetters: []store.DeadLetter{{Received: T0, Topic: "apd/pi/x", Reason: "invalid JSON", Payload: make([]byte, 10000)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	hosts, _ := s.Hosts()
	if len(hosts) != 1 || hosts[0].State != "online" || hosts[0].Version != "1.0" {
		t.Errorf("hosts = %+v", hosts)
	}
	dl, _ := s.DeadLetters(10)
	if len(dl) != 1 || dl[0].Reason != "invalid JSON" || len(dl[0].Payload) != store.MaxDeadPayload {
		t.Errorf("dead letters = %+v", dl)
	}
}

func testStatusFloorDeclaresLostSeqs(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	status := func(first uint64) store.StatusUpdate {
		return store.StatusUpdate{Host: "pi", Status: schema.Status{State: "online", Time: T0, FirstSeq: first}}
	}
	// First contact through a status: seqs start at 100.
	res, err := s.Commit(&store.Batch{Statuses: []store.StatusUpdate{status(100)},
		Readings: []schema.Reading{Reading("pi", "s", 1, 1, 101), Reading("pi", "s", 0, 1, 100)}})
	if err != nil || res.Acks["pi"].Seq != 101 || res.Lost != 0 {
		t.Fatalf("first contact: %+v, %v", res, err)
	}
	// 102 and 104 arrive, 103 is awaited.
	res, _ = s.Commit(&store.Batch{Readings: []schema.Reading{Reading("pi", "s", 2, 1, 102), Reading("pi", "s", 4, 1, 104)}})
	if res.Acks["pi"].Seq != 102 {
		t.Fatalf("ack %d, want 102", res.Acks["pi"].Seq)
	}
	// The device dropped 103 and 105 from a full spool: it now starts at
	// 106. Its floor (105) is above every seq committed (104): it waits
	// for a reading at or above it.
	res, _ = s.Commit(&store.Batch{Statuses: []store.StatusUpdate{status(106)}})
	if len(res.Acks) != 0 || res.Lost != 0 {
		t.Fatalf("after the status: %+v; want no ack, nothing lost yet", res)
	}
	if hosts, _ := s.Hosts(); hosts[0].Watermark != 102 || hosts[0].PendingFloor != 105 {
		t.Errorf("after the status: %+v; want watermark 102, floor 105 pending", hosts[0])
	}
	res, _ = s.Commit(&store.Batch{Readings: []schema.Reading{Reading("pi", "s", 6, 1, 106)}})
	if res.Acks["pi"].Seq != 106 || res.Lost != 2 {
		t.Fatalf("after 106: ack %d, lost %d; want 106, 2 (103 and 105)", res.Acks["pi"].Seq, res.Lost)
	}
	// A repeated status with an old floor changes nothing.
	res, _ = s.Commit(&store.Batch{Statuses: []store.StatusUpdate{status(101)}})
	if len(res.Acks) != 0 || res.Lost != 0 {
		t.Fatalf("stale floor: %+v", res)
	}
	hosts, _ := s.Hosts()
	if h := hosts[0]; h.Watermark != 106 || h.MaxSeq != 106 || h.Lost != 2 || h.PendingFloor != 0 {
		t.Errorf("host = %+v", h)
	}
}

func testDelete(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	if _, err := s.Commit(&store.Batch{Readings: Fixture()}); err != nil {
		t.Fatal(err)
	}
	count := func(q store.Query) int {
		n := 0
		_ = s.Scan(q, func(*schema.Reading) error { n++; return nil })
		return n
	}
	// A time range of one sensor of one host.
	n, err := s.Delete(store.Query{Sensor: "temperature", Hosts: []string{"a"}, Since: T0.Add(time.Minute), Until: T0.Add(3 * time.Minute)})
	if err != nil || n != 2 || count(store.Query{Hosts: []string{"a"}, Sensor: "temperature"}) != 2 {
		t.Fatalf("range delete removed %d (%v); %d left", n, err, count(store.Query{Hosts: []string{"a"}, Sensor: "temperature"}))
	}
	hosts, _ := s.Hosts()
	if hosts[0].Sensors["temperature"].Count != 2 {
		t.Errorf("count after range delete = %d", hosts[0].Sensors["temperature"].Count)
	}
	// A whole host: readings and the host itself.
	if n, _ := s.Delete(store.Query{Hosts: []string{"b"}}); n != 3 {
		t.Errorf("host delete removed %d, want 3", n)
	}
	if count(store.Query{Hosts: []string{"b"}}) != 0 || count(store.Query{}) != 4 {
		t.Errorf("after host delete: b has %d, all %d", count(store.Query{Hosts: []string{"b"}}), count(store.Query{}))
	}
	hosts, _ = s.Hosts()
	if len(hosts) != 1 || hosts[0].Name != "a" {
		t.Errorf("hosts after deleting b: %+v", hosts)
	}
}

func testRetentionStyleDelete(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	if _, err := s.Commit(&store.Batch{Readings: Fixture()}); err != nil {
		t.Fatal(err)
	}
	// Everything before 12:02, every host and sensor: what retention does.
	n, err := s.Delete(store.Query{Until: T0.Add(2 * time.Minute)})
	if err != nil || n != 4 {
		t.Fatalf("deleted %d, %v; want 4", n, err)
	}
	hosts, _ := s.Hosts()
	if len(hosts) != 2 || hosts[0].Sensors["temperature"].Count != 2 || hosts[0].Sensors["humidity"].Count != 1 {
		t.Errorf("counts after retention delete: %+v %+v", hosts[0].Sensors["temperature"], hosts[0].Sensors["humidity"])
	}
}

// TestWatermarkStartsWhereTheDeviceSays: readings that arrive before the
// device's status (a replayed backlog from seq 40 reaching a fresh
// aggregator) are not taken as where the seqs start; the status's
// first_seq is, and nothing below it is counted lost. A status that
// arrives first starts the watermark only with a reading at or above its
// first_seq − 1: until then nothing shows its device sent that far.
func testWatermarkStartsWhereTheDeviceSays(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	res, err := s.Commit(&store.Batch{Readings: []schema.Reading{Reading("pi", "s", 50, 1, 50), Reading("pi", "s", 51, 1, 51)}})
	if err != nil || len(res.Acks) != 0 {
		t.Fatalf("before any status: acks %v, %v; want none", res.Acks, err)
	}
	res, _ = s.Commit(&store.Batch{Statuses: []store.StatusUpdate{{Host: "pi", Status: schema.Status{State: "online", FirstSeq: 40, Spool: "a1"}}}})
	if res.Acks["pi"] != (store.HostAck{Seq: 39, Spool: "a1"}) || res.Lost != 0 {
		t.Fatalf("status first_seq 40: %+v, want ack 39 of spool a1, nothing lost", res)
	}
	var b store.Batch
	for q := uint64(40); q < 50; q++ {
		b.Readings = append(b.Readings, Reading("pi", "s", int(q), 1, q))
	}
	res, _ = s.Commit(&b)
	if res.Acks["pi"].Seq != 51 {
		t.Errorf("backlog 40..49 on top of 50, 51: ack %d, want 51", res.Acks["pi"].Seq)
	}
	// The status first, alone.
	res, _ = s.Commit(&store.Batch{Statuses: []store.StatusUpdate{{Host: "pj", Status: schema.Status{State: "online", FirstSeq: 40, Spool: "b1"}}}})
	if len(res.Acks) != 0 || res.Lost != 0 {
		t.Fatalf("status first_seq 40 before any reading: %+v, want no ack yet", res)
	}
	res, _ = s.Commit(&store.Batch{Readings: []schema.Reading{Reading("pj", "s", 40, 1, 40), Reading("pj", "s", 41, 1, 41)}})
	if res.Acks["pj"] != (store.HostAck{Seq: 41, Spool: "b1"}) || res.Lost != 0 {
		t.Errorf("40, 41 after the status: %+v, want ack 41 of spool b1, nothing lost", res)
	}
}

// TestNewSpoolRestartsSeqs: a device whose spool was wiped starts at seq 1
// with a new spool id; its host's watermark starts again (the old
// readings stay) and acknowledgements carry the new id.
func testNewSpoolRestartsSeqs(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	status := func(spool string) []store.StatusUpdate {
		return []store.StatusUpdate{{Host: "pi", Status: schema.Status{State: "online", FirstSeq: 1, Spool: spool}}}
	}
	b := store.Batch{Statuses: status("old")}
	for q := uint64(1); q <= 60; q++ {
		b.Readings = append(b.Readings, Reading("pi", "s", int(q), 1, q))
	}
	if res, err := s.Commit(&b); err != nil || res.Acks["pi"] != (store.HostAck{Seq: 60, Spool: "old"}) {
		t.Fatalf("old spool: %+v %v", res, err)
	}
	// The same spool announcing itself again changes nothing.
	if res, _ := s.Commit(&store.Batch{Statuses: status("old")}); len(res.Acks) != 0 {
		t.Errorf("repeated status: %+v", res.Acks)
	}
	// Re-flashed: new spool, seq 1 again, in the same batch as its status.
	b = store.Batch{Statuses: status("new"), Readings: []schema.Reading{Reading("pi", "s", 100, 1, 1), Reading("pi", "s", 101, 1, 2)}}
	res, err := s.Commit(&b)
	if err != nil || res.Acks["pi"] != (store.HostAck{Seq: 2, Spool: "new"}) || res.Stored != 2 {
		t.Fatalf("new spool: %+v %v; want ack 2 of spool new", res, err)
	}
	res, _ = s.Commit(&store.Batch{Readings: []schema.Reading{Reading("pi", "s", 102, 1, 3)}})
	if res.Acks["pi"] != (store.HostAck{Seq: 3, Spool: "new"}) {
		t.Errorf("next reading of the new spool: %+v", res.Acks)
	}
	hosts, _ := s.Hosts()
	if h := hosts[0]; h.Sensors["s"].Count != 63 || h.Watermark != 3 || h.Spool != "new" || h.Lost != 0 || h.Awaited != 0 {
		t.Errorf("host after the restart: %+v %+v", h, h.Sensors["s"])
	}
	// A restart with nothing sent yet still replaces the old spool's
	// retained acknowledgement.
	res, _ = s.Commit(&store.Batch{Statuses: status("newer")})
	if res.Acks["pi"] != (store.HostAck{Seq: 0, Spool: "newer"}) {
		t.Errorf("restart without readings: %+v", res.Acks)
	}
}

// TestSeqJumpRefused: a seq far beyond anything a spool holds is refused
// into a dead letter, not stored and not kept pending; counters cannot
// wrap.
func testSeqJumpRefused(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	b := store.Batch{Statuses: []store.StatusUpdate{{Host: "pi", Status: schema.Status{State: "online", FirstSeq: 1}}},
		Readings: []schema.Reading{Reading("pi", "s", 1, 1, 1), Reading("pi", "s", 2, 1, store.MaxSeqJump+5), Reading("pi", "s", 3, 1, 2)}}
	res, err := s.Commit(&b)
	if err != nil || res.Stored != 2 || len(res.Refused) != 1 || res.Refused[0] != 1 || res.Acks["pi"].Seq != 2 {
		t.Fatalf("commit: %+v %v", res, err)
	}
	if len(b.Readings) != 3 {
		t.Error("the batch was changed")
	}
	dl, _ := s.DeadLetters(10)
	if len(dl) != 1 || !strings.HasPrefix(dl[0].Reason, store.ReasonSeqOutOfRange) || dl[0].Topic != "apd/pi/s" {
		t.Errorf("dead letters: %+v", dl)
	}
	// A floor moved as far as a seq may go counts lost without wrapping,
	// once the reading at first_seq — more than MaxSeqJump above the
	// watermark, but not above the floor waiting for it — arrives.
	far := uint64(store.MaxSeqJump + 3)
	res, _ = s.Commit(&store.Batch{Statuses: []store.StatusUpdate{{Host: "pi", Status: schema.Status{State: "online", FirstSeq: far}}}})
	if len(res.Acks) != 0 || res.Lost != 0 {
		t.Errorf("the status alone: %+v; want no ack, nothing lost", res)
	}
	res, _ = s.Commit(&store.Batch{Readings: []schema.Reading{Reading("pi", "s", 4, 1, far)}})
	hosts, _ := s.Hosts()
	if want := uint64(far - 1 - 2); res.Lost != want || hosts[0].Lost != want || hosts[0].Awaited != 0 || res.Acks["pi"].Seq != far {
		t.Errorf("lost %d (host %d, awaited %d), ack %+v; want %d lost, ack %d", res.Lost, hosts[0].Lost, hosts[0].Awaited, res.Acks, want, far)
	}
}

// TestFirstSeqJumpRefused: a $status whose first_seq would skip more seqs
// above what its host has sent (the higher of its watermark and its
// highest seq) than a seq may be above the watermark cannot be real: it
// goes to a dead letter like such a seq and moves nothing, so the host's
// acknowledgements go on. A floor just within the bound is accepted, and
// so is a new spool's first declaration; each takes effect with a reading
// at its first_seq.
func testFirstSeqJumpRefused(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	status := func(state string, first uint64, spool string) []store.StatusUpdate {
		return []store.StatusUpdate{{Host: "pi", Status: schema.Status{State: state, Time: T0, FirstSeq: first, Spool: spool}}}
	}
	b := store.Batch{Statuses: status("online", 1, "a1")}
	for q := uint64(1); q <= 5; q++ {
		b.Readings = append(b.Readings, Reading("pi", "s", int(q), 1, q))
	}
	b.Readings = append(b.Readings, Reading("pi", "s", 9, 1, 9)) // 6..8 awaited: MaxSeq 9
	if res, err := s.Commit(&b); err != nil || res.Acks["pi"].Seq != 5 {
		t.Fatalf("first commit: %+v %v", res, err)
	}
	host := func() store.Host {
		t.Helper()
		hosts, err := s.Hosts()
		if err != nil || len(hosts) != 1 {
			t.Fatalf("hosts %+v, %v", hosts, err)
		}
		return hosts[0]
	}
	for _, tc := range []struct {
		name  string
		first uint64
		spool string
	}{
		{"one beyond the bound above the highest seq", 9 + store.MaxSeqJump + 2, "a1"},
		{"far beyond", 99_999_999, ""},
		{"as far as a seq may go", schema.MaxSeq, "a1"},
	} {
		res, err := s.Commit(&store.Batch{Statuses: status("offline", tc.first, tc.spool)})
		if err != nil || len(res.Acks) != 0 || res.Lost != 0 || res.RefusedStatuses != 1 {
			t.Errorf("%s: first_seq %d: %+v, %v; want no ack, nothing lost", tc.name, tc.first, res, err)
		}
		h := host()
		if h.Watermark != 5 || h.MaxSeq != 9 || h.Lost != 0 || h.Spool != "a1" || h.State != "online" {
			t.Errorf("%s: first_seq %d moved the host: %+v", tc.name, tc.first, h)
		}
		dl, _ := s.DeadLetters(1)
		if len(dl) != 1 || !strings.HasPrefix(dl[0].Reason, store.ReasonSeqOutOfRange) || dl[0].Topic != "apd/pi/$status" ||
			!strings.Contains(string(dl[0].Payload), fmt.Sprint(tc.first)) {
			t.Errorf("%s: dead letters %+v; want the status, reason %s", tc.name, dl, store.ReasonSeqOutOfRange)
		}
	}
	// The device goes on and is acknowledged.
	res, err := s.Commit(&store.Batch{Readings: []schema.Reading{Reading("pi", "s", 6, 1, 6)}})
	if err != nil || res.Acks["pi"].Seq != 6 {
		t.Fatalf("next reading after the refusals: %+v %v; want ack 6", res, err)
	}
	// Exactly at the bound above the highest seq (9): accepted, as a spool
	// that dropped that many readings would declare it, and taken with
	// the reading at first_seq.
	first := uint64(9 + store.MaxSeqJump + 1)
	res, err = s.Commit(&store.Batch{Statuses: status("online", first, "a1")})
	if err != nil || len(res.Acks) != 0 || res.RefusedStatuses != 0 || host().PendingFloor != first-1 {
		t.Fatalf("first_seq %d at the bound: %+v %v; want it accepted, pending", first, res, err)
	}
	res, err = s.Commit(&store.Batch{Readings: []schema.Reading{Reading("pi", "s", 10, 1, first)}})
	if err != nil || res.Acks["pi"].Seq != first || res.Lost != first-1-7 {
		t.Fatalf("reading %d: %+v %v; want ack %d, %d lost", first, res, err, first, first-1-7)
	}
	if dl, _ := s.DeadLetters(10); len(dl) != 3 {
		t.Errorf("%d dead letters, want the 3 refused statuses", len(dl))
	}
	// A new spool's first_seq is its first declaration: where its seqs
	// start (a device older than the database), whatever came before.
	// The restart is acknowledged at once, its start with its readings.
	first = store.MaxSeqJump * 3
	res, err = s.Commit(&store.Batch{Statuses: status("online", first, "b2")})
	if err != nil || res.Acks["pi"] != (store.HostAck{Seq: 0, Spool: "b2"}) || res.RefusedStatuses != 0 {
		t.Errorf("a new spool declaring first_seq %d: %+v %v; want ack 0 of spool b2", first, res, err)
	}
	res, err = s.Commit(&store.Batch{Readings: []schema.Reading{Reading("pi", "s", 11, 1, first)}})
	if err != nil || res.Acks["pi"] != (store.HostAck{Seq: first, Spool: "b2"}) || res.Lost != 0 {
		t.Errorf("the new spool's reading %d: %+v %v; want ack %d of spool b2, nothing lost", first, res, err, first)
	}
}

// TestFloorAboveWhatWasSentWaits: a $status whose first_seq declares a
// floor above every seq its host has committed — seqs 1..54 sent, then
// first_seq 99999 from the same spool — moves nothing yet: the host's
// next readings are acknowledged as before. The floor takes effect once a
// reading at or above it commits, as the readings of a spool that really
// overflowed do right after its status, and then counts the seqs it skips
// that never arrived as lost.
func testFloorAboveWhatWasSentWaits(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	status := func(first uint64) []store.StatusUpdate {
		return []store.StatusUpdate{{Host: "pi", Status: schema.Status{State: "online", Time: T0, FirstSeq: first, Spool: "a1"}}}
	}
	// minute says where in time seq goes: seqs are far apart, minutes not.
	readings := func(from, to uint64, minute func(seq uint64) int) []schema.Reading {
		var rs []schema.Reading
		for q := from; q <= to; q++ {
			rs = append(rs, Reading("pi", "s", minute(q), 1, q))
		}
		return rs
	}
	low := func(q uint64) int { return int(q) }
	high := func(q uint64) int { return 100 + int(q-99_999) }
	hostNamed := func(name string) store.Host {
		t.Helper()
		hosts, err := s.Hosts()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			if h.Name == name {
				return h
			}
		}
		t.Fatalf("no host %s in %+v", name, hosts)
		return store.Host{}
	}
	host := func() store.Host { t.Helper(); return hostNamed("pi") }
	if res := commit(t, s, &store.Batch{Statuses: status(1), Readings: readings(1, 54, low)}); res.Acks["pi"] != (store.HostAck{Seq: 54, Spool: "a1"}) {
		t.Fatalf("seqs 1..54: acks %+v, want 54 of spool a1", res.Acks)
	}
	res := commit(t, s, &store.Batch{Statuses: status(99_999)})
	if len(res.Acks) != 0 || res.Lost != 0 || res.RefusedStatuses != 0 {
		t.Errorf("first_seq 99999 after seq 54: %+v; want no ack, nothing lost, not refused", res)
	}
	if h := host(); h.Watermark != 54 || h.Lost != 0 || h.State != "online" || h.PendingFloor != 99_998 {
		t.Errorf("after first_seq 99999: %+v; want watermark 54, nothing lost, floor 99998 pending", h)
	}
	// The pending floor is part of the host's record: apd migrate copies
	// it, and it still waits for its readings there.
	if r, ok := s.(store.HostRestorer); ok {
		if err := r.RestoreHost("copy", host().Record()); err != nil {
			t.Fatal(err)
		}
		if h := hostNamed("copy"); h.Watermark != 54 || h.PendingFloor != 99_998 {
			t.Errorf("restored: %+v; want watermark 54, floor 99998 pending", h)
		}
		res := commit(t, s, &store.Batch{Readings: []schema.Reading{Reading("copy", "s", 100, 1, 99_999)}})
		if res.Acks["copy"].Seq != 99_999 || res.Lost != 99_998-54 {
			t.Errorf("restored, then 99999: %+v; want ack 99999, %d lost", res, 99_998-54)
		}
	}
	res = commit(t, s, &store.Batch{Readings: readings(55, 60, low)})
	if res.Acks["pi"] != (store.HostAck{Seq: 60, Spool: "a1"}) || res.Lost != 0 {
		t.Fatalf("readings 55..60: %+v; want ack 60 of spool a1, nothing lost", res)
	}
	if h := host(); h.Watermark != 60 || h.MaxSeq != 60 || h.Lost != 0 || h.Awaited != 0 {
		t.Errorf("after 55..60: %+v; want watermark 60, nothing lost or awaited", h)
	}
	// The spool did overflow: the readings from 99999 on prove it.
	res = commit(t, s, &store.Batch{Readings: readings(99_999, 100_001, high)})
	if want := uint64(99_999 - 61); res.Acks["pi"] != (store.HostAck{Seq: 100_001, Spool: "a1"}) || res.Lost != want {
		t.Fatalf("readings 99999..100001: %+v; want ack 100001, %d lost", res, want)
	}
	if h := host(); h.Watermark != 100_001 || h.Lost != 99_999-61 || h.Awaited != 0 || h.PendingFloor != 0 {
		t.Errorf("after 99999..100001: %+v; want watermark 100001, %d lost", h, 99_999-61)
	}
}

// TestDeadLettersBounded: past the count or byte bound the oldest dead
// letters are dropped and counted; the newest stay.
func testDeadLettersBounded(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name         string
		count        int
		bytes        int64
		wantMaxCount uint64
	}{
		{"by count", 5, 1 << 30, 5},
		{"by bytes", 1 << 30, 20 << 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, store.Limits{MaxDeadLetters: tc.count, MaxDeadBytes: tc.bytes})
			for i := range 40 {
				d := store.DeadLetter{Received: T0, Topic: "apd/x/y", Reason: fmt.Sprint(i), Payload: make([]byte, 800)}
				if _, err := s.Commit(&store.Batch{DeadLetters: []store.DeadLetter{d}}); err != nil {
					t.Fatal(err)
				}
			}
			st, _ := s.DeadLetterStats()
			kept, _ := s.DeadLetters(100)
			if st.Count > tc.wantMaxCount || int(st.Count) != len(kept) || st.Count+st.Dropped != 40 || st.Bytes > uint64(tc.bytes) {
				t.Errorf("stats %+v, %d kept", st, len(kept))
			}
			if len(kept) == 0 || kept[0].Reason != "39" {
				t.Errorf("newest kept: %+v", kept)
			}
		})
	}
}

// TestDeadLetterBatchBounded: one commit writes at most an eighth of the
// byte bound, newest first; the rest of its dead letters are counted as
// dropped.
func testDeadLetterBatchBounded(t *testing.T, open Opener) {
	s := open(t, store.Limits{MaxDeadBytes: 64 << 10})
	var b store.Batch
	for i := range 100 {
		b.DeadLetters = append(b.DeadLetters, store.DeadLetter{Received: T0, Topic: "apd/x/y", Reason: fmt.Sprint(i), Payload: make([]byte, 800)})
	}
	if _, err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	st, _ := s.DeadLetterStats()
	kept, _ := s.DeadLetters(100)
	if st.Bytes > 8<<10 || st.Count == 0 || st.Count+st.Dropped != 100 || kept[0].Reason != "99" {
		t.Errorf("stats %+v, newest %q", st, kept[0].Reason)
	}
}

// testHostMeta: names, colours and locations are kept, replaced whole,
// cleared by the zero value, refused when malformed, kept beside the
// readings a commit adds, and forgotten with the host's readings.
func testHostMeta(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	commit(t, s, &store.Batch{Readings: []schema.Reading{Reading("a", "temperature", 0, 20, 1)}})
	kitchen := store.HostMeta{Display: "Kitchen ☕", Colour: "#cc3300", Location: &store.Location{Lat: 52.37, Lon: 4.89}}
	if err := s.SetHostMeta("a", kitchen); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHostMeta("new", store.HostMeta{Display: "Attic"}); err != nil {
		t.Fatal(err)
	}
	commit(t, s, &store.Batch{Readings: []schema.Reading{Reading("a", "temperature", 1, 21, 2)}})
	meta := func() map[string]store.HostMeta {
		hosts, err := s.Hosts()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]store.HostMeta{}
		for _, h := range hosts {
			m[h.Name] = h.HostMeta
		}
		return m
	}
	got := meta()
	if g := got["a"]; g.Display != kitchen.Display || g.Colour != kitchen.Colour || g.Location == nil || *g.Location != *kitchen.Location {
		t.Errorf("host a: %+v, want %+v", g, kitchen)
	}
	if got["new"].Display != "Attic" {
		t.Errorf("a host named before it published: %+v", got)
	}
	for _, bad := range []store.HostMeta{{Colour: "red"}, {Colour: "#12345"}, {Location: &store.Location{Lat: 91}},
		{Location: &store.Location{Lon: -181}}, {Display: "bell\a"}, {Display: strings.Repeat("x", 65)}} {
		if err := s.SetHostMeta("a", bad); err == nil {
			t.Errorf("SetHostMeta(%+v) accepted", bad)
		}
	}
	if err := s.SetHostMeta("../x", kitchen); err == nil {
		t.Error("a bad host name accepted")
	}
	if err := s.SetHostMeta("a", store.HostMeta{Colour: "#0a0"}); err != nil {
		t.Fatal(err)
	}
	if g := meta()["a"]; g.Display != "" || g.Colour != "#0a0" || g.Location != nil {
		t.Errorf("replaced meta: %+v", g)
	}
	if err := s.SetHostMeta("a", store.HostMeta{}); err != nil {
		t.Fatal(err)
	}
	if g := meta()["a"]; !g.IsZero() {
		t.Errorf("cleared meta: %+v", g)
	}
	_ = s.SetHostMeta("a", kitchen)
	if _, err := s.Delete(store.Query{Hosts: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if g, ok := meta()["a"]; ok {
		t.Errorf("host deleted with its readings still shown: %+v", g)
	}
}

func commit(t *testing.T, s store.Store, b *store.Batch) store.CommitResult {
	t.Helper()
	res, err := s.Commit(b)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
