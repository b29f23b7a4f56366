package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// testValueKindsRoundTrip: every kind of value, title, human text, seq,
// error and unknown member comes back byte for byte, late and out-of-order
// inserts land in time order, and more readings than a chunk holds in one
// series are no different.
func testValueKindsRoundTrip(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	values := []string{`21.3`, `21.30`, `-0`, `1e3`, `1.5e-7`, `{"magnitude":21.4,"unit":"degC"}`, `{"magnitude":1e3,"unit":"degC"}`,
		`{"unit":"degC","magnitude":2}`, `true`, `false`, `null`, `"text <&> \u00e9"`, `["a","b"]`, `{"a":{"b":[1,2]}}`, `12345678901234567890`}
	var in []schema.Reading
	for i, v := range values {
		r := schema.Reading{Host: "kinds", Sensor: "mixed", Time: T0.Add(time.Duration(i) * time.Second), Seq: uint64(i + 1),
			Value: json.RawMessage(v), Title: []string{"Mixed", "", "Other title"}[i%3]}
		switch i % 4 {
		case 1:
			r.Human = schema.Format(r.Sensor, r.Value)
		case 2:
			r.Human = "as the device said"
		case 3:
			r.Human = "line one\nline two"
		}
		if i == 5 {
			r.Extra = map[string]json.RawMessage{"note": json.RawMessage(`"<b>"`), "n": json.RawMessage(`[1, 2]`)}
		}
		in = append(in, r)
	}
	in = append(in, schema.Reading{Host: "kinds", Sensor: "mixed", Time: T0.Add(time.Hour), Seq: 99, Title: "Mixed",
		Error: &schema.SampleError{Kind: schema.Intermittent, Message: "checksum failed"}})
	// A long series, written newest half first: the older half is late.
	for i := 0; i < 1200; i++ {
		in = append(in, schema.Reading{Host: "kinds", Sensor: "long", Time: T0.Add(time.Duration(i) * 10 * time.Second),
			Value: json.RawMessage(fmt.Sprintf(`{"magnitude":%d.%d,"unit":"percent"}`, 40+i%20, i%10))})
	}
	late := in[len(values)+1+600:]
	early := in[:len(values)+1+600]
	for _, part := range [][]schema.Reading{late, early} {
		if _, err := s.Commit(&store.Batch{Readings: part}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{}
	for _, r := range in {
		want[r.Sensor] = append(want[r.Sensor], string(r.AppendJSON(nil, schema.WithIdentity)))
	}
	for sensor, w := range want {
		var got []string
		err := s.Scan(store.Query{Sensor: sensor}, func(r *schema.Reading) error {
			got = append(got, string(r.AppendJSON(nil, schema.WithIdentity)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, "\n") != strings.Join(w, "\n") {
			for i := range min(len(got), len(w)) {
				if got[i] != w[i] {
					t.Fatalf("%s: reading %d is\n%s\nwant\n%s", sensor, i, got[i], w[i])
				}
			}
			t.Fatalf("%s: %d readings back, want %d", sensor, len(got), len(w))
		}
	}
}

// testReadersDuringWrites: scans and host lists running while commits do
// see whole commits — a count that is a multiple of the commit size — and
// never fail.
func testReadersDuringWrites(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	const commits, per = 40, 50
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := 0
				if err := s.Scan(store.Query{Sensor: "busy"}, func(*schema.Reading) error { n++; return nil }); err != nil {
					errs <- err
					return
				}
				if n%per != 0 {
					errs <- fmt.Errorf("a scan saw %d readings, not a whole number of commits of %d", n, per)
					return
				}
				if _, err := s.Hosts(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for c := range commits {
		var b store.Batch
		for i := range per {
			b.Readings = append(b.Readings, schema.Reading{Host: "h", Sensor: "busy", Time: T0.Add(time.Duration(c*per+i) * time.Second),
				Value: json.RawMessage(fmt.Sprint(i))})
		}
		if _, err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// testLongScans: a scan over more readings than an engine reads at once
// (several series of thousands) returns each exactly once, in order, also
// from the middle of a series and with a limit; a scan callback that
// commits meanwhile does not deadlock.
func testLongScans(t *testing.T, open Opener) {
	s := open(t, store.Limits{})
	const perSeries = 5000
	for _, host := range []string{"a", "b", "c"} {
		var b store.Batch
		for i := range perSeries {
			b.Readings = append(b.Readings, schema.Reading{Host: host, Sensor: "long", Time: T0.Add(time.Duration(i) * time.Second),
				Value: json.RawMessage(fmt.Sprint(i))})
		}
		if _, err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	check := func(q store.Query, want int, first string) {
		t.Helper()
		var last schema.Reading
		n := 0
		err := s.Scan(q, func(r *schema.Reading) error {
			if n == 0 && r.Host+"/"+string(r.Value) != first {
				t.Errorf("%+v: first reading %s/%s, want %s", q, r.Host, r.Value, first)
			}
			if n > 0 && (r.Host < last.Host || r.Host == last.Host && !r.Time.After(last.Time)) {
				t.Fatalf("%+v: %s at %s after %s at %s", q, r.Host, r.Time, last.Host, last.Time)
			}
			last = *r
			n++
			return nil
		})
		if err != nil || n != want {
			t.Errorf("%+v: %d readings (%v), want %d", q, n, err, want)
		}
	}
	check(store.Query{Sensor: "long"}, 3*perSeries, "a/0")
	check(store.Query{Sensor: "long", Since: T0.Add(4500 * time.Second)}, 3*500, "a/4500")
	check(store.Query{Sensor: "long", Limit: 4100}, 4100, "a/0")
	check(store.Query{Sensor: "long", Hosts: []string{"c", "b"}}, 2*perSeries, "b/0")
	// A slow consumer that writes while it reads.
	n := 0
	err := s.Scan(store.Query{Sensor: "long", Hosts: []string{"a"}}, func(r *schema.Reading) error {
		if n%1000 == 0 {
			b := store.Batch{Readings: []schema.Reading{{Host: "w", Sensor: "other", Time: r.Time, Value: json.RawMessage("1")}}}
			if _, err := s.Commit(&b); err != nil {
				return err
			}
		}
		n++
		return nil
	})
	if err != nil || n != perSeries {
		t.Errorf("scan that commits: %d readings, %v", n, err)
	}
}
