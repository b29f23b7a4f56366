package promapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// The labels of a series: a reading of sensor s from host h with unit u is
// a sample of {__name__="s", host="h", unit="u"}; a value without a unit
// (a plain number, a boolean) has no unit label.
const (
	labelHost = "host"
	labelUnit = "unit"
)

// ErrTooManySamples ends a query that would load more samples than its
// bound: the samples of every selected series are held in memory while
// the engine evaluates.
var ErrTooManySamples = errors.New("too many samples")

// queryable is the store as the PromQL engine reads it. A querier
// scans the readings of the (sensor, host) pairs its matchers can
// select and turns the numeric ones into samples; readings that carry an
// error or a value that is not a number, quantity or boolean are not
// samples and are left out.
type queryable struct {
	st store.Reader
	// maxSamples bounds the samples one query loads (16 bytes each).
	maxSamples int
	// summaries, when set, lets a plain selector of a long range with a
	// step of at least store.SummaryPeriod read the stored period sums.
	summaries bool
	// budget is shared by every querier of one query.
	budget *atomic.Int64
	// summarised is set when a select answered from the stored sums, so
	// the API can say so.
	summarised *atomic.Bool
}

func (q queryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{queryable: q, mint: mint, maxt: maxt}, nil
}

type querier struct {
	queryable
	mint, maxt int64
}

func (q *querier) Close() error { return nil }

// pair is a (sensor, host) the store knows, with the time of its last
// reading.
type pair struct {
	sensor, host string
	last         time.Time
}

// pairs lists the (sensor, host) pairs whose __name__ and host match ms,
// sorted by sensor then host.
func (q *querier) pairs(ms []*labels.Matcher) ([]pair, error) {
	hosts, err := q.st.Hosts()
	if err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	var out []pair
	for _, h := range hosts {
		if !matches(ms, labelHost, h.Name) {
			continue
		}
		for s, stats := range h.Sensors {
			if matches(ms, model.MetricNameLabel, s) {
				out = append(out, pair{sensor: s, host: h.Name, last: stats.Last})
			}
		}
	}
	slices.SortFunc(out, func(a, b pair) int {
		return cmp.Or(strings.Compare(a.sensor, b.sensor), strings.Compare(a.host, b.host))
	})
	return out, nil
}

// matches reports whether value, as label name's value, passes every
// matcher of ms on that name.
func matches(ms []*labels.Matcher, name, value string) bool {
	for _, m := range ms {
		if m.Name == name && !m.Matches(value) {
			return false
		}
	}
	return true
}

// otherLabelsEmpty reports whether the matchers on labels apd's series do
// not have (anything but __name__, host and unit) accept the empty value,
// as Prometheus treats a missing label.
func otherLabelsEmpty(ms []*labels.Matcher) bool {
	for _, m := range ms {
		switch m.Name {
		case model.MetricNameLabel, labelHost, labelUnit:
		default:
			if !m.Matches("") {
				return false
			}
		}
	}
	return true
}

func (q *querier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = hints.Start, hints.End
	}
	if !otherLabelsEmpty(ms) || mint > maxt {
		return storage.EmptySeriesSet()
	}
	pairs, err := q.pairs(ms)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	q.pruneBefore(&pairs, mint)
	var set seriesSet
	if q.summaries && hints != nil && useSums(hints) {
		if sm, ok := q.st.(store.Summarizer); ok {
			err = q.selectSums(ctx, sm, pairs, evalStart(hints), maxt, ms, &set)
			if err == nil {
				q.summarised.Store(true)
			}
			return set.done(err)
		}
	}
	return set.done(q.selectReadings(ctx, pairs, mint, maxt, ms, &set))
}

// pruneBefore drops the pairs whose last reading is before mint: they
// have nothing in range, and scanning them would cost a seek each.
func (q *querier) pruneBefore(pairs *[]pair, mint int64) {
	*pairs = slices.DeleteFunc(*pairs, func(p pair) bool {
		return !p.last.IsZero() && p.last.UnixMilli() < mint
	})
}

// useSums reports whether the engine's step allows the stored period
// sums: a plain selector (no function around it, no range) evaluated at
// steps of at least a summary period, each of which then sees the mean of
// the period before it instead of the last reading there.
func useSums(h *storage.SelectHints) bool {
	period := store.SummaryPeriod.Milliseconds()
	return h.Func == "" && h.Range == 0 && h.Step >= period && h.Step%period == 0 && evalStart(h)%period == 0
}

// evalStart is the first step of a plain selector's evaluation: the
// engine asks for samples from a lookback before it, exclusive.
func evalStart(h *storage.SelectHints) int64 {
	return h.Start - 1 + DefaultLookback.Milliseconds()
}

