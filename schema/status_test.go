package schema

import (
	"encoding/json"
	"testing"
	"time"
)

// TestAckAppendJSON: the hand-written form is encoding/json's for the
// spool ids devices make, and reads back the same for any spool string.
func TestAckAppendJSON(t *testing.T) {
	at := time.Date(2026, 12, 1, 13, 0, 0, 123_456_789, time.FixedZone("x", 3600))
	for _, spool := range []string{"", "0123456789abcdef", `quo"te`, `back\\slash`, "<&>", "é", "\x01", "\u2028"} {
		a := Ack{Seq: 1<<53 - 1, Time: at, Spool: spool}
		got := a.AppendJSON(nil)
		want, _ := json.Marshal(ackWire{Seq: a.Seq, TS: FormatTime(a.Time), Spool: a.Spool})
		if spool == "" || spool == "0123456789abcdef" {
			if string(got) != string(want) {
				t.Errorf("spool %q: %s, want %s", spool, got, want)
			}
		}
		var back Ack
		if err := json.Unmarshal(got, &back); err != nil || back.Seq != a.Seq || back.Spool != spool || !back.Time.Equal(at.Truncate(time.Millisecond)) {
			t.Errorf("spool %q: %s reads back as %+v, %v", spool, got, back, err)
		}
	}
}

// TestStatusWearRoundTrip: a device's wear report is written with its
// time as text and reads back the same; a status without one has none.
func TestStatusWearRoundTrip(t *testing.T) {
	since := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	st := Status{State: StateOnline, Spool: "9f2c41d07a3be815", FirstSeq: 7,
		Wear: &Wear{Since: since, BytesWritten: 409600, Syncs: 12, BytesPerDay: 4915200, SyncsPerDay: 144}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"state":"online","spool":"9f2c41d07a3be815","first_seq":7,"wear":{"since":"2026-12-03T08:00:00.000Z","bytes_written":409600,"syncs":12,"bytes_per_day":4915200,"syncs_per_day":144}}`
	if string(b) != want {
		t.Fatalf("%s\nwant\n%s", b, want)
	}
	var back Status
	if err := json.Unmarshal(b, &back); err != nil || back.Wear == nil || *back.Wear != *st.Wear {
		t.Fatalf("reads back as %+v (wear %+v), %v", back, back.Wear, err)
	}
	if err := json.Unmarshal([]byte(`{"state":"offline"}`), &back); err != nil || back.Wear != nil {
		t.Fatalf("a status without wear: %+v, %v", back, err)
	}
}

// TestStatusSensorsRoundTrip: each sensor's state is written in its wire
// form and reads back the same.
func TestStatusSensorsRoundTrip(t *testing.T) {
	since := time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)
	st := Status{State: StateOnline, Sensors: map[string]SensorState{
		"cpu_load":    {State: SensorOK},
		"temperature": {State: SensorAbsent, Reason: "no DHT11/DHT22 IIO device under /sys/bus/iio/devices"},
		"ds18b20": {State: SensorFailing, Failing: FailureRun{Since: since, FailedSamples: 42},
			Error: &SampleError{Kind: Persistent, Message: "probe 28-0316a2791aff: not present on this machine"}},
	}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"state":"online","sensors":{"cpu_load":{"state":"ok"},` +
		`"ds18b20":{"state":"failing","since":"2026-11-23T10:15:00.000Z","failed_samples":42,"error":{"kind":"persistent","message":"probe 28-0316a2791aff: not present on this machine"}},` +
		`"temperature":{"state":"absent","reason":"no DHT11/DHT22 IIO device under /sys/bus/iio/devices"}}}`
	if string(b) != want {
		t.Fatalf("%s\nwant\n%s", b, want)
	}
	var back Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Sensors) != 3 || back.Sensors["temperature"] != st.Sensors["temperature"] || back.Sensors["cpu_load"] != st.Sensors["cpu_load"] {
		t.Fatalf("reads back as %+v", back.Sensors)
	}
	if got := back.Sensors["ds18b20"]; got.Failing != st.Sensors["ds18b20"].Failing || *got.Error != *st.Sensors["ds18b20"].Error {
		t.Fatalf("failing sensor reads back as %+v", got)
	}
}

// TestStatusSensorsLenient: sensor states are informative; however
// malformed, they never cost the status its state and seqs.
func TestStatusSensorsLenient(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    map[string]string // sensor → state
	}{
		{"not an object", `{"state":"online","first_seq":3,"sensors":"all fine"}`, nil},
		{"one entry malformed", `{"state":"online","first_seq":3,"sensors":{"a":{"state":"ok"},"b":7,"c":{},"bad/name":{"state":"ok"}}}`, map[string]string{"a": "ok"}},
		{"unknown state kept", `{"state":"online","first_seq":3,"sensors":{"a":{"state":"calibrating"}}}`, map[string]string{"a": "calibrating"}},
		{"bad since", `{"state":"online","first_seq":3,"sensors":{"a":{"state":"failing","since":"yesterday","failed_samples":2}}}`, map[string]string{"a": "failing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st Status
			if err := json.Unmarshal([]byte(tc.payload), &st); err != nil || st.State != StateOnline || st.FirstSeq != 3 {
				t.Fatalf("got %+v, %v", st, err)
			}
			got := map[string]string{}
			for name, s := range st.Sensors {
				got[name] = s.State
			}
			if len(got) != len(tc.want) {
				t.Fatalf("sensors = %v, want %v", got, tc.want)
			}
			for name, state := range tc.want {
				if got[name] != state {
					t.Errorf("%s = %q, want %q", name, got[name], state)
				}
			}
		})
	}
}
