package publisher

import (
	"sync"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// DefaultRepeatErrorEvery is how long a sensor may keep failing before its
// error is stored again, with the count of its failed samples so far.
const DefaultRepeatErrorEvery = time.Hour

// health follows each sampled sensor's runs of failed samples, so that a
// sensor that keeps failing is stored as one error when the failure
// starts (again every repeatEvery while it lasts) and one recovery, not as
// an error every tick. Its methods are safe for concurrent use: each
// sensor's schedule calls observe, the status reads states.
type health struct {
	repeatEvery time.Duration

	mu      sync.Mutex
	sensors map[string]*sensorHealth
}

// sensorHealth is one sensor's run of failed samples; a zero run
// (FailedSamples 0) means its last sample succeeded, or there was none.
type sensorHealth struct {
	run        schema.FailureRun
	lastStored time.Time // the time of the run's last stored error
	lastErr    *schema.SampleError
}

func newHealth(repeatEvery time.Duration) *health {
	if repeatEvery <= 0 {
		repeatEvery = DefaultRepeatErrorEvery
	}
	return &health{repeatEvery: repeatEvery, sensors: map[string]*sensorHealth{}}
}

// transition says how a sample changed its sensor's health.
type transition int

const (
	unchanged transition = iota
	startedFailing
	recovered
)

// observe counts the sample into its sensor's health, marks it with the
// run of failures it starts, repeats or ends, and reports whether it is
// to be stored. Intermittent errors a read retried away never get here:
// only a sample that failed after its retries counts.
func (h *health) observe(s *Sample) (store bool, change transition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sh := h.sensors[s.Name]
	if sh == nil {
		sh = &sensorHealth{}
		h.sensors[s.Name] = sh
	}
	if s.Err == nil {
		if sh.run.FailedSamples == 0 {
			return true, unchanged
		}
		run := sh.run
		s.Recovered = &run
		*sh = sensorHealth{}
		return true, recovered
	}
	sh.lastErr = &schema.SampleError{Kind: KindOf(s.Err), Message: s.Err.Error()}
	if sh.run.FailedSamples == 0 {
		sh.run = schema.FailureRun{Since: s.Time.UTC().Truncate(time.Millisecond), FailedSamples: 1}
		sh.lastStored = s.Time
		run := sh.run
		s.Failing = &run
		return true, startedFailing
	}
	sh.run.FailedSamples++
	if s.Time.Sub(sh.lastStored) < h.repeatEvery {
		return false, unchanged
	}
	// A failure that lasts is stored again now and then, with its count,
	// so that a look at the recent readings still shows it.
	sh.lastStored = s.Time
	run := sh.run
	s.Failing = &run
	return true, unchanged
}

// states returns every sensor's condition for a $status: the absent ones
// with their reason, the sampled ones ok or failing.
func (h *health) states(sensors []Named) map[string]schema.SensorState {
	if len(sensors) == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]schema.SensorState, len(sensors))
	for _, n := range sensors {
		switch sh := h.sensors[n.Name]; {
		case n.Absent != nil:
			out[n.Name] = schema.SensorState{State: schema.SensorAbsent, Reason: n.Absent.Error()}
		case sh != nil && sh.run.FailedSamples > 0:
			out[n.Name] = schema.SensorState{State: schema.SensorFailing, Failing: sh.run, Error: sh.lastErr}
		default:
			out[n.Name] = schema.SensorState{State: schema.SensorOK}
		}
	}
	return out
}
