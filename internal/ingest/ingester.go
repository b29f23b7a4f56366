// Package ingest is the aggregator's core, whatever carries the readings
// in: it checks each submission in one place (names, time window, seq,
// series bounds, a status's spool id) and makes a dead letter with its
// reason of what fails, stores the rest in batches, calls each
// submission's done after the commit that stores it, and acknowledges
// each host's watermark on its $ack topic.
//
// Transports live beside it and link what this package does not (no MQTT
// or NATS library): internal/ingest/brokerhook (the embedded broker),
// internal/ingest/mqttsub (a subscription to another broker),
// internal/ingest/natsfeed (a NATS JetStream stream). Each turns its own
// acknowledgement (a PUBACK, an MQTT ack, a JetStream ack) into done. A
// transport of apd's MQTT wire format submits through SubmitMessage
// (WireDecoder); one with a format of its own (line protocol,
// remote_write) builds Submissions of decoded readings and calls Submit,
// with no JSON in between.
package ingest

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// AckFunc publishes a retained acknowledgement payload on topic. It must
// not block for long: it runs on the commit path.
type AckFunc func(topic string, payload []byte) error

// Options configure an Ingester. Zero values mean the defaults below.
type Options struct {
	Topics schema.Topics
	// MaxBatch is the most items one commit takes; default 2000.
	MaxBatch int
	// MaxDelay is how long a batch waits for more items after its first;
	// default 10 ms.
	MaxDelay time.Duration
	// AckEvery is how often, at most, acknowledgements go out; default
	// 250 ms. A commit after a quiet spell is acknowledged at once; those
	// that follow within AckEvery are acknowledged together at its end,
	// each host once with its latest watermark. Under a fleet's tick each
	// commit touches most hosts once (a device publishes its sensors one
	// after another), so acknowledging every commit would publish about
	// one $ack per reading.
	AckEvery time.Duration
	// MaxPayload is the largest payload WireDecoder takes; default
	// DefaultMaxPayload (64 KiB).
	MaxPayload int
	// MaxAge and MaxAhead bound a reading's timestamp around the time it
	// is received: older or later readings (a Pi that booted without a
	// clock and stamps 1970) go to dead letters. Defaults 365 days and 24 h.
	MaxAge, MaxAhead time.Duration
	// QueueSize bounds the items waiting for a commit; Submit blocks when it
	// is full, which slows the publishers down instead of dropping.
	// Default 16384.
	QueueSize int
	// MaxSeriesPerHost and MaxSeries bound the series (host, sensor):
	// a reading that would start one beyond either goes to dead letters
	// (ReasonSeriesLimit); series already stored keep being stored.
	// Defaults DefaultMaxSeriesPerHost and DefaultMaxSeries.
	MaxSeriesPerHost, MaxSeries int
	// OnCommit, when set, is given the readings of every committed batch
	// (duplicates included), after the commit and before the
	// acknowledgements. It must not block and must not keep the slice:
	// the batch is reused.
	OnCommit func([]schema.Reading)
	// WantCommits, when set, says whether OnCommit wants this commit's
	// readings: when nothing listens (no dashboard open, no rules), the
	// readings are not copied and sorted for it.
	WantCommits func() bool
	// Name, when set, names this aggregator among several sharing a
	// database: it is recorded in each committed host's record (apd
	// hosts shows it), the hosts committed are counted (Held), and at
	// start only the hosts it held last are acknowledged again.
	Name   string
	Logger *slog.Logger
	Now    func() time.Time
}

// Ingester checks submissions and commits them in batches.
type Ingester struct {
	st      store.Store
	ack     AckFunc
	opts    Options
	log     *slog.Logger
	queue   chan item
	metrics *Metrics

	started   atomic.Bool
	closeOnce sync.Once
	closing   chan struct{}
	stopped   chan struct{}
	mu        sync.RWMutex // held for reading while submitting, so Close can wait
	closed    bool

	// Owned by the commit loop: acknowledgements not yet published, when
	// the last were, and the timer that publishes these.
	pendingAcks map[string]store.HostAck
	acksSent    time.Time
	ackTimer    *time.Timer

	// ackStored asks the commit loop to acknowledge every host's stored
	// watermark again (AcknowledgeStored), and is told when it has.
	ackStored chan chan struct{}

	held holdings

	series *seriesBound // the bounds on series, which check applies
}

// New returns an ingester writing to st and acknowledging through ack (nil:
// no acknowledgements). It starts its commit loop at once.
func New(st store.Store, ack AckFunc, opts Options) *Ingester {
	in := NewIngester(st, opts)
	in.Start(ack)
	return in
}

