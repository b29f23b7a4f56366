package chunk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// TestRowsRoundTrip: rows give back every reading byte for byte, in
// order, whatever their times (rows are also written out of order, in a
// write-ahead log record).
func TestRowsRoundTrip(t *testing.T) {
	in := variedReadings()
	in[3], in[7] = in[7], in[3] // a time that goes back
	var b []byte
	var st RowState
	for i := range in {
		b = AppendRow(b, &st, &in[i])
	}
	out, rest, err := ReadRows("h", "temperature", b, len(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 0 {
		t.Errorf("%d bytes left over", len(rest))
	}
	for i := range in {
		want, got := in[i].AppendJSON(nil, schema.WithIdentity), out[i].AppendJSON(nil, schema.WithIdentity)
		if string(want) != string(got) {
			t.Errorf("reading %d:\n got %s\nwant %s", i, got, want)
		}
	}
	var first RowState
	if tm, ok := RowTime(b, &first); !ok || !tm.Equal(in[0].Time) {
		t.Errorf("RowTime = %v, %v; want %v", tm, ok, in[0].Time)
	}
}

// TestRowSize bounds what the head holds per reading of a DHT22-like
// series: a quantity, its derived human text, a title, 10 s apart.
func TestRowSize(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var b []byte
	var st RowState
	const n = 100
	for i := 0; i < n; i++ {
		r := schema.Reading{Host: "h", Sensor: "temperature", Title: "Ambient Temperature", Seq: uint64(1000 + 10*i),
			Time: t0.Add(time.Duration(i) * 10 * time.Second), Value: json.RawMessage(fmt.Sprintf(`{"magnitude":%.1f,"unit":"degC"}`, 20+float64(i%7)/10))}
		r.Human = schema.Format(r.Sensor, r.Value)
		b = AppendRow(b, &st, &r)
	}
	per := float64(len(b)) / n
	t.Logf("%d rows in %d bytes: %.1f bytes per reading", n, len(b), per)
	if per > 6 {
		t.Errorf("%.1f bytes per reading", per)
	}
}

// FuzzRows: any bytes either read as rows or give an error, never a panic;
// what reads writes and reads again to the same readings.
// Run with: go test ./internal/store/chunk -run '^$' -fuzz FuzzRows
func FuzzRows(f *testing.F) {
	in := variedReadings()
	var b []byte
	var st RowState
	for i := range in {
		b = AppendRow(b, &st, &in[i])
	}
	f.Add(b, len(in))
	f.Add([]byte{2, 2, 0xff, 1}, 1)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		rs, _, err := ReadRows("h", "temperature", data, n)
		if err != nil {
			return
		}
		var again []byte
		var st RowState
		for i := range rs {
			again = AppendRow(again, &st, &rs[i])
		}
		back, _, err := ReadRows("h", "temperature", again, n)
		if err != nil {
			t.Fatalf("rewritten rows do not read: %v", err)
		}
		// Transcoded onto other rows, the run reads the same.
		prefix, pst := encodeRun(in[:3])
		moved, _, _, _, _, err := AppendRun(prefix, &pst, data, n)
		if err != nil {
			t.Fatalf("rows that read do not transcode: %v", err)
		}
		all, _, err := ReadRows("h", "temperature", moved, 3+n)
		if err != nil {
			t.Fatalf("transcoded rows do not read: %v", err)
		}
		for i := range rs {
			a, b := rs[i].AppendJSON(nil, schema.WithIdentity), back[i].AppendJSON(nil, schema.WithIdentity)
			if string(a) != string(b) {
				t.Fatalf("reading %d: %s became %s", i, a, b)
			}
			if c := all[3+i].AppendJSON(nil, schema.WithIdentity); string(a) != string(c) {
				t.Fatalf("reading %d: %s transcoded to %s", i, a, c)
			}
		}
	})
}

// encodeRun writes rs as one run and returns it with the state after it.
func encodeRun(rs []schema.Reading) ([]byte, RowState) {
	var b []byte
	var st RowState
	for i := range rs {
		b = AppendRow(b, &st, &rs[i])
	}
	return b, st
}

// TestAppendRun: runs written apart and transcoded one after another are,
// byte for byte, the rows of one run written at once; the times and their
// order are reported.
func TestAppendRun(t *testing.T) {
	in := variedReadings()
	want, wantSt := encodeRun(in)
	for _, cuts := range [][]int{{1}, {3, 4, 10}, {len(in) / 2}, {1, 2, 3, 4, 5, 6, 7, 8}} {
		var got []byte
		var st RowState
		from := 0
		for _, cut := range append(cuts, len(in)) {
			run, _ := encodeRun(in[from:cut])
			var rest []byte
			var first, last int64
			var inc bool
			var err error
			got, rest, first, last, inc, err = AppendRun(got, &st, append(run, 0xAA), cut-from)
			if err != nil {
				t.Fatal(err)
			}
			if len(rest) != 1 || first != in[from].Time.UnixMilli() || last != in[cut-1].Time.UnixMilli() || !inc {
				t.Errorf("cuts %v: run %d..%d: rest %d bytes, first %d, last %d, increasing %v", cuts, from, cut, len(rest), first, last, inc)
			}
			from = cut
		}
		if !bytes.Equal(got, want) || st != wantSt {
			t.Errorf("cuts %v: transcoded runs differ from one run", cuts)
		}
	}
	back := []schema.Reading{in[1], in[0]}
	run, _ := encodeRun(back)
	if _, _, _, _, inc, err := AppendRun(nil, new(RowState), run, 2); err != nil || inc {
		t.Errorf("a run going back in time: increasing %v, %v", inc, err)
	}
}
