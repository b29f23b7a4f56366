package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "apd.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func reading(host, sensor string, minute int, value float64, seq uint64) schema.Reading {
	return schema.Reading{Host: host, Sensor: sensor, Time: t0.Add(time.Duration(minute) * time.Minute),
		Seq: seq, Value: json.RawMessage(fmt.Sprint(value))}
}

// fixture is nine readings: two hosts, two sensors, a minute apart; the
// range [12:01, 12:03) has readings exactly on both ends.
func fixture() []schema.Reading {
	return []schema.Reading{
		reading("a", "temperature", 0, 20, 0),
		reading("a", "temperature", 1, 21, 0),
		reading("a", "temperature", 2, 22, 0),
		reading("a", "temperature", 3, 23, 0),
		reading("b", "temperature", 1, 11, 0),
		reading("b", "temperature", 2, 12, 0),
		reading("a", "humidity", 0, 40, 0),
		reading("a", "humidity", 2, 42, 0),
		reading("b", "humidity", 3, 53, 0),
	}
}

func TestScanHalfOpenRanges(t *testing.T) {
	s := openTemp(t)
	if _, err := s.Commit(&Batch{Readings: fixture()}); err != nil {
		t.Fatal(err)
	}
	since, until := t0.Add(time.Minute), t0.Add(3*time.Minute)
	tests := []struct {
		name string
		q    Query
		want int
	}{
		{"no filter", Query{}, 9},
		{"sensor temperature", Query{Sensor: "temperature"}, 6},
		{"sensor humidity", Query{Sensor: "humidity"}, 3},
		{"host a", Query{Hosts: []string{"a"}}, 6},
		{"host b", Query{Hosts: []string{"b"}}, 3},
		{"hosts a and b", Query{Hosts: []string{"b", "a", "b"}}, 9},
		{"unknown host", Query{Hosts: []string{"zz"}}, 0},
		{"since is inclusive", Query{Since: since}, 7},
		{"until is exclusive", Query{Until: until}, 7},
		{"since and until", Query{Since: since, Until: until}, 5},
		{"sensor, host and range", Query{Sensor: "temperature", Hosts: []string{"a"}, Since: since, Until: until}, 2},
		{"empty range", Query{Since: since, Until: since}, 0},
		{"limit", Query{Limit: 4}, 4},
		{"unknown sensor", Query{Sensor: "pressure"}, 0},
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

func TestScanOrderAndRoundTrip(t *testing.T) {
	s := openTemp(t)
	in := fixture()
	in[0].Title, in[0].Human, in[0].Seq = "Ambient Temperature", "20", 9
	in[0].Extra = map[string]json.RawMessage{"note": json.RawMessage(`"x"`)}
	if _, err := s.Commit(&Batch{Readings: in}); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := s.Scan(Query{Sensor: "temperature"}, func(r *schema.Reading) error {
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
	_ = s.Scan(Query{Sensor: "temperature", Limit: 1}, func(r *schema.Reading) error {
		first = r.AppendJSON(nil, schema.WithIdentity)
		return nil
	})
	if want := string(in[0].AppendJSON(nil, schema.WithIdentity)); string(first) != want {
		t.Errorf("round trip\n got %s\nwant %s", first, want)
	}
}

func TestCommitIdempotent(t *testing.T) {
	s := openTemp(t)
	b := &Batch{Readings: fixture()}
	res, err := s.Commit(b)
	if err != nil || res.Stored != 9 || res.Duplicates != 0 {
		t.Fatalf("first commit %+v, %v", res, err)
	}
	again := fixture()
	again[0].Value = json.RawMessage("99") // same key, other value: first write wins
	res, err = s.Commit(&Batch{Readings: again})
	if err != nil || res.Stored != 0 || res.Duplicates != 9 {
		t.Fatalf("second commit %+v, %v", res, err)
	}
	var v string
	_ = s.Scan(Query{Sensor: "temperature", Limit: 1}, func(r *schema.Reading) error { v = string(r.Value); return nil })
	if v != "20" {
		t.Errorf("value after duplicate = %s, want 20", v)
	}
	hosts, _ := s.Hosts()
	if len(hosts) != 2 || hosts[0].Sensors["temperature"].Count != 4 {
		t.Errorf("host counts after duplicates: %+v", hosts)
	}
}

func TestWatermark(t *testing.T) {
	s := openTemp(t)
	commit := func(seqs ...uint64) map[string]uint64 {
		t.Helper()
		var b Batch
		for _, q := range seqs {
			b.Readings = append(b.Readings, reading("pi", "s", int(q), 1, q))
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
		{"first contact", []uint64{5, 6}, 6},
		{"gap holds the mark", []uint64{8, 9}, 0},
		{"gap filled", []uint64{7}, 9},
		{"duplicate below mark", []uint64{6}, 0},
		{"out of order in batch", []uint64{12, 10, 11}, 12},
	}
	for _, st := range steps {
		acks := commit(st.seqs...)
		if got := acks["pi"]; got != st.want {
			t.Errorf("%s: ack %d, want %d", st.name, got, st.want)
		}
	}
	hosts, _ := s.Hosts()
	if hosts[0].Watermark != 12 {
		t.Errorf("stored watermark %d", hosts[0].Watermark)
	}
}

func TestStatusAndDeadLetters(t *testing.T) {
	s := openTemp(t)
	_, err := s.Commit(&Batch{
		Statuses:    []StatusUpdate{{Host: "pi", Status: schema.Status{State: schema.StateOnline, Time: t0, Version: "1.0"}}},
		DeadLetters: []DeadLetter{{Received: t0, Topic: "apd/pi/x", Reason: "invalid JSON", Payload: make([]byte, 10000)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	hosts, _ := s.Hosts()
	if len(hosts) != 1 || hosts[0].State != "online" || hosts[0].Version != "1.0" {
		t.Errorf("hosts = %+v", hosts)
	}
	dl, _ := s.DeadLetters(10)
	if len(dl) != 1 || dl[0].Reason != "invalid JSON" || len(dl[0].Payload) != MaxDeadPayload {
		t.Errorf("dead letters = %+v", dl)
	}
}

func TestOpenLockedAndReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	if _, err := Open(path, Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(&Batch{Readings: fixture()}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ro, err := Open(path, Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	n := 0
	_ = ro.Scan(Query{}, func(*schema.Reading) error { n++; return nil })
	if n != 9 {
		t.Errorf("read-only scan saw %d", n)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("99")) })
	s.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("err = %v, want ErrNewerSchema", err)
	}
}
