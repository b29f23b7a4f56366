package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestHostRecordJSON: the hand-written encoding of a host record is
// encoding/json's, byte for byte, on records of every shape.
func TestHostRecordJSON(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "online", "v1.2.3", "0123456789abcdef", `quo"te`, `back\slash`, "<&>", "tab\there", "é", "\xff", "\u2028"}
	times := []time.Time{{}, time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 13, 0, 0, 123_000_000, time.UTC),
		time.Date(1999, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)), time.UnixMilli(1)}
	pick := func(xs []string) string { return xs[rnd.IntN(len(xs))] }
	pickT := func() time.Time { return times[rnd.IntN(len(times))] }
	for i := range 2000 {
		h := &HostRecord{State: pick(strs), StateTime: pickT(), Version: pick(strs), LastSeen: pickT(),
			SeqState: SeqState{Watermark: rnd.Uint64N(3) * rnd.Uint64(), HasMark: rnd.IntN(2) == 0,
				MaxSeq: rnd.Uint64N(2) * rnd.Uint64N(1<<53), Lost: rnd.Uint64N(2) * 7, Spool: pick(strs),
				PendingFloor: rnd.Uint64N(2) * rnd.Uint64N(1<<53)}, Aggregator: pick(strs)}
		if n := rnd.IntN(4); n > 0 {
			h.Sensors = map[string]*SensorStats{}
			for j := range n * 3 {
				h.Sensors[fmt.Sprintf("s%02d%s", j, pick(strs))] = &SensorStats{Count: rnd.Uint64(), Last: pickT()}
			}
		}
		switch rnd.IntN(3) {
		case 1:
			h.Meta = HostMeta{Display: pick(strs), Colour: "#cc3300"}
		case 2:
			h.Meta = HostMeta{Location: &Location{Lat: 52.37, Lon: -4.89}}
		}
		want, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if _, err := (&HostRecord{LastSeen: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}).AppendJSON(nil); err == nil {
		t.Error("a time past year 9999 encoded")
	}
}

// TestHostRecordBeforePendingFloor: a record written before hosts could
// have a pending floor decodes with none, and one without a pending floor
// encodes as it did.
func TestHostRecordBeforePendingFloor(t *testing.T) {
	old := `{"watermark":54,"has_mark":true,"max_seq":54,"spool":"a1"}`
	var h HostRecord
	if err := json.Unmarshal([]byte(old), &h); err != nil {
		t.Fatal(err)
	}
	if h.PendingFloor != 0 || h.Watermark != 54 || !h.HasMark {
		t.Errorf("decoded %+v", h.SeqState)
	}
	if got, err := h.AppendJSON(nil); err != nil || string(got) != old {
		t.Errorf("encoded %s, %v; want %s", got, err, old)
	}
}
