package store

import "slices"

// SeqState is what an engine keeps of one host's seqs, and what the
// watermark rules change.
type SeqState struct {
	// Watermark: every reading of the host's current spool with seq ≤ it
	// is committed, or was declared lost by the device.
	Watermark uint64 `json:"watermark"`
	// HasMark is set once the device declared where its seqs start (the
	// first_seq of a $status); until then the watermark waits for seq 1.
	HasMark bool `json:"has_mark,omitempty"`
	// MaxSeq is the highest seq committed.
	MaxSeq uint64 `json:"max_seq,omitempty"`
	// Lost counts seqs the device declared dropped before they were
	// stored.
	Lost uint64 `json:"lost,omitempty"`
	// Spool is the id of the device's current spool.
	Spool string `json:"spool,omitempty"`
}

// Pending is an engine's set of one host's seqs committed above a gap in
// the watermark, which a later commit may join up. Lowest first.
type Pending interface {
	// Min returns the lowest seq in the set.
	Min() (seq uint64, ok bool, err error)
	// DeleteMin removes the lowest seq.
	DeleteMin() error
	// Add puts seq in the set.
	Add(seq uint64) error
}

// SeqChange is what one commit brings a host: the seqs it committed, the
// floor its $status declared (first_seq − 1) and whether the device has a
// new spool.
type SeqChange struct {
	// Arrived are the seqs committed now, in any order, repeats allowed.
	Arrived  []uint64
	Floor    uint64
	HasFloor bool
	// Restarted says that a $status of this commit named a new spool (see
	// SeqState.Restart, which the engine calls first).
	Restarted bool
}

// Advance applies one commit's seqs to a host's watermark, by apd's rules:
//
//   - Only what the device declares starts the watermark: the floor of its
//     first $status; until then it waits for seq 1, so an acknowledgement
//     never covers backlog the device has not replayed yet.
//   - A later floor above the watermark skips seqs the device will never
//     send; those not committed are counted lost.
//   - The committed seqs, and those pending from earlier commits, extend
//     the watermark as far as they run without a gap; the rest are kept
//     pending (so an in-order commit writes no pending seqs at all).
//
// It reports whether the host is to be acknowledged (its watermark moved,
// it was declared, or its spool restarted) and how many seqs it counted
// lost. p holds the host's pending seqs.
func Advance(h *SeqState, ch SeqChange, p Pending) (ack bool, lost uint64, err error) {
	before, hadMark := h.Watermark, h.HasMark
	seqs := slices.Clone(ch.Arrived)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	if n := len(seqs); n > 0 {
		h.MaxSeq = max(h.MaxSeq, seqs[n-1])
	}
	if ch.HasFloor && ch.Floor > h.Watermark {
		// Seqs up to the floor will never come: those committed (now or
		// earlier) are not lost, the rest are — unless this is the device's
		// first declaration, which only says where its seqs start.
		committed := map[uint64]bool{}
		for _, q := range seqs {
			if q > h.Watermark && q <= ch.Floor {
				committed[q] = true
			}
		}
		for {
			q, ok, err := p.Min()
			if err != nil {
				return false, 0, err
			}
			if !ok || q > ch.Floor {
				break
			}
			if q > h.Watermark {
				committed[q] = true
			}
			if err := p.DeleteMin(); err != nil {
				return false, 0, err
			}
		}
		if h.HasMark {
			lost = ch.Floor - h.Watermark - uint64(len(committed))
			h.Lost += lost
		}
		h.Watermark = ch.Floor
	}
	if ch.HasFloor {
		h.HasMark = true
	}
	i := 0
	for {
		next := h.Watermark + 1
		for i < len(seqs) && seqs[i] < next {
			i++
		}
		if i < len(seqs) && seqs[i] == next {
			h.Watermark, i = next, i+1
			continue
		}
		q, ok, err := p.Min()
		if err != nil {
			return false, 0, err
		}
		if ok && q <= next {
			if q == next {
				h.Watermark = next
			}
			if err := p.DeleteMin(); err != nil {
				return false, 0, err
			}
			continue
		}
		break
	}
	for _, q := range seqs[i:] {
		if err := p.Add(q); err != nil {
			return false, 0, err
		}
	}
	return h.Watermark != before || !hadMark && h.HasMark || ch.Restarted, lost, nil
}

// Restart forgets the host's seqs because its device has a new spool
// (wiped storage: seqs start again at 1); the engine also empties the
// host's Pending. The readings stay stored.
func (h *SeqState) Restart(spool string) {
	*h = SeqState{Lost: h.Lost, Spool: spool}
}

// TooFarAhead reports whether seq cannot be real for the host: more than
// MaxSeqJump above its watermark.
func (h SeqState) TooFarAhead(seq uint64) bool { return seq-min(seq, h.Watermark) > MaxSeqJump }

// FloorTooFarAhead reports whether a $status's firstSeq cannot be real for
// the host: the floor it declares (firstSeq − 1) would skip more than
// MaxSeqJump seqs above the highest the host has sent (its watermark or
// its highest seq committed, whichever is higher) — more than a spool
// holds, as for a reading's seq. A host's first declaration (HasMark
// unset: none yet, or a new spool) only says where its seqs start and is
// never too far: a device older than the database has seqs of any size.
func (h SeqState) FloorTooFarAhead(firstSeq uint64) bool {
	if !h.HasMark || firstSeq == 0 {
		return false
	}
	floor, sent := firstSeq-1, max(h.Watermark, h.MaxSeq)
	return floor > sent && floor-sent > MaxSeqJump
}
