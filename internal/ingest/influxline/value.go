package influxline

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"sync"

	"github.com/apd-telemetry/apd/internal/ingest"
)

// Ingester takes decoded readings and calls done once each is committed:
// an *ingest.Ingester.
type Ingester interface {
	Submit(s ingest.Submission, done func()) (ingest.Outcome, error)
}

// Pending submits a request's readings and waits for the commits that
// make them durable: a write is answered only after every one of its
// readings is stored.
type Pending struct {
	in Ingester
	wg sync.WaitGroup
}

// NewPending returns a Pending submitting to in.
func NewPending(in Ingester) *Pending { return &Pending{in: in} }

// Submit submits s; Wait then waits for its commit too. It returns
// Submit's outcome and error (ingest.ErrClosed once the ingester is
// closed, when nothing is awaited).
func (p *Pending) Submit(s ingest.Submission) (ingest.Outcome, error) {
	p.wg.Add(1)
	out, err := p.in.Submit(s, p.wg.Done)
	if err != nil {
		p.wg.Done() // never called by the ingester after an error
	}
	return out, err
}

// Wait returns nil once every submission is committed, or ctx's error
// first (the client gave up: what it sent is still committed, and the
// store keeps a reading sent again once).
func (p *Pending) Wait(ctx context.Context) error {
	all := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(all)
	}()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AppendFloat appends f as a JSON number, written as encoding/json
// writes it. f must be finite.
func AppendFloat(b []byte, f float64) []byte {
	if a := math.Abs(f); a == 0 || a >= 1e-6 && a < 1e21 {
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	raw, _ := json.Marshal(f)
	return append(b, raw...)
}

// Quantity appends the apd value of a number num (JSON) with unit: a
// quantity when unit is set, else the bare number. The digits are kept
// as they are, so a large integer keeps its precision.
func Quantity(b []byte, num []byte, unit string) []byte {
	if unit == "" {
		return append(b, num...)
	}
	b = append(b, `{"magnitude":`...)
	b = append(b, num...)
	b = append(b, `,"unit":`...)
	b = strconv.AppendQuote(b, unit) // canonical units are plain ASCII
	return append(b, '}')
}
