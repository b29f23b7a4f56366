package chunk

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

func TestDecimal(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"21.3", true}, {"-0.5", true}, {"0", true}, {"30.0", true}, {"-12", true}, {"0.001", true},
		{"1e3", false}, {"-0", false}, {"01", false}, {"1.", false}, {".5", false}, {"1.5E2", false},
		{"12345678901234567890", false}, {"", false},
	} {
		m, d, ok := decimal([]byte(tc.in))
		if ok != tc.ok {
			t.Errorf("decimal(%q) ok = %v", tc.in, ok)
			continue
		}
		if ok && formatDecimal(m, d) != tc.in {
			t.Errorf("%q → %d,%d → %q", tc.in, m, d, formatDecimal(m, d))
		}
	}
}

// variedReadings has every kind of value, error readings, titles, human
// texts (derived or not), unknown members and irregular times.
func variedReadings() []schema.Reading {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	values := []string{`21.3`, `{"magnitude":21.4,"unit":"degC"}`, `{"magnitude":1e3,"unit":"degC"}`, `{"magnitude":-3.25,"unit":"degF"}`,
		`true`, `false`, `"text <&>"`, `["a","b"]`, `{"a":{"b":[1,2]}}`, `null`, `-0`, `1.5e-7`, `{"magnitude":22,"unit":"degC"}`,
		`{"magnitude":1,"unit":"a\"b"}`, `{"magnitude":"x","unit":"degC"}`, `{"magnitude":2,"unit":"degC","extra":1}`, `{"magnitude":,"unit":"degC"}`}
	var in []schema.Reading
	for i, v := range values {
		r := schema.Reading{Host: "h", Sensor: "temperature", Time: t0.Add(time.Duration(i*i) * 137 * time.Millisecond),
			Seq: uint64(100 - i), Value: json.RawMessage(v), Title: []string{"Ambient Temperature", "", "Other"}[i%3]}
		switch i % 4 {
		case 1:
			r.Human = schema.Format(r.Sensor, r.Value)
		case 2:
			r.Human = "custom"
		}
		if i == 5 {
			r.Extra = map[string]json.RawMessage{"note": json.RawMessage(`"<b>"`), "n": json.RawMessage(`[1]`)}
		}
		in = append(in, r)
	}
	return append(in, schema.Reading{Host: "h", Sensor: "temperature", Time: t0.Add(time.Hour),
		Error: &schema.SampleError{Kind: schema.Intermittent, Message: "checksum"}, Title: "Ambient Temperature"})
}

