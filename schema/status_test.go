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
