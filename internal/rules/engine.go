package rules

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Deps are what the actions need from the process that runs the rules.
type Deps struct {
	// Publish sends an outcome reading on its topic (the publish action).
	Publish func(topic string, payload []byte) error
	// PublishRetained publishes a retained message (the publish action's
	// Home Assistant discovery configs).
	PublishRetained func(topic string, payload []byte) error
	// HADiscovery, when set, has the publish action announce each rule's
	// outcomes to Home Assistant; nil announces nothing.
	HADiscovery *HADiscovery
	Topics      schema.Topics
	// HTTP posts webhooks; nil means a client of its own.
	HTTP   *http.Client
	Logger *slog.Logger
	// RetryPause is the first pause between webhook attempts, doubling
	// each time; 0 means 1 s.
	RetryPause time.Duration
}

// Stats are a rule's counters since start.
type Stats struct {
	Name string `json:"name"`
	// In counts readings of the rule's sensor (and hosts) handed to it.
	In uint64 `json:"in"`
	// Outcomes counts outcomes emitted; Acted those whose actions all
	// succeeded, Failed those with an action that failed.
	Outcomes uint64 `json:"outcomes"`
	Acted    uint64 `json:"acted"`
	Failed   uint64 `json:"failed"`
	// Dropped counts readings dropped from a full queue (oldest first);
	// Skipped those the rule ignored (late, duplicate, without a number).
	Dropped uint64 `json:"dropped"`
	Skipped uint64 `json:"skipped"`
	// Queued is how many readings wait now.
	Queued int `json:"queued"`
	// MeanActionSeconds is the mean time of the last 10 outcomes' actions.
	MeanActionSeconds float64 `json:"mean_action_seconds"`
}

// Engine runs rules on the readings it is given.
type Engine struct {
	rules []*runner
	wg    sync.WaitGroup
	stop  context.CancelFunc
}

// runner is one rule: its queue, its evaluator and its counters.
type runner struct {
	ev      judge
	size    int // queue bound
	actions actions

	mu      sync.Mutex
	queue   []schema.Reading // FIFO; bounded by ev.c.Queue
	wake    chan struct{}
	stats   Stats
	timings []time.Duration // last 10 action times
}

// NewEngine starts a goroutine per rule; Close stops them.
func NewEngine(rules []Config, deps Deps) *Engine {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.HTTP == nil {
		deps.HTTP = &http.Client{}
	}
	if deps.RetryPause <= 0 {
		deps.RetryPause = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{stop: cancel}
	for _, c := range rules {
		r := &runner{ev: newJudge(c), size: c.Queue, actions: newActions(c, deps), wake: make(chan struct{}, 1), stats: Stats{Name: c.Name}}
		e.rules = append(e.rules, r)
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			r.run(ctx)
		}()
	}
	return e
}

// Submit hands readings to the rules that watch them. It never blocks: a
// rule whose queue is full drops its oldest waiting reading and counts it.
// Readings are copied; the caller may reuse them.
func (e *Engine) Submit(readings []schema.Reading) {
	for _, r := range e.rules {
		queued := false
		r.mu.Lock()
		for i := range readings {
			rd := &readings[i]
			if !r.ev.matches(rd) {
				continue
			}
			c := *rd
			c.Value = slices.Clone(rd.Value)
			c.Extra = nil
			if len(r.queue) >= r.size {
				r.queue = r.queue[1:]
				r.stats.Dropped++
			}
			r.queue = append(r.queue, c)
			r.stats.In++
			queued = true
		}
		r.mu.Unlock()
		if queued {
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Stats returns every rule's counters, in configuration order.
func (e *Engine) Stats() []Stats {
	out := make([]Stats, len(e.rules))
	for i, r := range e.rules {
		r.mu.Lock()
		s := r.stats
		s.Queued = len(r.queue)
		if len(r.timings) > 0 {
			var sum time.Duration
			for _, t := range r.timings {
				sum += t
			}
			s.MeanActionSeconds = (sum / time.Duration(len(r.timings))).Seconds()
		}
		r.mu.Unlock()
		out[i] = s
	}
	return out
}

// LogStats writes each rule's counters to log (SIGUSR1).
func (e *Engine) LogStats(log *slog.Logger) {
	for _, s := range e.Stats() {
		log.Info("rule", "name", s.Name, "in", s.In, "outcomes", s.Outcomes, "acted", s.Acted, "failed", s.Failed,
			"dropped", s.Dropped, "skipped", s.Skipped, "queued", s.Queued, "mean_action", time.Duration(s.MeanActionSeconds*float64(time.Second)).String())
	}
}

// Close stops the rules: an action under way is cancelled, waiting
// readings are left.
func (e *Engine) Close() {
	e.stop()
	e.wg.Wait()
}

func (r *runner) run(ctx context.Context) {
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		rd := r.queue[0]
		r.queue = r.queue[1:]
		if len(r.queue) == 0 {
			r.queue = nil // let the backing array go
		}
		r.mu.Unlock()

		out, skip := r.ev.eval(&rd)
		if skip != decided {
			if skip != skipSame && skip != skipPending {
				r.mu.Lock()
				r.stats.Skipped++
				r.mu.Unlock()
			}
			continue
		}
		start := time.Now()
		ok := r.actions.run(ctx, out)
		took := time.Since(start)
		r.mu.Lock()
		r.stats.Outcomes++
		if ok {
			r.stats.Acted++
		} else {
			r.stats.Failed++
		}
		r.timings = append(r.timings, took)
		if len(r.timings) > 10 {
			r.timings = r.timings[1:]
		}
		r.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}

// Replay runs rules over stored readings without acting and calls fn with
// each outcome. readings must give a series' readings in time order per
// host (by host, then time, as queries return them). A derived rule's
// inputs are read whole and merged in time order.
func Replay(rules []Config, readings func(sensor string, hosts []string, fn func(*schema.Reading) error) error, fn func(Outcome) error) error {
	for _, c := range rules {
		j := newJudge(c)
		decide := func(r *schema.Reading) error {
			if out, skip := j.eval(r); skip == decided {
				return fn(out)
			}
			return nil
		}
		if !c.Derived() {
			if err := readings(c.Sensor, c.Hosts, decide); err != nil {
				return err
			}
			continue
		}
		var merged []schema.Reading
		for _, in := range c.Inputs {
			err := readings(in.Sensor, []string{in.Host}, func(r *schema.Reading) error {
				cp := *r
				cp.Value = slices.Clone(r.Value)
				merged = append(merged, cp)
				return nil
			})
			if err != nil {
				return err
			}
		}
		slices.SortStableFunc(merged, func(a, b schema.Reading) int { return a.Time.Compare(b.Time) })
		for i := range merged {
			if err := decide(&merged[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// payload is the JSON body of a webhook and the stdin of an exec action.
func payload(o Outcome) []byte {
	r := o.Reading()
	b, _ := json.Marshal(struct {
		Rule    string          `json:"rule"`
		Host    string          `json:"host"`
		Sensor  string          `json:"sensor"`
		Time    string          `json:"ts"`
		Value   json.RawMessage `json:"value"`
		Reading json.RawMessage `json:"reading"`
	}{o.Rule, r.Host, r.Sensor, schema.FormatTime(r.Time), o.Value, o.Trigger.AppendJSON(nil, schema.WithIdentity)})
	return b
}
