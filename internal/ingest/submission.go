package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// Submission is one input for the aggregator as a transport hands it
// over: a decoded reading, a host's status, or input the transport could
// not decode. Exactly one of Reading, Status and Undecodable is set.
// Submit owns it from then on (it may set a reading's missing time).
type Submission struct {
	Reading *schema.Reading
	Status  *store.StatusUpdate
	// Undecodable is input the transport could not decode: it becomes a
	// dead letter.
	Undecodable *Undecodable

	// Topic and Payload are the input as it arrived, which a dead letter
	// keeps. Either may be empty: a dead letter then names the topic the
	// reading or status would have had, and keeps its JSON form.
	Topic   string
	Payload []byte
	// Received is when the input arrived; the zero value means now. A
	// reading's time must lie within Options.MaxAge and MaxAhead of it,
	// and a reading or status without a time is given it.
	Received time.Time
}

// Undecodable is why a transport could not decode an input.
type Undecodable struct {
	// Reason is one of the Reason constants: the dead letter's first word
	// and the label it is counted under (ReasonInvalid when it is none
	// of them).
	Reason string
	Err    error
}

// Outcome is what Submit did with a submission.
type Outcome int

// The outcomes of Submit.
const (
	// Queued: a reading or status, to be stored by the next commit.
	Queued Outcome = iota + 1
	// Rejected: a dead letter with its reason, to be stored by the next
	// commit. A transport may count these against the sender.
	Rejected
	// Ignored: not the aggregator's (an $ack, a topic outside the
	// prefix); nothing is stored and done was called at once.
	Ignored
)

