package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Client is the MQTT connection the publisher needs. Publish sends at the
// client's QoS and returns once the broker acknowledged (QoS 1) or the
// context ends; PublishAll does so for several messages (not retained),
// sent in their order without waiting in between, and returns each one's
// error (nil: acknowledged), so that a tick's readings reach a broker
// that acknowledges after storing within one of its commits; Subscribe
// delivers each message on the filter to fn from then on, across
// reconnections (the client makes it again each time); SubscribeLatest
// does so at QoS 0, for a retained topic whose every message supersedes
// the last (the $ack): the broker keeps no queue for it, and a
// reconnection brings the retained latest.
type Client interface {
	Publish(ctx context.Context, topic string, payload []byte, retain bool) error
	PublishAll(ctx context.Context, topics []string, payloads [][]byte) []error
	Subscribe(filter string, fn func(topic string, payload []byte)) error
	SubscribeLatest(filter string, fn func(topic string, payload []byte)) error
}

// Options configure a Publisher.
type Options struct {
	// Host is this device's name in topics and payloads.
	Host string
	// Topics builds the topics; the zero value uses the "apd" prefix.
	Topics schema.Topics
	// Interval is how often sensors are sampled, aligned to the clock
	// (10s → :00, :10, …); a sensor's own Interval overrides it.
	Interval time.Duration
	Sensors  []Named
	// Version is reported in the online status.
	Version string
	// ResendAfter is how long a published reading may wait for the
	// aggregator's acknowledgement before it is published again; 0 means
	// DefaultResendAfter.
	ResendAfter time.Duration
	// PublishTimeout bounds the wait for one broker acknowledgement; 0 means
	// 10 s.
	PublishTimeout time.Duration
	// ReplayRate bounds how many spooled readings per second a replay
	// publishes, so a week of backlog does not flood the broker; 0 means
	// DefaultReplayRate.
	ReplayRate int
	// DrainTimeout bounds how long Run, once stopped, keeps publishing
	// unsent readings and waiting for their acknowledgement; what is left
	// stays in the spool for the next start. 0 means 5 s.
	DrainTimeout time.Duration
	// Announcers are told of every connection and every sample, to publish
	// what other systems need to know about this device's sensors (Home
	// Assistant discovery).
	Announcers []Announcer
	Logger     *slog.Logger
	// Now is the clock readings are stamped and scheduled by; nil means
	// time.Now.
	Now func() time.Time
	// Wear, when set, reports what the device's storage got from this
	// process; every $status carries it, so that any MQTT client sees
	// what the SD card gets.
	Wear func() *schema.Wear
	// StatusEvery is how often the retained $status is published again
	// while running, with fresh Wear; 0 means an hour.
	StatusEvery time.Duration
	// RepeatErrorEvery is how long a sensor may keep failing before its
	// error is stored again, with the count of its failed samples so far;
	// 0 means DefaultRepeatErrorEvery. In between its failed samples are
	// counted, not stored.
	RepeatErrorEvery time.Duration
}

// Announcer publishes metadata about the device's sensors alongside the
// readings. Its methods must not block for long: they run on the paths
// that publish readings.
type Announcer interface {
	// Connected is called after each connection to the broker; work that
	// waits on the broker belongs in a goroutine that Flush waits for.
	Connected(ctx context.Context, c Client)
	// Sampled is called with each sample before it is published.
	Sampled(ctx context.Context, c Client, s Sample)
	// Flush waits, until ctx ends, for work Connected started; it is
	// called before the publisher signs off.
	Flush(ctx context.Context)
}

// Defaults of Options.
const (
	DefaultResendAfter = 60 * time.Second
	DefaultReplayRate  = 1000
)

// Publisher samples sensors on their schedules, spools every reading and
// publishes it, and removes readings from the spool as the aggregator
// acknowledges them.
type Publisher struct {
	opts   Options
	spool  *Spool
	client Client
	log    *slog.Logger

	emitMu        sync.Mutex // serialises seq assignment with publishing order
	subscribeOnce sync.Once

	samples chan Sample // read by the schedules, spooled together by Run's batcher
	health  *health
	// statusDue asks Run to publish the $status again: a sensor started
	// failing or recovered.
	statusDue chan struct{}

	mu       sync.Mutex
	sentAt   map[uint64]time.Time // published, not yet acknowledged
	acked    uint64
	ackCh    chan struct{} // closed and replaced on every acknowledgement
	failing  bool          // publishing is failing; logged once per episode
	replayMu sync.Mutex
}

// New returns a publisher; nothing runs until Run or Once.
func New(opts Options, spool *Spool, client Client) *Publisher {
	if opts.ResendAfter <= 0 {
		opts.ResendAfter = DefaultResendAfter
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 10 * time.Second
	}
	if opts.ReplayRate <= 0 {
		opts.ReplayRate = DefaultReplayRate
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StatusEvery <= 0 {
		opts.StatusEvery = time.Hour
	}
	return &Publisher{opts: opts, spool: spool, client: client, log: opts.Logger, samples: make(chan Sample, 256),
		health: newHealth(opts.RepeatErrorEvery), statusDue: make(chan struct{}, 1),
		sentAt: map[uint64]time.Time{}, acked: spool.Acked(), ackCh: make(chan struct{})}
}

// announce publishes the retained status with the spool's identity and
// first seq, so the aggregator knows where this spool's seqs start and
// which will never come.
func (p *Publisher) announce(ctx context.Context, state string) error {
	st := schema.Status{State: state, Time: p.opts.Now(), Version: p.opts.Version,
		FirstSeq: p.spool.FirstSeq(), Spool: p.spool.ID(), Sensors: p.health.states(p.opts.Sensors)}
	if p.opts.Wear != nil {
		st.Wear = p.opts.Wear()
	}
	b, _ := json.Marshal(st)
	return p.client.Publish(ctx, p.opts.Topics.Status(p.opts.Host), b, true)
}

// Connected must be called by the client every time a connection is
// established: it announces the host online, subscribes to its
// acknowledgement topic the first time (the client makes its
// subscriptions again on each later connection) and replays the spool in
// the background.
func (p *Publisher) Connected(ctx context.Context) {
	for _, a := range p.opts.Announcers {
		a.Connected(ctx, p.client)
	}
	go func() {
		if err := p.announce(ctx, schema.StateOnline); err != nil {
			p.log.Warn("publish status", "err", err)
		}
		p.subscribeOnce.Do(func() {
			if err := p.client.SubscribeLatest(p.opts.Topics.Ack(p.opts.Host), p.onAck); err != nil {
				p.log.Warn("subscribe to acknowledgements", "err", err)
			}
		})
		p.replay(ctx, 0)
	}()
}

func (p *Publisher) onAck(_ string, payload []byte) {
	var a schema.Ack
	if err := json.Unmarshal(payload, &a); err != nil {
		p.log.Warn("bad acknowledgement", "payload", string(payload), "err", err)
		return
	}
	if a.Spool != "" && a.Spool != p.spool.ID() {
		// An earlier spool's acknowledgement (retained from before this
		// device's storage was wiped): its seqs are not this spool's.
		p.log.Debug("ignoring acknowledgement of another spool", "ack", a.Seq, "spool", a.Spool)
		return
	}
	if last := p.spool.LastSeq(); a.Seq > last {
		// An acknowledgement beyond anything this spool issued belongs to an
		// earlier spool of the same host name: applying it would drop
		// readings the aggregator never saw.
		p.log.Warn("ignoring acknowledgement beyond the last seq", "ack", a.Seq, "last_seq", last)
		return
	}
	n, err := p.spool.Ack(a.Seq)
	if err != nil {
		p.log.Error("apply acknowledgement", "err", err)
		return
	}
	p.mu.Lock()
	if a.Seq > p.acked {
		p.acked = a.Seq
	}
	for seq := range p.sentAt {
		if seq <= a.Seq {
			delete(p.sentAt, seq)
		}
	}
	close(p.ackCh)
	p.ackCh = make(chan struct{})
	p.mu.Unlock()
	p.log.Debug("acknowledged", "seq", a.Seq, "removed", n)
}

// emit spools the samples and publishes them, and returns what it spooled
// and how many of those the broker took.
func (p *Publisher) emit(ctx context.Context, samples []Sample) ([]Spooled, int, error) {
	readings := make([]schema.Reading, len(samples))
	for i, s := range samples {
		readings[i] = s.Reading(p.opts.Host)
		for _, a := range p.opts.Announcers {
			a.Sampled(ctx, p.client, s)
		}
	}
	p.emitMu.Lock()
	spooled, dropped, err := p.spool.Append(readings)
	p.emitMu.Unlock()
	if err != nil {
		return nil, 0, err
	}
	if dropped > 0 {
		_, total := p.spool.Stats()
		p.log.Warn("spool full: dropped the oldest readings", "dropped", dropped, "dropped_total", total)
		// Tell the aggregator those seqs are gone, or its watermark would
		// wait for them forever.
		if err := p.announce(ctx, schema.StateOnline); err != nil {
			p.log.Debug("announce after drop", "err", err)
		}
	}
	// The tick's readings go out together and their acknowledgements are
	// awaited together: the server stores them in one commit instead of
	// one each.
	return spooled, p.publish(ctx, spooled), nil
}

// publish sends spooled readings back to back, in their order, waits for
// the broker's acknowledgement of all of them (PublishTimeout at most),
// and returns how many it took. A failure is logged once until a publish
// succeeds again; a reading not taken stays in the spool for the replay.
func (p *Publisher) publish(ctx context.Context, batch []Spooled) int {
	if len(batch) == 0 {
		return 0
	}
	topics, payloads := make([]string, len(batch)), make([][]byte, len(batch))
	for i, s := range batch {
		topics[i], payloads[i] = p.opts.Topics.Reading(p.opts.Host, s.Sensor), s.Payload
	}
	pctx, cancel := context.WithTimeout(ctx, p.opts.PublishTimeout)
	defer cancel()
	errs := p.client.PublishAll(pctx, topics, payloads)
	now := p.opts.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	sent := 0
	for i, s := range batch {
		if err := errs[i]; err != nil {
			if !p.failing {
				p.log.Warn("publishing failed; readings stay in the spool", "err", err)
			}
			p.failing = true
			continue
		}
		if p.failing {
			p.log.Info("publishing again")
		}
		p.failing = false
		if s.Seq > p.acked {
			p.sentAt[s.Seq] = now
		}
		sent++
	}
	return sent
}

// replayWindow is how many readings a replay publishes together: as many
// as the client keeps unacknowledged at once (mqttc.MaxInFlight), so a
// window is one round trip and, on a server that acknowledges after
// storing, about one commit.
const replayWindow = 64

// replay publishes, in seq order, every spooled reading not acknowledged
// and not published within ResendAfter, a window at a time, at
// ReplayRate readings per second on average. It stops at the first
// window the broker did not take whole: what is left stays in the spool.
// With olderThan 0 it publishes all of them (after a reconnect nothing in
// flight can be trusted).
func (p *Publisher) replay(ctx context.Context, olderThan time.Duration) {
	if !p.replayMu.TryLock() {
		return
	}
	defer p.replayMu.Unlock()
	p.mu.Lock()
	after := p.acked
	p.mu.Unlock()
	pace := time.Second / time.Duration(p.opts.ReplayRate)
	// A window never holds more than a second's worth of readings, so a
	// low rate is not exceeded in a burst.
	window := min(replayWindow, p.opts.ReplayRate)
	start, published := time.Now(), 0
	for ctx.Err() == nil {
		page, err := p.spool.Pending(after, 256)
		if err != nil {
			p.log.Error("read spool", "err", err)
			return
		}
		if len(page) == 0 {
			return
		}
		after = page[len(page)-1].Seq
		due := make([]Spooled, 0, len(page))
		now := p.opts.Now()
		p.mu.Lock()
		for _, s := range page {
			if sent, ok := p.sentAt[s.Seq]; olderThan > 0 && ok && now.Sub(sent) < olderThan {
				continue
			}
			due = append(due, s)
		}
		p.mu.Unlock()
		for len(due) > 0 {
			n := min(window, len(due))
			if p.publish(ctx, due[:n]) < n {
				return
			}
			due = due[n:]
			published += n
			if ahead := time.Duration(published)*pace - time.Since(start); ahead > 0 {
				select {
				case <-time.After(ahead):
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// drain publishes what was never published (readings of the last moments
// before a stop, or of an outage) and waits for the acknowledgement of the
// last seq, up to DrainTimeout.
func (p *Publisher) drain() {
	last := p.spool.LastSeq()
	p.mu.Lock()
	done := p.acked >= last
	p.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.DrainTimeout)
	defer cancel()
	// Readings published within the last hour are in flight: leave them.
	p.replay(ctx, time.Hour)
	if !p.WaitAcked(ctx, last, p.opts.DrainTimeout) {
		p.log.Info("stopping with readings not yet acknowledged; they stay in the spool", "waiting", p.spool.Depth())
	}
}

// Run samples every sensor on its schedule until ctx ends, then publishes
// the offline status. A sensor still busy at its next tick skips that tick;
// no sensor waits for another.
func (p *Publisher) Run(ctx context.Context) error {
	if p.opts.Interval <= 0 {
		return errors.New("interval must be positive")
	}
	for _, n := range p.opts.Sensors {
		if n.Absent != nil {
			p.log.Info("sensor absent; not sampled", "sensor", n.Name, "reason", n.Absent)
		}
	}
	var wg sync.WaitGroup
	for _, n := range Sampled(p.opts.Sensors) {
		interval := n.Interval
		if interval <= 0 {
			interval = p.opts.Interval
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, ok := n.Sensor.(Streamer); ok {
				p.stream(ctx, n, st)
				return
			}
			p.schedule(ctx, n, interval)
		}()
	}
	var batcher sync.WaitGroup
	batcher.Add(1)
	go func() {
		defer batcher.Done()
		p.batch(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(p.opts.StatusEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-p.statusDue:
			}
			if err := p.announce(ctx, schema.StateOnline); err != nil {
				p.log.Debug("publish status", "err", err)
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(p.opts.ResendAfter / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.replay(ctx, p.opts.ResendAfter)
			}
		}
	}()
	wg.Wait()
	batcher.Wait()
	p.drain()
	return p.signOff()
}

// coalesce is how long the batcher waits for more samples after one
// arrives: the sensors of one tick finish within it, and their readings go
// to the spool in one transaction (one fsync) instead of one each.
const coalesce = 50 * time.Millisecond

// batch spools and publishes the samples the schedules and streams hand
// in, a tick's worth at a time, until ctx ends; then it takes what is
// already waiting.
func (p *Publisher) batch(ctx context.Context) {
	emit := func(batch []Sample) {
		if _, _, err := p.emit(ctx, batch); err != nil {
			p.log.Error("spool readings", "readings", len(batch), "err", err)
		}
	}
	for {
		var batch []Sample
		select {
		case s := <-p.samples:
			batch = append(batch, s)
		case <-ctx.Done():
			for {
				select {
				case s := <-p.samples:
					batch = append(batch, s)
				default:
					if len(batch) > 0 {
						emit(batch)
					}
					return
				}
			}
		}
		timer := time.NewTimer(coalesce)
	gather:
		for len(batch) < cap(p.samples) {
			select {
			case s := <-p.samples:
				batch = append(batch, s)
			case <-timer.C:
				break gather
			case <-ctx.Done():
				break gather
			}
		}
		timer.Stop()
		emit(batch)
	}
}

// hand gives a sample to the batcher. A sample that completes after the
// stop is dropped: it was cut short and never had a seq.
func (p *Publisher) hand(ctx context.Context, s Sample) {
	if ctx.Err() != nil {
		return
	}
	select {
	case p.samples <- s:
	case <-ctx.Done():
	}
}

// signOff lets the announcers finish and publishes the offline status of
// a clean shutdown.
func (p *Publisher) signOff() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, a := range p.opts.Announcers {
		a.Flush(ctx)
	}
	return p.announce(ctx, schema.StateOffline)
}

func (p *Publisher) schedule(ctx context.Context, n Named, interval time.Duration) {
	busy := make(chan struct{}, 1)
	for {
		now := p.opts.Now()
		next := now.Truncate(interval).Add(interval)
		select {
		case <-ctx.Done():
			return
		case <-time.After(next.Sub(now)):
		}
		select {
		case busy <- struct{}{}:
		default:
			p.log.Warn("sensor still busy; skipping a tick", "sensor", n.Name)
			continue
		}
		go func() {
			defer func() { <-busy }()
			p.handObserved(ctx, n.Read(ctx, next))
		}()
	}
}

// stream publishes each value a streaming sensor produces, stamped when it
// arrives.
func (p *Publisher) stream(ctx context.Context, n Named, st Streamer) {
	st.Stream(ctx, func(v any, err error) {
		p.handObserved(ctx, n.Sample(p.opts.Now(), v, err))
	})
}

// handObserved counts a sample into its sensor's health and gives it to
// the batcher if it is to be stored: a failure's first sample and its
// recovery are, the failed samples in between are counted. A change is
// logged and published in the $status.
func (p *Publisher) handObserved(ctx context.Context, s Sample) {
	if ctx.Err() != nil {
		// Cut short by the stop: neither a failure nor a reading.
		return
	}
	store, change := p.health.observe(&s)
	switch change {
	case startedFailing:
		p.log.Warn("sensor failing; its error is stored now and its recovery when it comes, the failed samples in between are counted",
			"sensor", s.Name, "err", s.Err)
	case recovered:
		p.log.Info("sensor recovered", "sensor", s.Name, "failed_samples", s.Recovered.FailedSamples,
			"since", s.Recovered.Since.Format(time.RFC3339))
	default:
		if s.Err != nil {
			p.log.Debug("sensor failed", "sensor", s.Name, "err", s.Err)
		}
	}
	if change != unchanged {
		select {
		case p.statusDue <- struct{}{}:
		default: // one is due already, and will say this too
		}
	}
	if store {
		p.hand(ctx, s)
	}
}

// Once samples every sensor once, publishes the readings and waits up to
// ackWait for the aggregator to acknowledge them. Readings not acknowledged
// stay in the spool and are published again by the next run. It returns an
// error only if the readings could not be spooled or none was published.
func (p *Publisher) Once(ctx context.Context, ackWait time.Duration) error {
	for _, n := range p.opts.Sensors {
		if n.Absent != nil {
			p.log.Debug("sensor absent; not sampled", "sensor", n.Name, "reason", n.Absent)
		}
	}
	samples := ReadAll(ctx, Sampled(p.opts.Sensors), p.opts.Now())
	for i := range samples {
		p.health.observe(&samples[i])
	}
	spooled, sent, err := p.emit(ctx, samples)
	if err != nil {
		return err
	}
	if sent == 0 && len(spooled) > 0 {
		return fmt.Errorf("published none of %d readings; they stay in the spool", len(spooled))
	}
	if len(spooled) > 0 {
		p.WaitAcked(ctx, spooled[len(spooled)-1].Seq, ackWait)
	}
	return p.signOff()
}

// WaitAcked waits until seq is acknowledged, the timeout passes or ctx
// ends, and reports whether it was acknowledged.
func (p *Publisher) WaitAcked(ctx context.Context, seq uint64, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		done, ch := p.acked >= seq, p.ackCh
		p.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
