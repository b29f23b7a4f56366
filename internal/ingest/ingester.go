// Package subscriber is apd's aggregator: it takes messages from the MQTT
// world, decodes and validates them, stores them in batches, and
// acknowledges each host's readings on its $ack topic after the commit.
//
// One pipeline ([Ingester]) is fed two ways: in-process from the embedded
// broker through a mochi hook ([Hook]), or from any external broker by an
// MQTT subscription ([Subscribe]) that acknowledges each message to the
// broker only after the batch holding it is committed.
package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/apd-telemetry/apd/internal/metrics"
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
	// MaxPayload rejects larger payloads; default 64 KiB.
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

// Rejection reasons, the label of apd_rejected_total.
const (
	ReasonInvalidJSON    = "invalid_json"
	ReasonVersion        = "unsupported_version"
	ReasonTopicMismatch  = "topic_mismatch"
	ReasonInvalidField   = "invalid_field"
	ReasonInvalidName    = "invalid_name"
	ReasonTooLarge       = "too_large"
	ReasonInvalidStatus  = "invalid_status"
	ReasonInvalidUTF8    = "invalid_utf8"
	ReasonTimeWindow     = "ts_out_of_window"
	ReasonSeqOutOfRange  = store.ReasonSeqOutOfRange
	ReasonInvalidTopic   = "invalid_topic"
	reasonUnknownDecoder = "invalid"
)

var reasons = []string{ReasonInvalidJSON, ReasonVersion, ReasonTopicMismatch, ReasonInvalidField,
	ReasonInvalidName, ReasonTooLarge, ReasonInvalidStatus, ReasonInvalidUTF8, ReasonTimeWindow,
	ReasonSeqOutOfRange, ReasonInvalidTopic, ReasonSeriesLimit, reasonUnknownDecoder}

func reasonOf(err error) string {
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
	return reasonUnknownDecoder
}

// Metrics are the ingester's counters.
type Metrics struct {
	Received     metrics.Counter
	Stored       metrics.Counter
	Duplicates   metrics.Counter
	Lost         metrics.Counter
	Rejected     map[string]*metrics.Counter
	Statuses     metrics.Counter
	Commits      metrics.Counter
	CommitErrors metrics.Counter
	// CommitFailing is 1 while commits fail (disk full): nothing is
	// acknowledged until it is 0 again.
	CommitFailing metrics.Gauge
	AcksPublished metrics.Counter
	// CutOff counts clients disconnected for sending too much bad input.
	CutOff metrics.Counter
	// Quarantined counts stored chunks a commit found unreadable and set
	// aside, going on without them.
	Quarantined   metrics.Counter
	BatchSize     *metrics.Histogram
	CommitSeconds *metrics.Histogram
	QueueDepth    func() float64

	// Series is how many series the ingester knows (see Options.MaxSeries).
	Series metrics.Gauge
}

// RejectedTotal returns the sum of rejections over all reasons.
func (m *Metrics) RejectedTotal() uint64 {
	var n uint64
	for _, c := range m.Rejected {
		n += c.Value()
	}
	return n
}

// Register adds the metrics to r.
func (m *Metrics) Register(r *metrics.Registry) {
	r.Counter("apd_received_total", "Messages received on reading and status topics.", "", &m.Received)
	r.Counter("apd_stored_total", "Readings newly stored.", "", &m.Stored)
	r.Counter("apd_duplicates_total", "Readings already stored under the same host, sensor and time.", "", &m.Duplicates)
	r.Counter("apd_seq_lost_total", "Readings devices declared dropped from a full spool (seq gaps that will not fill).", "", &m.Lost)
	for _, reason := range reasons {
		r.Counter("apd_rejected_total", "Messages sent to dead letters, by reason.", metrics.Labels("reason", reason), m.Rejected[reason])
	}
	r.Counter("apd_status_total", "Host status messages recorded.", "", &m.Statuses)
	r.Counter("apd_commits_total", "Batches committed.", "", &m.Commits)
	r.Counter("apd_commit_errors_total", "Batch commits that failed and were retried.", "", &m.CommitErrors)
	r.Gauge("apd_commit_failing", "1 while commits fail (e.g. disk full) and acknowledgements are held back.", "", &m.CommitFailing)
	r.Counter("apd_acks_published_total", "Acknowledgements published on $ack topics.", "", &m.AcksPublished)
	r.Counter("apd_clients_cut_off_total", "Clients disconnected for sending too many rejected messages.", "", &m.CutOff)
	r.Counter("apd_store_quarantined_total", "Stored chunks found unreadable (corrupt) and set aside by a commit.", "", &m.Quarantined)
	r.Gauge("apd_series", "Series (host, sensor) known: stored at start or admitted since; new ones beyond max_series are refused.", "", &m.Series)
	r.Histogram("apd_batch_size", "Items per committed batch.", m.BatchSize)
	r.Histogram("apd_commit_seconds", "Commit latency in seconds.", m.CommitSeconds)
	if m.QueueDepth != nil {
		r.GaugeFunc("apd_ingest_queue_depth", "Items waiting for a commit.", m.QueueDepth)
	}
}

type item struct {
	reading *schema.Reading
	status  *store.StatusUpdate
	dead    *store.DeadLetter
	done    func()
}

// Ingester batches decoded messages into group commits.
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

	held holdings

	series *seriesBound // the bounds on series, which decode applies
}

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("ingester closed")

// New returns an ingester writing to st and acknowledging through ack (nil:
// no acknowledgements). It starts its commit loop at once.
func New(st store.Store, ack AckFunc, opts Options) *Ingester {
	in := NewIngester(st, opts)
	in.Start(ack)
	return in
}