// bySensor groups pairs (sorted by sensor) into one scan per sensor.
func bySensor(pairs []pair, fn func(sensor string, hosts []string) error) error {
	for i := 0; i < len(pairs); {
		j := i
		var hosts []string
		for ; j < len(pairs) && pairs[j].sensor == pairs[i].sensor; j++ {
			hosts = append(hosts, pairs[j].host)
		}
		if err := fn(pairs[i].sensor, hosts); err != nil {
			return err
		}
		i = j
	}
	return nil
}

func (q *querier) selectReadings(ctx context.Context, pairs []pair, mint, maxt int64, ms []*labels.Matcher, set *seriesSet) error {
	return bySensor(pairs, func(sensor string, hosts []string) error {
		sq := store.Query{Sensor: sensor, Hosts: hosts, Since: time.UnixMilli(mint), Until: time.UnixMilli(maxt).Add(time.Millisecond)}
		var cur *series
		n := 0
		err := q.st.Scan(sq, func(r *schema.Reading) error {
			if n++; n%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			v, unit, ok := sample(r)
			if !ok {
				return nil
			}
			if cur == nil || cur.host != r.Host || cur.unit != unit {
				cur = set.series(sensor, r.Host, unit, ms)
			}
			if cur == nil {
				return nil
			}
			return q.add(cur, r.Time.UnixMilli(), v)
		})
		return err
	})
}

// selectSums gives each period of each series one sample, the mean of its
// numeric readings, stamped at the period's last millisecond: a step at
// the period's end finds it within any lookback.
func (q *querier) selectSums(ctx context.Context, sm store.Summarizer, pairs []pair, mint, maxt int64, ms []*labels.Matcher, set *seriesSet) error {
	period := store.SummaryPeriod.Milliseconds()
	// The step at mint looks back into the period before it.
	since := mint - period
	return bySensor(pairs, func(sensor string, hosts []string) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sq := store.Query{Sensor: sensor, Hosts: hosts, Since: time.UnixMilli(since), Until: time.UnixMilli(maxt).Add(time.Millisecond)}
		var cur *series
		// acc sums what falls in one period of one series: whole-period
		// sums and readings at its edges alike.
		var acc struct {
			start      int64
			count, sum float64
		}
		flush := func() error {
			if cur == nil || acc.count == 0 {
				return nil
			}
			err := q.add(cur, acc.start+period-1, acc.sum/acc.count)
			acc.count, acc.sum = 0, 0
			return err
		}
		err := sm.ScanSummarized(sq, func(p *store.Part) error {
			var host, unit string
			var t int64
			var count, sum float64
			switch {
			case p.Sum != nil:
				host, unit, t = p.Sum.Host, p.Sum.Unit, p.Sum.Start.UnixMilli()
				count, sum = float64(p.Sum.Count), p.Sum.Sum
			case p.Reading != nil:
				v, u, ok := sample(p.Reading)
				if !ok {
					return nil
				}
				host, unit, t, count, sum = p.Reading.Host, u, p.Reading.Time.UnixMilli(), 1, v
			default:
				return nil
			}
			if cur == nil || cur.host != host || cur.unit != unit {
				if err := flush(); err != nil {
					return err
				}
				cur = set.series(sensor, host, unit, ms)
				acc.start = -1
			}
			if cur == nil {
				return nil
			}
			if start := t - mod(t, period); start != acc.start {
				if err := flush(); err != nil {
					return err
				}
				acc.start = start
			}
			acc.count += count
			acc.sum += sum
			return nil
		})
		if err != nil {
			return err
		}
		return flush()
	})
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// add appends a sample to s within the query's budget.
func (q *querier) add(s *series, t int64, v float64) error {
	if q.budget.Add(-1) < 0 {
		return fmt.Errorf("%w: the query would load more than %d samples (%d MB); select fewer series or a shorter range",
			ErrTooManySamples, q.maxSamples, q.maxSamples*16>>20)
	}
	// The engine wants strictly increasing times; the store gives a
	// series' readings in time order, one per millisecond at most.
	if n := len(s.samples); n > 0 && s.samples[n-1].t >= t {
		return nil
	}
	s.samples = append(s.samples, fsample{t: t, f: v})
	return nil
}

// sample is a reading as a sample's value and the series' unit, or false
// for a reading that is no sample (an error, a string, an object, a list).
func sample(r *schema.Reading) (float64, string, bool) {
	if r.Error != nil {
		return 0, "", false
	}
	if q, ok := schema.ParseQuantity(r.Value); ok {
		return q.Magnitude, q.Unit, true
	}
	v, ok := schema.Numeric(r.Value)
	if !ok || math.IsNaN(v) {
		return 0, "", false
	}
	return v, "", true
}

func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	set, err := q.labelSets(ctx, ms)
	if err != nil {
		return nil, nil, err
	}
	names := map[string]bool{}
	for _, ls := range set {
		ls.Range(func(l labels.Label) { names[l.Name] = true })
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return limit(out, hints), nil, nil
}