func (o Outcome) String() string {
	switch o {
	case Queued:
		return "queued"
	case Rejected:
		return "rejected"
	case Ignored:
		return "ignored"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("ingester closed")

type item struct {
	reading *schema.Reading
	status  *store.StatusUpdate
	dead    *store.DeadLetter
	done    func()
}

// Submit checks s and queues it for the next commit: a reading or status
// that passes the checks as itself, anything else as a dead letter with
// its reason. The checks, whatever the transport: names, a value or an
// error, the time window (Options.MaxAge, MaxAhead), seq and first_seq
// at most schema.MaxSeq, a status's state and spool id, and the series
// bounds; the store then applies the rules that need the host's
// record (seq jumps, a new spool).
//
// done, if not nil, is called after the commit that makes the submission
// durable; a transport acknowledges its input there. Submit blocks while
// the queue is full, which slows the transport down instead of dropping.
// After Close it returns ErrClosed and never calls done: the input is not
// acknowledged and its sender keeps it.
func (in *Ingester) Submit(s Submission, done func()) (Outcome, error) {
	it := in.check(&s)
	it.done = done
	outcome := Queued
	if it.dead != nil {
		outcome = Rejected
	}
	in.mu.RLock()
	defer in.mu.RUnlock()
	if in.closed {
		return outcome, ErrClosed
	}
	in.queue <- it
	return outcome, nil
}

// check applies the checks of Submit to s: the one place input is judged.
func (in *Ingester) check(s *Submission) item {
	if s.Received.IsZero() {
		s.Received = in.opts.Now()
	}
	in.metrics.Received.Inc()
	var reason string
	var err error
	switch {
	case s.Undecodable != nil:
		reason, err = s.Undecodable.Reason, s.Undecodable.Err
	case s.Reading != nil:
		if reason, err = in.checkReading(s.Reading, s.Received); err == nil {
			return item{reading: s.Reading}
		}
	case s.Status != nil:
		if reason, err = checkStatus(s.Status, s.Received); err == nil {
			return item{status: s.Status}
		}
	default:
		reason, err = ReasonInvalid, errors.New("empty submission")
	}
	in.metrics.reject(reason)
	return item{dead: in.deadLetter(s, reason, err)}
}

// checkReading checks a decoded reading received at received, giving it
// that time if it has none.
func (in *Ingester) checkReading(r *schema.Reading, received time.Time) (reason string, err error) {
	if err := schema.ValidateName(r.Host); err != nil {
		return ReasonInvalidName, fmt.Errorf("host: %w", err)
	}
	if err := schema.ValidateName(r.Sensor); err != nil {
		return ReasonInvalidName, fmt.Errorf("sensor: %w", err)
	}
	switch {
	case r.Error == nil && len(r.Value) == 0:
		return ReasonInvalidField, fmt.Errorf("%w: neither value nor error", schema.ErrInvalidField)
	case r.Error != nil && len(r.Value) != 0:
		return ReasonInvalidField, fmt.Errorf("%w: both value and error", schema.ErrInvalidField)
	case r.Error != nil && r.Error.Kind != schema.Intermittent && r.Error.Kind != schema.Persistent:
		return ReasonInvalidField, fmt.Errorf("%w: error kind %q (want %q or %q)", schema.ErrInvalidField,
			r.Error.Kind, schema.Intermittent, schema.Persistent)
	}
	if r.Seq > schema.MaxSeq {
		return ReasonSeqOutOfRange, fmt.Errorf("%w: seq %d is beyond %d", schema.ErrSeqOutOfRange, r.Seq, uint64(schema.MaxSeq))
	}
	if r.Time.IsZero() {
		r.Time = received
	}
	// The store knows a reading by its time at the millisecond.
	r.Time = r.Time.UTC().Truncate(time.Millisecond)
	if r.Time.Before(received.Add(-in.opts.MaxAge)) || r.Time.After(received.Add(in.opts.MaxAhead)) {
		return ReasonTimeWindow, fmt.Errorf("ts %s is outside [now-%s, now+%s]",
			schema.FormatTime(r.Time), in.opts.MaxAge, in.opts.MaxAhead)
	}
	if err := in.admitSeries(r.Host, r.Sensor, received); err != nil {
		return ReasonSeriesLimit, err
	}
	return "", nil
}

// checkStatus checks a decoded status received at received, giving it
// that time if it has none.
func checkStatus(u *store.StatusUpdate, received time.Time) (reason string, err error) {
	if err := schema.ValidateName(u.Host); err != nil {
		return ReasonInvalidName, fmt.Errorf("host: %w", err)
	}
	st := &u.Status
	if st.State == "" {
		return ReasonInvalidStatus, fmt.Errorf("%w: state missing", schema.ErrInvalidField)
	}
	if st.FirstSeq > schema.MaxSeq {
		return ReasonSeqOutOfRange, fmt.Errorf("%w: first_seq %d is beyond %d", schema.ErrSeqOutOfRange, st.FirstSeq, uint64(schema.MaxSeq))
	}
	// The spool id says whose seqs these are: one that is not a name
	// could not be told apart from another.
	if st.Spool != "" && schema.ValidateName(st.Spool) != nil {
		return ReasonInvalidStatus, fmt.Errorf("%w: spool %q", schema.ErrInvalidField, st.Spool)
	}
	if st.Time.IsZero() {
		st.Time = received.UTC().Truncate(time.Millisecond)
	}
	return "", nil
}

// deadLetter is the dead letter of a rejected submission: its topic and
// payload as received, or those it would have had.
func (in *Ingester) deadLetter(s *Submission, reason string, err error) *store.DeadLetter {
	topic, payload := s.Topic, s.Payload
	switch {
	case s.Reading != nil:
		if topic == "" {
			topic = in.opts.Topics.Reading(s.Reading.Host, s.Reading.Sensor)
		}
		if payload == nil {
			payload = s.Reading.AppendJSON(nil, schema.WithIdentity)
		}
	case s.Status != nil:
		if topic == "" {
			topic = in.opts.Topics.Status(s.Status.Host)
		}
		if payload == nil {
			payload, _ = json.Marshal(s.Status.Status)
		}
	}
	return &store.DeadLetter{Received: s.Received.UTC(), Topic: topic, Reason: fmt.Sprintf("%s: %v", reason, err), Payload: payload}
}
