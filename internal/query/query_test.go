package query

import (
	// Registers the format of ip_addresses readings, which the table uses.
	_ "github.com/apd-telemetry/apd/publisher/sensors/ip_addresses"

	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"90s", now.Add(-90 * time.Second), true},
		{"1h", now.Add(-time.Hour), true},
		{"7d", now.Add(-7 * 24 * time.Hour), true},
		{"2w", now.Add(-14 * 24 * time.Hour), true},
		{"1.5d", now.Add(-36 * time.Hour), true},
		{"2026-11-20", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), true},
		{"2026-11-20T10:00:00+01:00", time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC), true},
		{"2026-11-20T10:00:00", time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), true},
		{"yesterday", time.Time{}, false},
		{"-1d", time.Time{}, false},
		{"d", time.Time{}, false},
	}
	for _, tc := range tests {
		got, err := ParseTime(tc.in, now)
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func sample() []schema.Reading {
	ts := time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)
	return []schema.Reading{
		{Host: "pi", Sensor: "temperature", Time: ts, Seq: 7, Value: schema.Quantity{Magnitude: 21, Unit: "degC"}.Raw()},
		{Host: "pi", Sensor: "ip_addresses", Time: ts, Value: json.RawMessage(`["10.0.0.1","fe80::1"]`)},
		{Host: "pi", Sensor: "ac_connected", Time: ts, Error: &schema.SampleError{Kind: schema.Persistent, Message: "no battery"}},
	}
}

func write(t *testing.T, format string) string {
	t.Helper()
	var b strings.Builder
	w, err := NewWriter(format, &b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sample() {
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestWriters(t *testing.T) {
	table := write(t, "table")
	for _, want := range []string{"HOST", "21.0 °C (69.8 °F)", "10.0.0.1 (IPv4)", "fe80::1 (IPv6)", "error (persistent): no battery"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	csv := write(t, "csv")
	if !strings.HasPrefix(csv, "host,sensor,ts,seq,value,unit,human,error,title,extra\n") ||
		!strings.Contains(csv, "pi,temperature,2026-11-23T10:15:00.000Z,7,21,degC,21.0 °C (69.8 °F),") {
		t.Errorf("csv:\n%s", csv)
	}
	var arr []map[string]any
	if err := json.Unmarshal([]byte(write(t, "json")), &arr); err != nil || len(arr) != 3 {
		t.Errorf("json: %v, %d", err, len(arr))
	}
	nd := write(t, "ndjson")
	var back []schema.Reading
	if err := DecodeNDJSON(strings.NewReader(nd), func(r *schema.Reading) error { back = append(back, *r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(back) != 3 || back[0].Seq != 7 || back[2].Error == nil {
		t.Errorf("ndjson round trip: %+v", back)
	}
	if _, err := NewWriter("xml", &strings.Builder{}); err == nil {
		t.Error("unknown format accepted")
	}
	var empty strings.Builder
	w, _ := NewWriter("json", &empty)
	_ = w.Close()
	if empty.String() != "[]\n" {
		t.Errorf("empty json = %q", empty.String())
	}
}

func TestDecodeNDJSONErrors(t *testing.T) {
	for _, in := range []string{
		"not json\n",
		`{"v":1,"host":"a/b","sensor":"s","ts":"2026-11-23T10:15:00Z","value":1}` + "\n",
		`{"host":"a","sensor":"s","value":1}` + "\n",
		"\n" + `{"v":1,"host":"a","sensor":"s","value":1}` + "\n",
	} {
		err := DecodeNDJSON(strings.NewReader(in), func(*schema.Reading) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("%q: err = %v", in, err)
		}
	}
}
