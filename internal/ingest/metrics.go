package ingest

import (
	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/store"
)

// Rejection reasons: the first word of a dead letter's reason and the
// label of apd_rejected_total. A transport that cannot decode an input
// names one of them in Undecodable.Reason.
const (
	ReasonInvalidJSON   = "invalid_json"
	ReasonVersion       = "unsupported_version"
	ReasonTopicMismatch = "topic_mismatch"
	ReasonInvalidField  = "invalid_field"
	ReasonInvalidName   = "invalid_name"
	ReasonTooLarge      = "too_large"
	ReasonInvalidStatus = "invalid_status"
	ReasonInvalidUTF8   = "invalid_utf8"
	ReasonTimeWindow    = "ts_out_of_window"
	ReasonSeqOutOfRange = store.ReasonSeqOutOfRange
	ReasonInvalidTopic  = "invalid_topic"
	// ReasonInvalid is counted for a reason outside this list.
	ReasonInvalid = "invalid"
)

var reasons = []string{ReasonInvalidJSON, ReasonVersion, ReasonTopicMismatch, ReasonInvalidField,
	ReasonInvalidName, ReasonTooLarge, ReasonInvalidStatus, ReasonInvalidUTF8, ReasonTimeWindow,
	ReasonSeqOutOfRange, ReasonInvalidTopic, ReasonSeriesLimit, ReasonInvalid}

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
	// CutOff counts clients a transport disconnected for sending too much
	// bad input.
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

func newMetrics(queueDepth func() float64) *Metrics {
	m := &Metrics{Rejected: map[string]*metrics.Counter{},
		BatchSize:     metrics.NewHistogram(1, 10, 100, 1000, 10000),
		CommitSeconds: metrics.NewHistogram(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
		QueueDepth:    queueDepth}
	for _, r := range reasons {
		m.Rejected[r] = new(metrics.Counter)
	}
	return m
}

// reject counts a rejection under reason, or under ReasonInvalid when
// reason is not one of the labels.
func (m *Metrics) reject(reason string) {
	c, ok := m.Rejected[reason]
	if !ok {
		c = m.Rejected[ReasonInvalid]
	}
	c.Inc()
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
