// Package remotewrite takes Prometheus remote_write 1.0 into the
// aggregator: POST /api/v1/write (and /prometheus/api/v1/write), a
// snappy-compressed (block format) protobuf prompb.WriteRequest.
//
// Each sample of a series becomes a reading at the sample's millisecond
// timestamp with its float value, on the host and sensor the series'
// labels map to (influxline's mapping, shared: the host label or else
// instance without its port gives the host; the metric name and the
// values of the other labels but job and instance, in label-name order,
// fold into the sensor). A write is answered 204 only after every
// reading of it is committed, 400 when the body cannot be decoded (which
// Prometheus does not send again), 413 beyond the size bound, 415 for a
// remote_write 2.0 body (Prometheus then falls back to 1.0), 503 while
// the aggregator shuts down (Prometheus retries).
//
// Samples apd cannot store as JSON are skipped and counted: Prometheus'
// stale markers (a series ended: apd's readings need no end mark) and
// any other NaN or ±Inf. Native histograms, exemplars and metadata are
// ignored and counted. A series whose labels give no valid host or
// sensor is a dead letter, one per series, with its reason.
package remotewrite

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/influxline"
	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/schema"
)

// Defaults of Options.
const (
	// DefaultHostLabel is the label naming a series' host.
	DefaultHostLabel = "host"
	// DefaultMaxBytes bounds a request body, compressed and decoded:
	// 32 MiB, far above Prometheus' batches (2,000 samples by default,
	// about 100 KiB decoded).
	DefaultMaxBytes = 32 << 20
	// DefaultMaxConcurrent bounds the bodies held at once (Prometheus
	// sends up to max_shards at once and retries what waits too long).
	DefaultMaxConcurrent = 4
)

// Options configure a Handler.
type Options struct {
	// Ingester takes the readings.
	Ingester influxline.Ingester
	// HostLabel names the label holding a series' host; "" means
	// DefaultHostLabel. Without it the instance label, without its port,
	// names the host.
	HostLabel string
	// DefaultHost is the host of a series with neither; "" makes such a
	// series a dead letter.
	DefaultHost string
	// MaxBytes bounds a body, compressed and decoded (413 beyond); 0
	// means DefaultMaxBytes.
	MaxBytes int64
	// MaxConcurrent bounds the writes decoded and submitted at once; 0
	// means DefaultMaxConcurrent.
	MaxConcurrent int
	// Now stamps the received time; nil means time.Now.
	Now func() time.Time
}

// Counts are what a Handler skipped or ignored, ever.
type Counts struct {
	Stale      metrics.Counter // stale markers
	NonFinite  metrics.Counter // other NaN and ±Inf samples
	Histograms metrics.Counter // native histogram samples
	Exemplars  metrics.Counter
	Metadata   metrics.Counter // metadata entries
}

// Handler serves remote_write.
type Handler struct {
	opts   Options
	slots  chan struct{}
	counts Counts
}

// New returns a Handler for opts.
func New(opts Options) *Handler {
	opts.HostLabel = cmp.Or(opts.HostLabel, DefaultHostLabel)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultMaxBytes)
	opts.MaxConcurrent = cmp.Or(opts.MaxConcurrent, DefaultMaxConcurrent)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{opts: opts, slots: make(chan struct{}, opts.MaxConcurrent)}
}

// Counts returns what the handler skipped and ignored.
func (h *Handler) Counts() *Counts { return &h.counts }

// Register adds the handler's counts to r.
func (h *Handler) Register(r *metrics.Registry) {
	const name, help = "apd_remote_write_skipped_total", "remote_write input not stored, by kind: stale markers, other NaN/Inf samples, native histograms, exemplars, metadata."
	c := &h.counts
	r.Counter(name, help, metrics.Labels("kind", "stale"), &c.Stale)
	r.Counter(name, help, metrics.Labels("kind", "non_finite"), &c.NonFinite)
	r.Counter(name, help, metrics.Labels("kind", "histogram"), &c.Histograms)
	r.Counter(name, help, metrics.Labels("kind", "exemplar"), &c.Exemplars)
	r.Counter(name, help, metrics.Labels("kind", "metadata"), &c.Metadata)
}