func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var values map[string]bool
	switch {
	case name != labelUnit && len(ms) == 0:
		// Names and hosts come from the hosts' records alone, without
		// reading any series: what a label browser asks first.
		pairs, err := q.pairs(nil)
		if err != nil {
			return nil, nil, err
		}
		values = map[string]bool{}
		for _, p := range pairs {
			switch name {
			case model.MetricNameLabel:
				values[p.sensor] = true
			case labelHost:
				values[p.host] = true
			}
		}
	default:
		set, err := q.labelSets(ctx, ms)
		if err != nil {
			return nil, nil, err
		}
		values = map[string]bool{}
		for _, ls := range set {
			if v := ls.Get(name); v != "" {
				values[v] = true
			}
		}
	}
	out := make([]string, 0, len(values))
	for v := range values {
		out = append(out, v)
	}
	sort.Strings(out)
	return limit(out, hints), nil, nil
}

func limit(s []string, hints *storage.LabelHints) []string {
	if hints != nil && hints.Limit > 0 && len(s) > hints.Limit {
		return s[:hints.Limit]
	}
	return s
}

// labelSets lists the label sets of the series ms select within the
// querier's range (every series when ms is empty).
//
// Only the labels are wanted, so each (sensor, host) is read up to its
// first sample in range: a label browser's call over a month of a fleet
// costs a seek a series, not every reading (nor the query's sample
// budget). A series whose unit changed within the range is listed with
// its first unit there (and any other that ms asks for by name).
func (q *querier) labelSets(ctx context.Context, ms []*labels.Matcher) ([]labels.Labels, error) {
	if !otherLabelsEmpty(ms) || q.mint > q.maxt {
		return nil, nil
	}
	pairs, err := q.pairs(ms)
	if err != nil {
		return nil, err
	}
	q.pruneBefore(&pairs, q.mint)
	var set seriesSet
	for _, p := range pairs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sq := store.Query{Sensor: p.sensor, Hosts: []string{p.host}, Since: time.UnixMilli(q.mint), Until: time.UnixMilli(q.maxt).Add(time.Millisecond)}
		err := q.st.Scan(sq, func(r *schema.Reading) error {
			_, unit, ok := sample(r)
			if !ok {
				return nil
			}
			s := set.series(p.sensor, p.host, unit, ms)
			if s == nil {
				return nil
			}
			s.samples = append(s.samples[:0], fsample{}) // listed: it has a sample in range
			return store.ErrStop
		})
		if err != nil {
			return nil, err
		}
	}
	ss := set.done(nil)
	var out []labels.Labels
	for ss.Next() {
		out = append(out, ss.At().Labels())
	}
	return out, nil
}

// seriesSet collects a select's series in the order they are found
// (sensor, host, then unit as the readings change it) and hands them to
// the engine sorted by labels.
type seriesSet struct {
	list  []*series
	index map[string]*series
	i     int
	err   error
}

// series returns the series of (sensor, host, unit), new or found, or nil
// when ms does not select it (a unit matcher).
func (s *seriesSet) series(sensor, host, unit string, ms []*labels.Matcher) *series {
	key := sensor + "\x00" + host + "\x00" + unit
	if cur, ok := s.index[key]; ok {
		return cur
	}
	if !matches(ms, labelUnit, unit) {
		return nil
	}
	b := labels.NewScratchBuilder(3)
	b.Add(model.MetricNameLabel, sensor)
	b.Add(labelHost, host)
	if unit != "" {
		b.Add(labelUnit, unit)
	}
	b.Sort()
	cur := &series{host: host, unit: unit, lset: b.Labels()}
	if s.index == nil {
		s.index = map[string]*series{}
	}
	s.index[key] = cur
	s.list = append(s.list, cur)
	return cur
}

// done ends collecting: series without a sample in range are dropped.
func (s *seriesSet) done(err error) storage.SeriesSet {
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	s.list = slices.DeleteFunc(s.list, func(x *series) bool { return len(x.samples) == 0 })
	slices.SortFunc(s.list, func(a, b *series) int { return labels.Compare(a.lset, b.lset) })
	s.i = -1
	return s
}

func (s *seriesSet) Next() bool {
	s.i++
	return s.i < len(s.list)
}
func (s *seriesSet) At() storage.Series                { return s.list[s.i] }
func (s *seriesSet) Err() error                        { return s.err }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// series is one series' samples in time order.
type series struct {
	host, unit string
	lset       labels.Labels
	samples    []fsample
}

func (s *series) Labels() labels.Labels { return s.lset }

// Iterator walks the series with Prometheus' own list iterator (its Seek
// is the engine's to define).
func (s *series) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return storage.NewListSeriesIterator(samples{s})
}

// samples are a series' samples as the list iterator reads them; a
// pointer into the slice is a chunks.Sample without an allocation.
type samples struct{ s *series }

func (x samples) Get(i int) chunks.Sample { return &x.s.samples[i] }
func (x samples) Len() int                { return len(x.s.samples) }

// fsample is one float sample.
type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) ST() int64                     { return 0 }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }
