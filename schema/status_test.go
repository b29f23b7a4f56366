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
