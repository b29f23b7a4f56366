package ingest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// DefaultMaxPayload is the largest payload WireDecoder takes when its
// MaxPayload is 0.
const DefaultMaxPayload = 64 << 10

// WireDecoder turns a message in apd's wire format (SPEC §2: a reading or
// $status topic under the prefix, a JSON payload) into a Submission. It
// is what the MQTT-speaking transports share — the embedded broker's
// hook, a subscription to another broker, a NATS stream of MQTT
// messages; a transport with a format of its own builds its Submissions
// itself.
type WireDecoder struct {
	Topics schema.Topics
	// MaxPayload refuses larger payloads (ReasonTooLarge); 0 means
	// DefaultMaxPayload.
	MaxPayload int
}

// Decode decodes one message received at received. It reports false for
// a message that is not the aggregator's: outside the prefix, or an
// $ack. Anything else under the prefix is a Submission, Undecodable
// when it does not decode.
func (d WireDecoder) Decode(topic string, payload []byte, received time.Time) (Submission, bool) {
	t, err := d.Topics.Parse(topic)
	if errors.Is(err, schema.ErrNotApdTopic) && !d.Topics.Under(topic) || err == nil && t.Kind == schema.KindAck {
		return Submission{}, false
	}
	s := Submission{Topic: topic, Payload: payload, Received: received}
	undecodable := func(reason string, err error) (Submission, bool) {
		s.Undecodable = &Undecodable{Reason: reason, Err: err}
		return s, true
	}
	if errors.Is(err, schema.ErrNotApdTopic) {
		// Under the prefix but not a reading or status (apd/h/s/extra):
		// nothing would store it, so it is kept and counted.
		return undecodable(ReasonInvalidTopic, err)
	}
	if err != nil {
		return undecodable(ReasonInvalidName, err)
	}
	if limit := cmp.Or(d.MaxPayload, DefaultMaxPayload); len(payload) > limit {
		return undecodable(ReasonTooLarge, fmt.Errorf("%d bytes, at most %d", len(payload), limit))
	}
	if !utf8.Valid(payload) {
		return undecodable(ReasonInvalidUTF8, errors.New("payload is not valid UTF-8"))
	}
	if t.Kind == schema.KindStatus {
		var st schema.Status
		if err := json.Unmarshal(payload, &st); errors.Is(err, schema.ErrSeqOutOfRange) {
			return undecodable(ReasonSeqOutOfRange, err)
		} else if err != nil {
			return undecodable(ReasonInvalidStatus, err)
		}
		s.Status = &store.StatusUpdate{Host: t.Host, Status: st}
		return s, true
	}
	r, err := schema.Decode(t.Host, t.Sensor, payload, received)
	if err != nil {
		return undecodable(decodeReason(err), err)
	}
	s.Reading = &r
	return s, true
}

// decodeReason is the rejection reason of a schema.Decode error.
func decodeReason(err error) string {
	switch {
	case errors.Is(err, schema.ErrInvalidJSON):
		return ReasonInvalidJSON
	case errors.Is(err, schema.ErrUnsupportedVersion):
		return ReasonVersion
	case errors.Is(err, schema.ErrTopicMismatch):
		return ReasonTopicMismatch
	case errors.Is(err, schema.ErrInvalidField):
		return ReasonInvalidField
	case errors.Is(err, schema.ErrInvalidName):
		return ReasonInvalidName
	case errors.Is(err, schema.ErrSeqOutOfRange):
		return ReasonSeqOutOfRange
	}
	return ReasonInvalid
}

// WireDecoder returns the decoder of the ingester's topics and payload
// bound.
func (in *Ingester) WireDecoder() WireDecoder {
	return WireDecoder{Topics: in.opts.Topics, MaxPayload: in.opts.MaxPayload}
}

// SubmitMessage decodes a message in apd's wire format (WireDecoder) and
// submits it; a message that is not the aggregator's is Ignored, its
// done called at once.
func (in *Ingester) SubmitMessage(topic string, payload []byte, done func()) (Outcome, error) {
	s, ok := in.WireDecoder().Decode(topic, payload, in.opts.Now())
	if !ok {
		if done != nil {
			done()
		}
		return Ignored, nil
	}
	return in.Submit(s, done)
}
