package publisher

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// ReadPolicy bounds one read of a sensor.
type ReadPolicy struct {
	// Timeout bounds each attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// Attempts is how often an intermittent error is tried in all; 0 means
	// DefaultAttempts. Persistent errors are never retried.
	Attempts int
	// RetryPause is the wait between attempts; 0 means DefaultRetryPause.
	RetryPause time.Duration
}

// Defaults of ReadPolicy.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultAttempts   = 3
	DefaultRetryPause = 500 * time.Millisecond
)

func (p ReadPolicy) withDefaults() ReadPolicy {
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.Attempts <= 0 {
		p.Attempts = DefaultAttempts
	}
	if p.RetryPause <= 0 {
		p.RetryPause = DefaultRetryPause
	}
	return p
}

// Sample is the outcome of reading one sensor once.
type Sample struct {
	Name  string
	Title string
	Time  time.Time
	Value json.RawMessage // nil when Err is set
	Err   error
	Human string
	// Failing, on a failed sample that is stored, is the run of failed
	// samples it belongs to; Recovered, on the first good sample after
	// failed ones, is the run it ends. See schema.MemberFailing.
	Failing, Recovered *schema.FailureRun
}

// Reading turns the sample into a reading of host, without seq.
func (s Sample) Reading(host string) schema.Reading {
	r := schema.Reading{Host: host, Sensor: s.Name, Title: s.Title, Time: s.Time.UTC().Truncate(time.Millisecond), Human: s.Human}
	if s.Err != nil {
		r.Error = &schema.SampleError{Kind: KindOf(s.Err), Message: s.Err.Error()}
	} else {
		r.Value = s.Value
	}
	if s.Failing != nil {
		schema.SetFailureRun(&r, schema.MemberFailing, *s.Failing)
	}
	if s.Recovered != nil {
		schema.SetFailureRun(&r, schema.MemberRecovered, *s.Recovered)
	}
	return r
}

// Named is a sensor with its name and read policy, ready to sample.
type Named struct {
	Name   string
	Sensor Sensor
	Policy ReadPolicy
	// Interval overrides the publisher's interval for this sensor; 0 keeps it.
	Interval time.Duration
	// Absent, when set, says why the sensor's hardware is not on this
	// machine (its [Prober.Present] error): it is listed, in $status too,
	// but never sampled.
	Absent error
}

// Sampled returns the sensors that are not absent, in their order.
func Sampled(sensors []Named) []Named {
	out := make([]Named, 0, len(sensors))
	for _, n := range sensors {
		if n.Absent == nil {
			out = append(out, n)
		}
	}
	return out
}

// Read samples the sensor once: each attempt is cut off at the timeout,
// intermittent errors are retried up to the attempts, and the value is
// encoded and formatted. It never takes longer than
// Attempts×(Timeout+RetryPause), even if the sensor's Read hangs.
func (n Named) Read(ctx context.Context, at time.Time) Sample {
	p := n.Policy.withDefaults()
	var v any
	var err error
	for attempt := 1; ; attempt++ {
		v, err = readOnce(ctx, n.Sensor, p.Timeout)
		if err == nil || KindOf(err) == schema.Persistent || attempt >= p.Attempts || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(p.RetryPause):
		}
	}
	return n.Sample(at, v, err)
}

// Sample turns the outcome of one read (or one streamed value) into a
// sample stamped at: the value encoded and formatted, or the error.
func (n Named) Sample(at time.Time, v any, err error) Sample {
	s := Sample{Name: n.Name, Title: n.Sensor.Title(), Time: at}
	if err != nil {
		s.Err = err
		return s
	}
	raw, err := json.Marshal(v)
	if err != nil {
		s.Err = Persistent(fmt.Errorf("encode value: %w", err))
		return s
	}
	s.Value = raw
	s.Human = schema.Format(n.Name, raw)
	return s
}

// readOnce runs one Read in its own goroutine so that a sensor that ignores
// its context cannot hold up the caller past the timeout.
func readOnce(ctx context.Context, s Sensor, timeout time.Duration) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: Persistent(fmt.Errorf("sensor panicked: %v", p))}
			}
		}()
		v, err := s.Read(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, Intermittent(fmt.Errorf("no answer within %s", timeout))
	}
}

// ReadAll samples every sensor concurrently and returns the samples in the
// order of sensors. A slow or failing sensor affects only its own sample.
func ReadAll(ctx context.Context, sensors []Named, at time.Time) []Sample {
	out := make([]Sample, len(sensors))
	var wg sync.WaitGroup
	for i, n := range sensors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = n.Read(ctx, at)
		}()
	}
	wg.Wait()
	return out
}
