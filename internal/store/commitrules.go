package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// The rules of a commit that do not depend on how an engine keeps its
// data: what a $status does to its host, which seqs are refused, how a
// stored reading is counted, and how each host's watermark moves. Each
// engine loads the host records a batch touches, applies these in order —
// statuses, refusals, its own insert of the readings (counting each new
// one with CountStored), watermarks — and writes the records back, all in
// its one transaction.

// HostLookup returns a host's record for the commit to change: the same
// record for the same name within one commit, made empty for a host not
// seen before.
type HostLookup func(host string) (*HostRecord, error)

// StatusEffects is what a batch's statuses bring its hosts' watermarks:
// the floor each host's latest status declared (first_seq − 1), which
// Advance takes or keeps pending (SeqState.PendingFloor); which hosts
// restarted with a new spool; and the dead letters of the statuses
// refused.
type StatusEffects struct {
	Floors    map[string]uint64
	Restarted map[string]bool
	Dead      []DeadLetter
}

// ApplyStatuses records each status of b in its host's record (state,
// time, version, spool). A new spool restarts the host's seqs first
// (SeqState.Restart, which also drops a floor still pending), and
// clearPending is called to empty its pending set; the new spool's floor
// then waits for its seqs like any other (see Advance). Statuses without
// a time are stamped now.
//
// A status whose first_seq cannot be real for its host
// (SeqState.FloorTooFarAhead) changes nothing: it becomes a dead letter
// (StatusEffects.Dead), counted in res.RefusedStatuses. Taken, it would
// move the watermark beyond anything the device sent, and the device,
// which ignores an acknowledgement beyond its last seq, would never be
// acknowledged again.
func ApplyStatuses(b *Batch, now time.Time, host HostLookup, clearPending func(host string) error, res *CommitResult) (StatusEffects, error) {
	fx := StatusEffects{Floors: map[string]uint64{}, Restarted: map[string]bool{}}
	for _, st := range b.Statuses {
		h, err := host(st.Host)
		if err != nil {
			return fx, err
		}
		sp := st.Status.Spool
		// A new spool's first_seq is its first declaration: it says
		// where the new seqs start, like a host's very first.
		restarts := sp != "" && h.Spool != "" && h.Spool != sp
		if !restarts && h.FloorTooFarAhead(st.Status.FirstSeq) {
			payload, err := json.Marshal(st.Status)
			if err != nil {
				return fx, fmt.Errorf("status of %s: %w", st.Host, err)
			}
			fx.Dead = append(fx.Dead, DeadLetter{Received: now.UTC(), Topic: b.Topics.Status(st.Host),
				Reason: fmt.Sprintf("%s: first_seq %d would skip more than %d seqs above the host's highest seq %d",
					ReasonSeqOutOfRange, st.Status.FirstSeq, MaxSeqJump, max(h.Watermark, h.MaxSeq)),
				Payload: payload})
			res.RefusedStatuses++
			continue
		}
		if restarts {
			h.Restart(sp)
			if err := clearPending(st.Host); err != nil {
				return fx, err
			}
			fx.Restarted[st.Host] = true
			delete(fx.Floors, st.Host)
		}
		if sp != "" {
			h.Spool = sp
		}
		if st.Status.FirstSeq > 0 {
			// The latest declaration stands, as it replaces a floor still
			// pending from an earlier commit.
			fx.Floors[st.Host] = st.Status.FirstSeq - 1
		}
		t := st.Status.Time
		if t.IsZero() {
			t = now.UTC().Truncate(time.Millisecond)
		}
		h.State, h.StateTime = st.Status.State, t
		if st.Status.Version != "" {
			h.Version = st.Status.Version
		}
	}
	return fx, nil
}

// RefuseSeqJumps returns the batch's readings without those whose seq
// cannot be real for their host (SeqState.TooFarAhead, with the floor
// this batch's statuses declared as the host's pending floor), and dead
// letters for those, whose indexes it records in res.Refused. The batch
// itself is not changed: a failed commit is retried with it.
func RefuseSeqJumps(b *Batch, fx StatusEffects, host HostLookup, now time.Time, res *CommitResult) ([]schema.Reading, []DeadLetter, error) {
	if b.Imported {
		return b.Readings, nil, nil
	}
	var dead []DeadLetter
	for i := range b.Readings {
		r := &b.Readings[i]
		if r.Seq == 0 {
			continue
		}
		h, err := host(r.Host)
		if err != nil {
			return nil, nil, err
		}
		st := h.SeqState
		if f, ok := fx.Floors[r.Host]; ok {
			st.PendingFloor = f
		}
		if !st.TooFarAhead(r.Seq) {
			continue
		}
		reason := fmt.Sprintf("%s: seq %d is more than %d above the host's watermark %d", ReasonSeqOutOfRange, r.Seq, MaxSeqJump, h.Watermark)
		if st.PendingFloor != 0 {
			reason += fmt.Sprintf(" and not within %d from its declared first_seq %d", MaxSeqJump, st.PendingFloor+1)
		}
		res.Refused = append(res.Refused, i)
		dead = append(dead, DeadLetter{Received: now.UTC(), Topic: b.Topics.Reading(r.Host, r.Sensor),
			Reason: reason, Payload: r.AppendJSON(nil, schema.WithIdentity)})
	}
	return WithoutRefused(b.Readings, res.Refused), dead, nil
}