// ServeHTTP takes one remote_write request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "write with POST", http.StatusMethodNotAllowed)
		return
	}
	// remote_write 2.0 names its message in the Content-Type; 415 makes
	// Prometheus fall back to 1.0.
	if ct := r.Header.Get("Content-Type"); strings.Contains(ct, "proto=") && !strings.Contains(ct, "proto=prometheus.WriteRequest") {
		http.Error(w, fmt.Sprintf("Content-Type %q: apd takes remote_write 1.0 (prometheus.WriteRequest)", ct), http.StatusUnsupportedMediaType)
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		http.Error(w, fmt.Sprintf("Content-Encoding %q: want snappy", enc), http.StatusUnsupportedMediaType)
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	case <-r.Context().Done():
		return
	}
	req, status, err := h.decode(w, r)
	if err != nil {
		// An undecodable body is a dead letter too, so what a sender got
		// wrong can be seen after the fact.
		if status == http.StatusBadRequest {
			_, _ = h.opts.Ingester.Submit(ingest.Submission{Undecodable: &ingest.Undecodable{Reason: ingest.ReasonInvalid, Err: err},
				Topic: r.URL.Path, Received: h.opts.Now()}, nil)
		}
		http.Error(w, err.Error(), status)
		return
	}
	p := influxline.NewPending(h.opts.Ingester)
	if err := h.submit(p, req, r.URL.Path, h.opts.Now()); err != nil {
		http.Error(w, "the aggregator is shutting down; write again", http.StatusServiceUnavailable)
		return
	}
	if err := p.Wait(r.Context()); err != nil {
		return // the client is gone
	}
	w.WriteHeader(http.StatusNoContent)
}

// decode reads and decodes the body, or says why not with the status.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request) (*prompb.WriteRequest, int, error) {
	max := h.opts.MaxBytes
	compressed, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body is more than %d bytes: lower queue_config.max_samples_per_send", max)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	n, err := snappy.DecodedLen(compressed)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("snappy body: %w", err)
	}
	if int64(n) > max {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body decodes to %d bytes, at most %d: lower queue_config.max_samples_per_send", n, max)
	}
	raw, err := snappy.Decode(nil, compressed)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("snappy body: %w", err)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("protobuf body: %w", err)
	}
	return &req, 0, nil
}

// submit submits every sample of req, received at now; it returns
// ingest.ErrClosed if the ingester closed on the way.
func (h *Handler) submit(p *influxline.Pending, req *prompb.WriteRequest, endpoint string, now time.Time) error {
	c := &h.counts
	c.Metadata.Add(uint64(len(req.Metadata)))
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		c.Histograms.Add(uint64(len(ts.Histograms)))
		c.Exemplars.Add(uint64(len(ts.Exemplars)))
		if len(ts.Samples) == 0 {
			continue
		}
		host, sensor, err := h.name(ts.Labels)
		if err != nil {
			if _, err := p.Submit(ingest.Submission{Undecodable: &ingest.Undecodable{Reason: ingest.ReasonInvalidName, Err: err},
				Topic: endpoint, Payload: []byte(seriesString(ts.Labels)), Received: now}); err != nil {
				return err
			}
			continue
		}
		unit := influxline.UnitOf(metricName(ts.Labels))
		for _, s := range ts.Samples {
			switch {
			case value.IsStaleNaN(s.Value):
				c.Stale.Inc()
				continue
			case math.IsNaN(s.Value) || math.IsInf(s.Value, 0):
				c.NonFinite.Inc()
				continue
			}
			v := influxline.Quantity(nil, influxline.AppendFloat(nil, s.Value), unit)
			rd := &schema.Reading{Host: host, Sensor: sensor, Time: time.UnixMilli(s.Timestamp), Value: v}
			if _, err := p.Submit(ingest.Submission{Reading: rd, Received: now}); err != nil {
				return err
			}
		}
	}
	return nil
}

// name maps a series' labels to apd's host and sensor.
func (h *Handler) name(labels []prompb.Label) (host, sensor string, err error) {
	var instance string
	parts := []string{""}
	// The protocol requires labels sorted by name, the order their values
	// fold in; a sender that did not sort them still gets the same name.
	if !slices.IsSortedFunc(labels, byName) {
		labels = slices.SortedFunc(slices.Values(labels), byName)
	}
	for _, l := range labels {
		switch {
		case l.Name == "__name__":
			parts[0] = l.Value
		case l.Name == h.opts.HostLabel:
			host = influxline.HostName(l.Value)
		case l.Name == "instance":
			instance = l.Value
		case l.Name == "job" || strings.HasPrefix(l.Name, "__"):
			// job and instance name the scrape target, which the host
			// already says; other __ labels are Prometheus' own.
		default:
			parts = append(parts, l.Value)
		}
	}
	if parts[0] == "" {
		return "", "", errors.New("no __name__ label")
	}
	switch {
	case host != "":
	case instance != "":
		host = influxline.InstanceHost(instance)
	case h.opts.DefaultHost != "":
		host = h.opts.DefaultHost
	default:
		return "", "", fmt.Errorf("neither a %q nor an instance label names the host (add one, or configure a default host)", h.opts.HostLabel)
	}
	sensor, err = influxline.FoldName(parts...)
	if err != nil {
		return "", "", fmt.Errorf("sensor: %w", err)
	}
	return host, sensor, nil
}

func byName(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }

func metricName(labels []prompb.Label) string {
	for _, l := range labels {
		if l.Name == "__name__" {
			return l.Value
		}
	}
	return ""
}

// seriesString writes labels as Prometheus does: name{a="b",...}.
func seriesString(labels []prompb.Label) string {
	var b strings.Builder
	b.WriteString(metricName(labels))
	b.WriteByte('{')
	first := true
	for _, l := range labels {
		if l.Name == "__name__" {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}
