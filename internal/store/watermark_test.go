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
	}
	tests := []struct {
		name  string
		start SeqState
		steps []step
	}{
		{"no status: waits for seq 1", SeqState{}, []step{
			{"backlog first", SeqChange{Arrived: []uint64{3, 4}}, 0, false, 0, []uint64{3, 4}},
			{"seq 1 and 2 join it up", SeqChange{Arrived: []uint64{2, 1}}, 4, true, 0, nil},
		}},
		{"first status declares the start", SeqState{}, []step{
			{"readings before the status", SeqChange{Arrived: []uint64{50, 51}}, 0, false, 0, []uint64{50, 51}},
			{"first_seq 40: nothing lost", SeqChange{Floor: 39, HasFloor: true}, 39, true, 0, []uint64{50, 51}},
			{"backlog 40..49", SeqChange{Arrived: []uint64{40, 41, 42, 43, 44, 45, 46, 47, 48, 49}}, 51, true, 0, nil},
		}},
		{"later floor counts what never came", SeqState{Watermark: 100, HasMark: true}, []step{
			{"102 and 104 over a gap", SeqChange{Arrived: []uint64{102, 104}}, 100, false, 0, []uint64{102, 104}},
			{"101 joins 102", SeqChange{Arrived: []uint64{101}}, 102, true, 0, []uint64{104}},
			{"floor 105: 103 and 105 lost, 104 not", SeqChange{Floor: 105, HasFloor: true}, 105, true, 2, nil},
			{"stale floor changes nothing", SeqChange{Floor: 101, HasFloor: true}, 105, false, 0, nil},
		}},
		{"duplicates and order within a commit", SeqState{Watermark: 9, HasMark: true}, []step{
			{"12 10 11 10 9", SeqChange{Arrived: []uint64{12, 10, 11, 10, 9}}, 12, true, 0, nil},
			{"all below the mark", SeqChange{Arrived: []uint64{5, 12}}, 12, false, 0, nil},
		}},
		{"restart acknowledges even at 0", SeqState{Spool: "new"}, []step{
			{"new spool, nothing sent", SeqChange{Floor: 0, HasFloor: true, Restarted: true}, 0, true, 0, nil},
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
			if h.Watermark != st.wantMark || ack != st.wantAck || lost != st.wantLost || !slices.Equal(p.seqs, st.wantPending) {
				t.Errorf("%s / %s: mark %d ack %v lost %d pending %v; want %d %v %d %v", tc.name, st.name,
					h.Watermark, ack, lost, p.seqs, st.wantMark, st.wantAck, st.wantLost, st.wantPending)
			}
		}
	}
}

func TestRestartAndJumps(t *testing.T) {
	h := SeqState{Watermark: 5000, HasMark: true, MaxSeq: 5000, Lost: 7, Spool: "old"}
	if !h.TooFarAhead(5000+MaxSeqJump+1) || h.TooFarAhead(5000+MaxSeqJump) || h.TooFarAhead(3) {
		t.Error("TooFarAhead bounds")
	}
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