// NoteAggregator records in the hosts of b's readings and statuses the
// aggregator that commits them (b.Aggregator, when set): with several
// aggregators on one database, apd hosts shows which holds a host.
func NoteAggregator(b *Batch, host HostLookup) error {
	if b.Aggregator == "" {
		return nil
	}
	last := ""
	note := func(name string) error {
		if name == last {
			return nil
		}
		last = name
		h, err := host(name)
		if err != nil {
			return err
		}
		h.Aggregator = b.Aggregator
		return nil
	}
	for i := range b.Readings {
		if err := note(b.Readings[i].Host); err != nil {
			return err
		}
	}
	for i := range b.Statuses {
		if err := note(b.Statuses[i].Host); err != nil {
			return err
		}
	}
	return nil
}

// CountStored records in h a reading of its host just stored (not a
// duplicate): the sensor's count and last time, the host's last reading.
func (h *HostRecord) CountStored(r *schema.Reading) {
	if h.Sensors == nil {
		h.Sensors = map[string]*SensorStats{}
	}
	st := h.Sensors[r.Sensor]
	if st == nil {
		st = &SensorStats{}
		h.Sensors[r.Sensor] = st
	}
	st.Count++
	if r.Time.After(st.Last) {
		st.Last = r.Time
	}
	if r.Time.After(h.LastSeen) {
		h.LastSeen = r.Time
	}
}

// AdvanceWatermarks moves each host's watermark by Advance over the seqs
// of the readings kept (none for an import, which takes no part in live
// delivery), the floors (taken, or kept pending in the host's record) and
// the restarts, and records in res what was lost and which hosts to
// acknowledge. pending returns a host's pending set.
func AdvanceWatermarks(kept []schema.Reading, imported bool, fx StatusEffects, host HostLookup, pending func(host string) Pending, res *CommitResult) error {
	changes := map[string]*SeqChange{}
	change := func(name string) *SeqChange {
		if changes[name] == nil {
			changes[name] = &SeqChange{}
		}
		return changes[name]
	}
	for i := range kept {
		if r := &kept[i]; !imported && r.Seq != 0 {
			ch := change(r.Host)
			ch.Arrived = append(ch.Arrived, r.Seq)
		}
	}
	for name, floor := range fx.Floors {
		ch := change(name)
		ch.Floor, ch.HasFloor = floor, true
	}
	for name := range fx.Restarted {
		change(name).Restarted = true
	}
	for name, ch := range changes {
		h, err := host(name)
		if err != nil {
			return err
		}
		ack, lost, err := Advance(&h.SeqState, *ch, pending(name))
		if err != nil {
			return err
		}
		res.Lost += lost
		if ack {
			if res.Acks == nil {
				res.Acks = make(map[string]HostAck)
			}
			res.Acks[name] = HostAck{Seq: h.Watermark, Spool: h.Spool}
		}
	}
	return nil
}

// EncodeDeadLetters encodes a commit's dead letters (payloads cut to
// MaxDeadPayload) and keeps the newest of them whose costs fit an eighth
// of maxBytes — at least one: the pages or rows a commit frees are
// reusable only after it, so a large batch would grow the store past its
// bound. It returns those kept, oldest first, and how many it left out
// (counted as dropped, as the oldest would be).
func EncodeDeadLetters(maxBytes int64, cost func([]byte) int64, lists ...[]DeadLetter) (kept [][]byte, dropped int, err error) {
	var encoded [][]byte
	for _, list := range lists {
		for _, d := range list {
			if len(d.Payload) > MaxDeadPayload {
				d.Payload = d.Payload[:MaxDeadPayload]
			}
			v, err := json.Marshal(d)
			if err != nil {
				return nil, 0, err
			}
			encoded = append(encoded, v)
		}
	}
	first, budget := len(encoded), maxBytes/8
	for first > 0 && (first == len(encoded) || budget >= cost(encoded[first-1])) {
		first--
		budget -= cost(encoded[first])
	}
	return encoded[first:], first, nil
}
