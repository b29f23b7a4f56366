package store

import (
	"slices"
	"testing"
)

// memPending is a Pending in memory.
type memPending struct{ seqs []uint64 }

func (m *memPending) Min() (uint64, bool, error) {
	if len(m.seqs) == 0 {
		return 0, false, nil
	}
	return slices.Min(m.seqs), true, nil
}

func (m *memPending) DeleteMin() error {
	if len(m.seqs) > 0 {
		i := slices.Index(m.seqs, slices.Min(m.seqs))
		m.seqs = slices.Delete(m.seqs, i, i+1)
	}
	return nil
}

func (m *memPending) Add(seq uint64) error {
	if !slices.Contains(m.seqs, seq) {
		m.seqs = append(m.seqs, seq)
	}
	return nil
}

func TestAdvance(t *testing.T) {
	type step struct {
		name        string
		ch          SeqChange
		wantMark    uint64
		wantAck     bool
		wantLost    uint64
		wantPending []uint64
		wantFloor   uint64 // PendingFloor after the step
	}
	seqs := func(from, to uint64) []uint64 {
		var qs []uint64
		for q := from; q <= to; q++ {
			qs = append(qs, q)
		}
		return qs
	}
	tests := []struct {
		name  string
		start SeqState
		steps []step
	}{
		{"no status: waits for seq 1", SeqState{}, []step{
			{"backlog first", SeqChange{Arrived: []uint64{3, 4}}, 0, false, 0, []uint64{3, 4}, 0},
			{"seq 1 and 2 join it up", SeqChange{Arrived: []uint64{2, 1}}, 4, true, 0, nil, 0},
		}},
		{"first status declares the start", SeqState{}, []step{
			{"readings before the status", SeqChange{Arrived: []uint64{50, 51}}, 0, false, 0, []uint64{50, 51}, 0},
			{"first_seq 40: nothing lost", SeqChange{Floor: 39, HasFloor: true}, 39, true, 0, []uint64{50, 51}, 0},
			{"backlog 40..49", SeqChange{Arrived: seqs(40, 49)}, 51, true, 0, nil, 0},
		}},
		{"first status ahead of the readings waits for them", SeqState{}, []step{
			{"first_seq 40 alone", SeqChange{Floor: 39, HasFloor: true}, 0, false, 0, nil, 39},
			{"seq 40: the start taken, nothing lost", SeqChange{Arrived: []uint64{40}}, 40, true, 0, nil, 0},
		}},
		{"later floor counts what never came", SeqState{Watermark: 100, HasMark: true}, []step{
			{"102 and 104 over a gap", SeqChange{Arrived: []uint64{102, 104}}, 100, false, 0, []uint64{102, 104}, 0},
			{"101 joins 102", SeqChange{Arrived: []uint64{101}}, 102, true, 0, []uint64{104}, 0},
			{"floor 105, above 104: waits", SeqChange{Floor: 105, HasFloor: true}, 102, false, 0, []uint64{104}, 105},
			{"106 proves it: 103 and 105 lost, 104 not", SeqChange{Arrived: []uint64{106}}, 106, true, 2, nil, 0},
			{"stale floor changes nothing", SeqChange{Floor: 101, HasFloor: true}, 106, false, 0, nil, 0},
		}},
		{"floor at the highest seq committed takes effect at once", SeqState{Watermark: 100, HasMark: true}, []step{
			{"102 and 104 over a gap", SeqChange{Arrived: []uint64{102, 104}}, 100, false, 0, []uint64{102, 104}, 0},
			{"floor 104: 101 and 103 lost", SeqChange{Floor: 104, HasFloor: true}, 104, true, 2, nil, 0},
		}},
		{"floor far above what was sent", SeqState{Watermark: 54, HasMark: true, MaxSeq: 54}, []step{
			{"first_seq 99999 after 54", SeqChange{Floor: 99_998, HasFloor: true}, 54, false, 0, nil, 99_998},
			{"55..60 acknowledged", SeqChange{Arrived: seqs(55, 60)}, 60, true, 0, nil, 99_998},
			{"99999 and a gap to 100001", SeqChange{Arrived: []uint64{99_999, 100_001}}, 99_999, true, 99_999 - 61, []uint64{100_001}, 0},
		}},
		{"the floor arrives with its readings", SeqState{Watermark: 54, HasMark: true, MaxSeq: 54}, []step{
			{"first_seq 99999 and 99999", SeqChange{Floor: 99_998, HasFloor: true, Arrived: []uint64{99_999}}, 99_999, true, 99_998 - 54, nil, 0},
		}},
		{"the latest declaration stands", SeqState{Watermark: 10, HasMark: true, MaxSeq: 10}, []step{
			{"first_seq 501", SeqChange{Floor: 500, HasFloor: true}, 10, false, 0, nil, 500},
			{"first_seq 1 replaces it", SeqChange{Floor: 0, HasFloor: true}, 10, false, 0, nil, 0},
			{"500 and 501 wait for 11..499", SeqChange{Arrived: []uint64{500, 501}}, 10, false, 0, []uint64{500, 501}, 0},
		}},
		{"duplicates and order within a commit", SeqState{Watermark: 9, HasMark: true}, []step{
			{"12 10 11 10 9", SeqChange{Arrived: []uint64{12, 10, 11, 10, 9}}, 12, true, 0, nil, 0},
			{"all below the mark", SeqChange{Arrived: []uint64{5, 12}}, 12, false, 0, nil, 0},
		}},
		{"restart acknowledges even at 0", SeqState{Spool: "new"}, []step{
			{"new spool, nothing sent", SeqChange{Floor: 0, HasFloor: true, Restarted: true}, 0, true, 0, nil, 0},
		}},
		{"restart acknowledges, its floor waits", SeqState{Spool: "new"}, []step{
			{"new spool from first_seq 40", SeqChange{Floor: 39, HasFloor: true, Restarted: true}, 0, true, 0, nil, 39},
			{"seq 41 before 40", SeqChange{Arrived: []uint64{41}}, 39, true, 0, []uint64{41}, 0},
		}},
	}
	for _, tc := range tests {
		h, p := tc.start, &memPending{}
		for _, st := range tc.steps {
			ack, lost, err := Advance(&h, st.ch, p)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(p.seqs)
			if h.Watermark != st.wantMark || ack != st.wantAck || lost != st.wantLost || !slices.Equal(p.seqs, st.wantPending) || h.PendingFloor != st.wantFloor {
				t.Errorf("%s / %s: mark %d ack %v lost %d pending %v floor %d; want %d %v %d %v %d", tc.name, st.name,
					h.Watermark, ack, lost, p.seqs, h.PendingFloor, st.wantMark, st.wantAck, st.wantLost, st.wantPending, st.wantFloor)
			}
		}
	}
}

func TestRestartAndJumps(t *testing.T) {
	h := SeqState{Watermark: 5000, HasMark: true, MaxSeq: 5000, Lost: 7, Spool: "old"}
	if !h.TooFarAhead(5000+MaxSeqJump+1) || h.TooFarAhead(5000+MaxSeqJump) || h.TooFarAhead(3) {
		t.Error("TooFarAhead bounds")
	}
	// A pending floor lets the readings that prove it through.
	f := SeqState{Watermark: 5000, HasMark: true, MaxSeq: 5000, PendingFloor: 5000 + 3*MaxSeqJump}
	for _, tc := range []struct {
		seq  uint64
		want bool
	}{
		{5000 + MaxSeqJump, false},
		{5000 + MaxSeqJump + 1, true},
		{f.PendingFloor - 1, true},
		{f.PendingFloor, false},
		{f.PendingFloor + MaxSeqJump, false},
		{f.PendingFloor + MaxSeqJump + 1, true},
	} {
		if got := f.TooFarAhead(tc.seq); got != tc.want {
			t.Errorf("pending floor %d: TooFarAhead(%d) = %v, want %v", f.PendingFloor, tc.seq, got, tc.want)
		}
	}
	h.PendingFloor = 9000
	h.Restart("new")
	if h != (SeqState{Lost: 7, Spool: "new"}) {
		t.Errorf("after restart: %+v", h)
	}
}

func TestFloorTooFarAhead(t *testing.T) {
	const j = MaxSeqJump
	for _, tc := range []struct {
		name  string
		h     SeqState
		first uint64
		want  bool
	}{
		{"no first_seq", SeqState{HasMark: true, Watermark: 5}, 0, false},
		{"first declaration, however far", SeqState{}, 1 << 40, false},
		{"first declaration after readings", SeqState{MaxSeq: 9}, 1 << 40, false},
		{"below the watermark", SeqState{HasMark: true, Watermark: 100}, 50, false},
		{"next seq", SeqState{HasMark: true, Watermark: 100, MaxSeq: 100}, 101, false},
		{"skips exactly the bound above the watermark", SeqState{HasMark: true, Watermark: 100}, 100 + j + 1, false},
		{"skips one more", SeqState{HasMark: true, Watermark: 100}, 100 + j + 2, true},
		{"measured from the highest seq, not the watermark", SeqState{HasMark: true, Watermark: 100, MaxSeq: 5000}, 5000 + j + 1, false},
		{"one more than the bound above the highest seq", SeqState{HasMark: true, Watermark: 100, MaxSeq: 5000}, 5000 + j + 2, true},
		{"the highest seq a status may carry", SeqState{HasMark: true, Watermark: 100}, 1 << 53, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.FloorTooFarAhead(tc.first); got != tc.want {
				t.Errorf("%+v FloorTooFarAhead(%d) = %v, want %v", tc.h, tc.first, got, tc.want)
			}
		})
	}
}
