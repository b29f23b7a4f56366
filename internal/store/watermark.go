package store

import "slices"

// SeqState is what an engine keeps of one host's seqs, and what the
// watermark rules change.
type SeqState struct {
	// Watermark: every reading of the host's current spool with seq ≤ it
	// is committed, or was declared lost by the device.
	Watermark uint64 `json:"watermark"`
	// HasMark is set once a floor the device declared (the first_seq of a
	// $status) took effect; until then the watermark waits for seq 1.
	HasMark bool `json:"has_mark,omitempty"`
	// MaxSeq is the highest seq committed.
	MaxSeq uint64 `json:"max_seq,omitempty"`
	// Lost counts seqs the device declared dropped before they were
	// stored.
	Lost uint64 `json:"lost,omitempty"`
	// Spool is the id of the device's current spool.
	Spool string `json:"spool,omitempty"`
	// PendingFloor is the floor (first_seq − 1) of the host's latest
	// $status while it is above every seq the host has committed: not
	// taken yet, because a status alone proves no seq was ever made up
	// there. Advance applies it once a seq at or above it commits. 0 when
	// none waits (a floor of 0 never has to). Records written before it
	// existed decode with none.
	PendingFloor uint64 `json:"pending_floor,omitempty"`
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
// floor its latest $status declared (first_seq − 1) and whether the device
// has a new spool.
type SeqChange struct {
	// Arrived are the seqs committed now, in any order, repeats allowed.
	Arrived []uint64
	// Floor, when HasFloor, replaces any floor still pending: the
	// device's latest word on where its seqs start.
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
//   - A floor takes effect only once the host has committed a seq at or
//     above it (now or earlier); until then it waits in PendingFloor and
//     the watermark moves as it would without it. A status is no proof
//     that its device ever made the seqs it skips: taken at its word, one
//     first_seq beyond the device's real seqs would put the watermark past
//     every reading it sends next, and its acknowledgements would stop.
//   - A floor taking effect above the watermark skips seqs the device will
//     never send; those not committed are counted lost (none for the
//     device's first declaration, which only says where its seqs start).
//   - The committed seqs, and those pending from earlier commits, extend
//     the watermark as far as they run without a gap; the rest are kept
//     pending (so an in-order commit writes no pending seqs at all).
//
// It reports whether the host is to be acknowledged (its watermark moved,
// its first floor took effect, or its spool restarted) and how many seqs
// it counted lost. p holds the host's pending seqs.
func Advance(h *SeqState, ch SeqChange, p Pending) (ack bool, lost uint64, err error) {
	before, hadMark := h.Watermark, h.HasMark
	seqs := slices.Clone(ch.Arrived)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	if n := len(seqs); n > 0 {
		h.MaxSeq = max(h.MaxSeq, seqs[n-1])
	}
	floor, hasFloor := h.PendingFloor, h.PendingFloor != 0
	if ch.HasFloor {
		floor, hasFloor = ch.Floor, true
	}
	h.PendingFloor = 0
	if hasFloor && floor > max(h.Watermark, h.MaxSeq) {
		h.PendingFloor, hasFloor = floor, false
	}
	if hasFloor && floor > h.Watermark {
		// Seqs up to the floor will never come: those committed (now or
		// earlier) are not lost, the rest are — unless this is the device's
		// first declaration, which only says where its seqs start.
		committed := map[uint64]bool{}
		for _, q := range seqs {
			if q > h.Watermark && q <= floor {
				committed[q] = true
			}
		}
		for {
			q, ok, err := p.Min()
			if err != nil {
				return false, 0, err
			}
			if !ok || q > floor {
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
			lost = floor - h.Watermark - uint64(len(committed))
			h.Lost += lost
		}
		h.Watermark = floor
	}
	if hasFloor {
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
// MaxSeqJump above its watermark, and not within MaxSeqJump at or above
// its PendingFloor. The readings that prove a spool overflow start at the
// floor; refused after the longest overflows, they would leave it pending
// for good. The host's pending seqs still stay within MaxSeqJump above
// its watermark: a seq taken at or above the floor makes the floor take
// effect in the same commit.
func (h SeqState) TooFarAhead(seq uint64) bool {
	if f := h.PendingFloor; f != 0 && seq >= f && seq-f <= MaxSeqJump {
		return false
	}
	return seq-min(seq, h.Watermark) > MaxSeqJump
}

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