// NewIngester returns an ingester writing to st that takes submissions
// but commits nothing until Start: it can be handed to a transport before
// what acknowledges through that transport exists.
func NewIngester(st store.Store, opts Options) *Ingester {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 2000
	}
	if opts.AckEvery <= 0 {
		opts.AckEvery = 250 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 10 * time.Millisecond
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 365 * 24 * time.Hour
	}
	if opts.MaxAhead <= 0 {
		opts.MaxAhead = 24 * time.Hour
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 16384
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	in := &Ingester{st: st, opts: opts, log: opts.Logger,
		queue: make(chan item, opts.QueueSize), closing: make(chan struct{}), stopped: make(chan struct{}),
		pendingAcks: map[string]store.HostAck{}, ackTimer: time.NewTimer(time.Hour), ackStored: make(chan chan struct{}),
		held: holdings{hosts: map[string]*HeldHost{}}}
	in.ackTimer.Stop()
	in.metrics = newMetrics(func() float64 { return float64(len(in.queue)) })
	in.series = newSeriesBound(opts.MaxSeriesPerHost, opts.MaxSeries, knownSeries(st, opts.Logger), &in.metrics.Series)
	return in
}

// Start starts the commit loop, acknowledging through ack (nil: no
// acknowledgements). Call it once.
func (in *Ingester) Start(ack AckFunc) {
	in.ack = ack
	in.started.Store(true)
	go in.loop()
}

// Metrics returns the ingester's live metrics; a transport counts the
// clients it cuts off there (CutOff).
func (in *Ingester) Metrics() *Metrics { return in.metrics }

// Topics returns the topics the ingester reads and acknowledges on.
func (in *Ingester) Topics() schema.Topics { return in.opts.Topics }

// Logger returns the ingester's logger, for its transports to log with.
func (in *Ingester) Logger() *slog.Logger { return in.log }

// Close stops taking submissions, commits everything queued and returns
// once the last batch is committed and acknowledged.
func (in *Ingester) Close() error {
	in.closeOnce.Do(func() {
		in.mu.Lock()
		in.closed = true
		in.mu.Unlock()
		close(in.closing)
		if !in.started.Load() {
			close(in.stopped) // never started: nothing to commit
		}
	})
	<-in.stopped
	return nil
}

func (in *Ingester) loop() {
	defer close(in.stopped)
	batch := &store.Batch{Topics: in.opts.Topics, Aggregator: in.opts.Name}
	var dones []func()
	add := func(it item) {
		switch {
		case it.reading != nil:
			batch.Readings = append(batch.Readings, *it.reading)
		case it.status != nil:
			batch.Statuses = append(batch.Statuses, *it.status)
		case it.dead != nil:
			batch.DeadLetters = append(batch.DeadLetters, *it.dead)
		}
		if it.done != nil {
			dones = append(dones, it.done)
		}
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var it item
		select {
		case it = <-in.queue:
		case <-in.ackTimer.C:
			in.flushAcks()
			continue
		case done := <-in.ackStored:
			in.acknowledgeStored()
			close(done)
			continue
		case <-in.closing:
			// Submit cannot add more once closing is closed: drain and stop.
			for {
				select {
				case it := <-in.queue:
					add(it)
					if batch.Len() < in.opts.MaxBatch {
						continue
					}
				default:
					if batch.Len() > 0 {
						in.commit(batch, dones)
					}
					in.flushAcks()
					return
				}
				in.commit(batch, dones)
				batch.Reset()
				dones = dones[:0]
			}
		}
		add(it)
		timer.Reset(in.opts.MaxDelay)
	fill:
		for batch.Len() < in.opts.MaxBatch {
			select {
			case it := <-in.queue:
				add(it)
			case <-timer.C:
				break fill
			case <-in.ackTimer.C:
				in.flushAcks()
			case <-in.closing:
				break fill
			}
		}
		timer.Stop()
		in.commit(batch, dones)
		batch.Reset()
		dones = dones[:0]
	}
}