// TestChunkRoundTrip: every reading of variedReadings comes back byte
// for byte.
func TestChunkRoundTrip(t *testing.T) {
	in := variedReadings()
	out, err := Decode("h", "temperature", Encode("temperature", in))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d readings back, want %d", len(out), len(in))
	}
	for i := range in {
		want, got := in[i].AppendJSON(nil, schema.WithIdentity), out[i].AppendJSON(nil, schema.WithIdentity)
		if string(want) != string(got) {
			t.Errorf("reading %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestChunkSize reports (and bounds) the bytes per reading of a DHT22-like
// series: quantities with one decimal, 10 s apart.
func TestChunkSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var rs []schema.Reading
	v := 20.0
	for i := 0; i < MaxReadings; i++ {
		v += (rng.Float64() - 0.5) * 0.2
		q := schema.Quantity{Magnitude: float64(int(v*10)) / 10, Unit: "degC"}
		r := schema.Reading{Host: "h", Sensor: "temperature", Title: "Ambient Temperature", Seq: uint64(i + 1),
			Time: t0.Add(time.Duration(i) * 10 * time.Second), Value: json.RawMessage(fmt.Sprintf(`{"magnitude":%.1f,"unit":"degC"}`, q.Magnitude))}
		r.Human = schema.Format(r.Sensor, r.Value)
		rs = append(rs, r)
	}
	b := Encode("temperature", rs)
	per := float64(len(b)) / float64(len(rs))
	t.Logf("%d readings in %d bytes: %.2f bytes per reading", len(rs), len(b), per)
	if per > 4 {
		t.Errorf("%.2f bytes per reading", per)
	}
}

func TestMergeReadings(t *testing.T) {
	at := func(ms ...int) []schema.Reading {
		var out []schema.Reading
		for _, m := range ms {
			out = append(out, schema.Reading{Time: time.UnixMilli(int64(m)), Value: json.RawMessage(fmt.Sprint(m))})
		}
		return out
	}
	merged, ins := Merge(at(1, 3, 5), at(0, 3, 4, 4, 6))
	var got []int64
	for _, r := range merged {
		got = append(got, r.Time.UnixMilli())
	}
	if fmt.Sprint(got) != "[0 1 3 4 5 6]" || fmt.Sprint(ins) != "[true false true false true]" {
		t.Errorf("merged %v, inserted %v", got, ins)
	}
}

// TestAppendDecimal: the buffer-appending formatter writes what the
// string-building one it replaced wrote, over signs, lengths and points.
func TestAppendDecimal(t *testing.T) {
	reference := func(m int64, decimals int) string {
		neg := m < 0
		if neg {
			m = -m
		}
		s := strconv.FormatInt(m, 10)
		if decimals > 0 {
			if len(s) <= decimals {
				s = strings.Repeat("0", decimals-len(s)+1) + s
			}
			s = s[:len(s)-decimals] + "." + s[len(s)-decimals:]
		}
		if neg {
			s = "-" + s
		}
		return s
	}
	for _, m := range []int64{0, 1, -1, 5, -5, 9, 10, 99, 100, 213, -213, 1234567, -1000, 1<<53 - 1, -(1 << 53), math.MaxInt64} {
		for dec := 0; dec <= 19; dec++ {
			if got, want := string(appendDecimal([]byte("x"), m, dec)), "x"+reference(m, dec); got != want {
				t.Errorf("appendDecimal(%d, %d) = %q, want %q", m, dec, got, want)
			}
		}
	}
}

// TestSummary: per-period counts and sums of the numeric readings, a
// round trip through its encoding, and no summary for chunks whose
// readings mix units or titles.
func TestSummary(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 11, 58, 0, 0, time.UTC)
	var rs []schema.Reading
	for i := range 12 { // 12:00 ± minutes, every minute
		rs = append(rs, schema.Reading{Time: t0.Add(time.Duration(i) * time.Minute), Title: "T", Value: schema.Quantity{Magnitude: float64(i), Unit: "degC"}.Raw()})
	}
	rs[3].Value, rs[3].Error = nil, &schema.SampleError{Message: "failed"}
	enc := Encode("temperature", rs)
	s, ok := Summarize(rs, enc, 5*time.Minute)
	if !ok || s.Unit != "degC" || s.Title != "T" || s.Check != Checksum(enc) {
		t.Fatalf("summary %+v %v", s, ok)
	}
	// 11:55 holds 11:58, 11:59; 12:00 holds 12:00–12:04 without 12:01
	// (failed); 12:05 holds 12:05–12:09.
	want := []SummaryRow{{t0.Add(-3 * time.Minute).UnixMilli(), 2, 0 + 1}, {t0.Add(2 * time.Minute).UnixMilli(), 4, 2 + 4 + 5 + 6}, {t0.Add(7 * time.Minute).UnixMilli(), 5, 7 + 8 + 9 + 10 + 11}}
	if fmt.Sprint(s.Rows) != fmt.Sprint(want) {
		t.Errorf("rows %v, want %v", s.Rows, want)
	}
	back, err := DecodeSummary(s.Append(nil))
	if err != nil || fmt.Sprint(back) != fmt.Sprint(s) {
		t.Errorf("round trip: %+v, %v; want %+v", back, err, s)
	}
	if _, err := DecodeSummary(s.Append(nil)[:10]); err == nil {
		t.Error("a cut summary decoded")
	}
	mixed := append([]schema.Reading(nil), rs...)
	mixed[5].Value = schema.Quantity{Magnitude: 1, Unit: "degF"}.Raw()
	if _, ok := Summarize(mixed, enc, 5*time.Minute); ok {
		t.Error("a summary of mixed units")
	}
	mixed[5].Value, mixed[5].Title = rs[5].Value, "other"
	if _, ok := Summarize(mixed, enc, 5*time.Minute); ok {
		t.Error("a summary of mixed titles")
	}
	words := []schema.Reading{{Time: t0, Value: json.RawMessage(`"on"`)}}
	if s, ok := Summarize(words, Encode("state", words), 5*time.Minute); !ok || len(s.Rows) != 0 {
		t.Errorf("no numbers: %+v %v", s, ok)
	}
}