// NewIngester returns an ingester writing to st that takes messages but
// commits nothing until Start: it can be handed to a broker hook or an
// MQTT client before what acknowledges through them exists.
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
		opts.MaxPayload = 64 << 10
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
		pendingAcks: map[string]store.HostAck{}, ackTimer: time.NewTimer(time.Hour), held: holdings{hosts: map[string]*HeldHost{}}}
	in.ackTimer.Stop()
	m := &Metrics{Rejected: map[string]*metrics.Counter{},
		BatchSize:     metrics.NewHistogram(1, 10, 100, 1000, 10000),
		CommitSeconds: metrics.NewHistogram(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
		QueueDepth:    func() float64 { return float64(len(in.queue)) }}
	for _, r := range reasons {
		m.Rejected[r] = new(metrics.Counter)
	}
	in.metrics = m
	in.series = newSeriesBound(opts.MaxSeriesPerHost, opts.MaxSeries, knownSeries(st, opts.Logger), &m.Series)
	return in
}

// Start starts the commit loop, acknowledging through ack (nil: no
// acknowledgements). Call it once.
func (in *Ingester) Start(ack AckFunc) {
	in.ack = ack
	in.started.Store(true)
	go in.loop()
}

// Metrics returns the ingester's live metrics.
func (in *Ingester) Metrics() *Metrics { return in.metrics }

// Submit decodes one message and queues it for the next commit. done, if
// not nil, is called after the commit that makes the message durable (or
// after it was found to need no storing). Submit blocks while the queue is
// full. Messages on topics other than readings and statuses are ignored.
func (in *Ingester) Submit(topic string, payload []byte, done func()) error {
	_, err := in.submit(topic, payload, done)
	return err
}

// submit is Submit that also reports whether the message was rejected.
func (in *Ingester) submit(topic string, payload []byte, done func()) (rejected bool, err error) {
	it, ok := in.decode(topic, payload)
	if !ok {
		if done != nil {
			done()
		}
		return false, nil
	}
	it.done = done
	in.mu.RLock()
	defer in.mu.RUnlock()
	if in.closed {
		return it.dead != nil, ErrClosed
	}
	in.queue <- it
	return it.dead != nil, nil
}

func (in *Ingester) decode(topic string, payload []byte) (item, bool) {
	now := in.opts.Now()
	t, err := in.opts.Topics.Parse(topic)
	if errors.Is(err, schema.ErrNotApdTopic) && !in.opts.Topics.Under(topic) || err == nil && t.Kind == schema.KindAck {
		return item{}, false
	}
	in.metrics.Received.Inc()
	reject := func(reason string, err error) (item, bool) {
		in.metrics.Rejected[reason].Inc()
		return item{dead: &store.DeadLetter{Received: now.UTC(), Topic: topic,
			Reason: fmt.Sprintf("%s: %v", reason, err), Payload: payload}}, true
	}
	if errors.Is(err, schema.ErrNotApdTopic) {
		// Under the prefix but not a reading or status (apd/h/s/extra):
		// nothing would store it, so it is kept and counted here.
		return reject(ReasonInvalidTopic, err)
	}
	if err != nil {
		return reject(ReasonInvalidName, err)
	}
	if len(payload) > in.opts.MaxPayload {
		return reject(ReasonTooLarge, fmt.Errorf("%d bytes, at most %d", len(payload), in.opts.MaxPayload))
	}
	if !utf8.Valid(payload) {
		return reject(ReasonInvalidUTF8, errors.New("payload is not valid UTF-8"))
	}
	if t.Kind == schema.KindStatus {
		var st schema.Status
		if err := json.Unmarshal(payload, &st); errors.Is(err, schema.ErrSeqOutOfRange) {
			return reject(ReasonSeqOutOfRange, err)
		} else if err != nil {
			return reject(ReasonInvalidStatus, err)
		}
		if st.Time.IsZero() {
			st.Time = now.UTC().Truncate(time.Millisecond)
		}
		return item{status: &store.StatusUpdate{Host: t.Host, Status: st}}, true
	}
	r, err := schema.Decode(t.Host, t.Sensor, payload, now)
	if err != nil {
		return reject(reasonOf(err), err)
	}
	if r.Time.Before(now.Add(-in.opts.MaxAge)) || r.Time.After(now.Add(in.opts.MaxAhead)) {
		return reject(ReasonTimeWindow, fmt.Errorf("ts %s is outside [now-%s, now+%s]",
			schema.FormatTime(r.Time), in.opts.MaxAge, in.opts.MaxAhead))
	}
	if err := in.admitSeries(t.Host, t.Sensor, now); err != nil {
		return reject(ReasonSeriesLimit, err)
	}
	return item{reading: &r}, true
}

// Close stops accepting messages, commits everything queued and returns
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
		in.Acknowledge(host, a)
		delete(in.pendingAcks, host)
	}
	in.acksSent = time.Now()
}

// Acknowledge publishes a host's acknowledgement on its $ack topic.
func (in *Ingester) Acknowledge(host string, a store.HostAck) {
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

// AcknowledgeStored publishes every host's stored watermark again. A
// process stopped between a commit and its acknowledgement (killed, or
// the broker gone) left the retained $ack behind what is stored; devices
// would hold and resend readings that are safe.
//
// A named aggregator acknowledges only the hosts it committed last: the
// others are another's, which acknowledges them itself.
func (in *Ingester) AcknowledgeStored(hosts []store.Host) {
	for _, h := range hosts {
		if in.opts.Name != "" && h.Aggregator != in.opts.Name {
			continue
		}
		if h.Watermark > 0 {
			in.Acknowledge(h.Name, store.HostAck{Seq: h.Watermark, Spool: h.Spool})
		}
	}
}