// commit writes the batch, retrying until it succeeds: a failed commit
// (disk full) stops acknowledgements, which makes publishers and the broker
// keep their copies, until the disk recovers.
func (in *Ingester) commit(batch *store.Batch, dones []func()) {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		res, err := in.st.Commit(batch)
		if err == nil {
			in.metrics.CommitSeconds.Observe(time.Since(start).Seconds())
			if backoff > 100*time.Millisecond {
				in.metrics.CommitFailing.Set(0)
				in.log.Info("commits succeed again; acknowledging")
			}
			in.afterCommit(batch, res, dones)
			return
		}
		// Failing first: whoever sees the error counted sees it failing.
		in.metrics.CommitFailing.Set(1)
		in.metrics.CommitErrors.Inc()
		if backoff == 100*time.Millisecond {
			in.log.Error("commit failed; holding acknowledgements and retrying", "err", err, "items", batch.Len())
		}
		time.Sleep(backoff)
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (in *Ingester) afterCommit(batch *store.Batch, res store.CommitResult, dones []func()) {
	m := in.metrics
	m.Commits.Inc()
	m.BatchSize.Observe(float64(batch.Len()))
	m.Stored.Add(uint64(res.Stored))
	m.Duplicates.Add(uint64(res.Duplicates))
	m.Lost.Add(res.Lost)
	m.Statuses.Add(uint64(len(batch.Statuses)))
	m.Rejected[ReasonSeqOutOfRange].Add(uint64(len(res.Refused) + res.RefusedStatuses))
	for _, q := range res.Quarantined {
		// Once per chunk: a quarantined chunk is out of the way.
		in.log.Error("unreadable stored data set aside (quarantined); ingestion goes on", "what", q)
		m.Quarantined.Inc()
	}
	if in.opts.OnCommit != nil && len(batch.Readings) > len(res.Refused) && (in.opts.WantCommits == nil || in.opts.WantCommits()) {
		// In time order: a resumed session's queue can arrive shuffled
		// (mochi resends it sorted by the second each message was made),
		// and rules skip what comes after a later reading of its host.
		stored := store.WithoutRefused(batch.Readings, res.Refused)
		slices.SortStableFunc(stored, func(a, b schema.Reading) int { return a.Time.Compare(b.Time) })
		in.opts.OnCommit(stored)
	}
	if in.opts.Name != "" {
		in.held.note(batch.Readings, in.opts.Now())
	}
	for _, d := range dones {
		d()
	}
	for host, a := range res.Acks {
		in.pendingAcks[host] = a // the later commit's watermark supersedes
	}
	if len(in.pendingAcks) == 0 {
		return
	}
	if wait := in.opts.AckEvery - time.Since(in.acksSent); wait > 0 {
		in.ackTimer.Reset(wait) // flushAcks at the end of the window, from the loop
		return
	}
	in.flushAcks()
}

// flushAcks publishes the acknowledgements held since the last flush.
func (in *Ingester) flushAcks() {
	in.ackTimer.Stop()
	if len(in.pendingAcks) == 0 {
		return
	}
	for host, a := range in.pendingAcks {
		in.acknowledge(host, a)
		delete(in.pendingAcks, host)
	}
	in.acksSent = time.Now()
}

// acknowledge publishes a host's acknowledgement on its $ack topic.
func (in *Ingester) acknowledge(host string, a store.HostAck) {
	if in.ack == nil {
		return
	}
	payload := schema.Ack{Seq: a.Seq, Time: in.opts.Now(), Spool: a.Spool}.AppendJSON(nil)
	if err := in.ack(in.opts.Topics.Ack(host), payload); err != nil {
		in.log.Warn("publish acknowledgement", "host", host, "seq", a.Seq, "err", err)
		return
	}
	in.metrics.AcksPublished.Inc()
}

// AcknowledgeStored publishes every host's stored watermark again, once
// the transport carries acknowledgements. A process stopped between a
// commit and its acknowledgement (killed, or the broker gone) left the
// retained $ack behind what is stored; devices would hold and resend
// readings that are safe. The commit loop reads the watermarks between
// two commits, so none it publishes is older than one a commit
// acknowledged. It returns once they are published, the ingester is
// closed, or ctx ends; call it after Start.
//
// A named aggregator acknowledges only the hosts it committed last: the
// others are another's, which acknowledges them itself.
func (in *Ingester) AcknowledgeStored(ctx context.Context) {
	done := make(chan struct{})
	select {
	case in.ackStored <- done:
	case <-in.stopped:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-in.stopped:
	case <-ctx.Done():
	}
}

// acknowledgeStored is AcknowledgeStored, on the commit loop.
func (in *Ingester) acknowledgeStored() {
	hosts, err := in.st.Hosts()
	if err != nil {
		in.log.Error("read hosts to acknowledge", "err", err)
		return
	}
	for _, h := range hosts {
		if in.opts.Name != "" && h.Aggregator != in.opts.Name || h.Watermark == 0 {
			continue
		}
		// Stored is at least what a commit left pending: it supersedes.
		in.pendingAcks[h.Name] = store.HostAck{Seq: h.Watermark, Spool: h.Spool}
	}
	in.flushAcks()
}
