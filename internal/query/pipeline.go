package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/query/clean"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// Spec is a query's processing in the form users and URLs give it: unit
// conversion, a --where condition, an aggregate with an optional window,
// and a limit on the output. The zero value passes readings through.
type Spec struct {
	// Clean names the cleaner (package clean) readings pass through
	// first; TZ is the time zone it counts days in (IANA name; empty:
	// UTC).
	Clean string
	TZ    string
	Unit  string
	Where string
	Agg   string
	Every string
	Limit int
}

// Values adds the spec to URL parameters (unit, where, agg, every, limit).
func (s Spec) Values(v url.Values) {
	for k, val := range map[string]string{"clean": s.Clean, "tz": s.TZ, "unit": s.Unit, "where": s.Where, "agg": s.Agg, "every": s.Every} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if s.Limit > 0 {
		v.Set("limit", strconv.Itoa(s.Limit))
	}
}

// SpecFromValues reads a spec from URL parameters.
func SpecFromValues(v url.Values) (Spec, error) {
	s := Spec{Clean: v.Get("clean"), TZ: v.Get("tz"), Unit: v.Get("unit"), Where: v.Get("where"), Agg: v.Get("agg"), Every: v.Get("every")}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return s, fmt.Errorf("limit %q is not a whole number", l)
		}
		s.Limit = n
	}
	return s, nil
}

// Pipeline is a compiled Spec.
type Pipeline struct {
	clean *clean.Run
	unit  string
	where Cond
	agg   string
	aggr  Aggregation
	every time.Duration
	limit int
	since time.Time
	// extra is the members every aggregate result carries (agg, every),
	// one map shared by all results, which nothing changes.
	extra map[string]json.RawMessage
}

// Compile checks the spec and compiles it. since is the start of the
// queried range, the timestamp of whole-range aggregates (zero: the first
// reading's time).
func (s Spec) Compile(since time.Time) (*Pipeline, error) {
	p := &Pipeline{agg: s.Agg, limit: s.Limit, since: since}
	var loc *time.Location
	if s.TZ != "" {
		l, err := time.LoadLocation(s.TZ)
		if err != nil {
			return nil, fmt.Errorf("tz %q: want a zone name like Europe/Amsterdam or UTC", s.TZ)
		}
		loc = l
	}
	if s.Clean != "" {
		k, err := clean.Lookup(s.Clean)
		if err != nil {
			return nil, err
		}
		p.clean = clean.NewRun(k, clean.Options{Location: loc})
	} else if loc != nil {
		return nil, errors.New("tz needs clean (the cleaners count days in it)")
	}
	if s.Unit != "" {
		u, ok := schema.CanonicalUnit(s.Unit)
		if !ok {
			return nil, fmt.Errorf("unit: %w: %q", schema.ErrUnknownUnit, s.Unit)
		}
		p.unit = u
	}
	if s.Where != "" {
		c, err := ParseWhere(s.Where)
		if err != nil {
			return nil, err
		}
		p.where = c
	}
	if s.Agg != "" {
		a, ok := aggregations[s.Agg]
		if !ok {
			return nil, fmt.Errorf("agg %q: want one of %s", s.Agg, strings.Join(AggregateNames(), ", "))
		}
		p.aggr = a
	}
	if s.Every != "" {
		if s.Agg == "" {
			return nil, errors.New("every needs agg (e.g. --agg avg --every 1h)")
		}
		d, err := config.ParseDuration(s.Every)
		if err != nil || d < time.Millisecond {
			return nil, fmt.Errorf("every %q: want a window like 5m, 1h, 1d", s.Every)
		}
		p.every = d
	}
	if p.agg != "" {
		p.extra = map[string]json.RawMessage{"agg": json.RawMessage(strconv.Quote(p.agg))}
		if p.every > 0 {
			p.extra["every"] = json.RawMessage(strconv.Quote(formatEvery(p.every)))
		}
	}
	return p, nil
}

// errLimit ends a scan once the output limit is reached.
var errLimit = errors.New("limit reached")

// Run feeds the readings that scan produces (ordered by sensor, host,
// time) through the pipeline into out. Memory stays constant: one window
// per series at a time.
func (p *Pipeline) Run(scan func(fn func(*schema.Reading) error) error, out func(*schema.Reading) error) error {
	x := &pass{p: p, out: out}
	var err error
	if p.clean != nil {
		err = scan(func(r *schema.Reading) error { return p.clean.Add(r, x.reading) })
		if err == nil {
			err = p.clean.Flush(x.reading)
		}
	} else {
		err = scan(x.reading)
	}
	return x.finish(err)
}

// runParts is Run over readings and the sums of periods (see summable).
func (p *Pipeline) runParts(scan func(fn func(*store.Part) error) error, out func(*schema.Reading) error) error {
	x := &pass{p: p, out: out}
	return x.finish(scan(func(part *store.Part) error {
		if part.Sum != nil {
			return x.periodSum(part.Sum)
		}
		return x.reading(part.Reading)
	}))
}

// pass is one run of a pipeline: the open window and the output count.
type pass struct {
	p   *Pipeline
	out func(*schema.Reading) error
	n   int
	w   *window
}

func (x *pass) emit(r *schema.Reading) error {
	if err := x.out(r); err != nil {
		return err
	}
	x.n++
	if x.p.limit > 0 && x.n >= x.p.limit {
		return errLimit
	}
	return nil
}

func (x *pass) reading(r *schema.Reading) error {
	p := x.p
	if p.unit != "" {
		convert(r, p.unit)
	}
	v, numeric := schema.Numeric(r.Value)
	if p.where != nil && (r.Error != nil || !numeric || !p.where(v)) {
		return nil
	}
	if p.agg == "" {
		return x.emit(r)
	}
	if r.Error != nil || !numeric {
		return nil
	}
	w, err := x.window(r.Host, r.Sensor, r.Time)
	if err != nil {
		return err
	}
	w.add(r, v)
	return nil
}

func (x *pass) periodSum(ps *store.PeriodSum) error {
	if ps.Count == 0 {
		return nil
	}
	w, err := x.window(ps.Host, ps.Sensor, ps.Start)
	if err != nil {
		return err
	}
	w.addSum(ps)
	return nil
}

// window returns the open window for a reading of host and sensor at t,
// first emitting the one before when it is another series' or ends
// before t.
func (x *pass) window(host, sensor string, t time.Time) (*window, error) {
	p := x.p
	start := p.since
	if p.every > 0 {
		start = time.UnixMilli(t.UnixMilli() - mod(t.UnixMilli(), p.every.Milliseconds())).UTC()
	}
	if w := x.w; w != nil && (w.host != host || w.sensor != sensor || p.every > 0 && !w.start.Equal(start)) {
		x.w = nil
		if err := x.emit(w.result(p)); err != nil {
			return nil, err
		}
	}
	if x.w == nil {
		x.w = &window{host: host, sensor: sensor, start: start, agg: p.aggr.New()}
	}
	return x.w, nil
}

func (x *pass) finish(err error) error {
	if err == nil && x.w != nil {
		err = x.emit(x.w.result(x.p))
	}
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// convert rewrites a quantity reading into unit when the units are
// compatible; other readings are left as they are.
func convert(r *schema.Reading, unit string) {
	q, ok := schema.ParseQuantity(r.Value)
	if !ok {
		return
	}
	m, err := schema.ConvertUnit(q.Magnitude, q.Unit, unit)
	if err != nil {
		return
	}
	r.Value = schema.Quantity{Magnitude: round(m), Unit: unit}.Raw()
	r.Human = schema.Format(r.Sensor, r.Value)
}

// round drops float noise from conversions (21.2 °C → 70.16 °F, not
// 70.16000000000001).
func round(f float64) float64 {
	if f == 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return f
	}
	s := strconv.FormatFloat(f, 'g', 12, 64)
	r, _ := strconv.ParseFloat(s, 64)
	return r
}

// window is one series' readings of one aggregation window.
type window struct {
	host, sensor string
	start        time.Time
	unit         string
	first        schema.Reading
	n            int
	agg          Aggregate
}

func (w *window) add(r *schema.Reading, v float64) {
	if w.n == 0 {
		if q, ok := schema.ParseQuantity(r.Value); ok {
			w.unit = q.Unit
		}
		w.first = *r
	}
	w.n++
	w.agg.Add(r, v)
}

// addSum adds the sum of a period as add would add its readings. Only a
// pipeline whose aggregate makes SumAggregates is given sums (see
// Pipeline.summable).
func (w *window) addSum(ps *store.PeriodSum) {
	if w.n == 0 {
		w.unit = ps.Unit
		w.first = schema.Reading{Host: ps.Host, Sensor: ps.Sensor, Title: ps.Title, Time: ps.Start}
	}
	w.n += int(ps.Count)
	w.agg.(SumAggregate).AddSum(ps.Count, ps.Sum)
}

// result is the window's aggregate as a reading. Without --every an
// aggregate that picks a reading gives the reading itself, with its own
// time.
func (w *window) result(p *Pipeline) *schema.Reading {
	res := w.agg.Result()
	extra := p.extra
	if res.Reading != nil && p.every == 0 {
		r := *res.Reading
		r.Seq, r.Extra = 0, extra
		return &r
	}
	mag, unit := round(res.Value), w.unit
	if p.aggr.Unitless {
		unit = ""
	}
	var value json.RawMessage
	if unit != "" {
		value = schema.Quantity{Magnitude: mag, Unit: unit}.Raw()
	} else {
		value = json.RawMessage(strconv.FormatFloat(mag, 'f', -1, 64))
	}
	t := w.start
	if t.IsZero() {
		t = w.first.Time
	}
	r := &schema.Reading{Host: w.host, Sensor: w.sensor, Title: w.first.Title, Time: t, Value: value, Extra: extra}
	if !p.aggr.Unitless {
		r.Human = schema.Format(w.sensor, value)
	}
	return r
}

func formatEvery(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	// time.Duration writes 30m as 30m0s and 1h as 1h0m0s: drop the zero
	// units after the first, never a digit of a unit (30m is not "3").
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Execute runs the query q on src with the processing of spec and writes
// the results to out. q.Limit is ignored: spec.Limit bounds the output.
// An aggregate that sums can answer (SumAggregate: a mean, sum or count)
// over windows that are whole multiples of store.SummaryPeriod is
// answered from the engine's sums where it keeps them (store.Summarizer):
// the same results, without decoding every reading.
func Execute(src store.Reader, q store.Query, spec Spec, out func(*schema.Reading) error) error {
	p, err := spec.Compile(q.Since)
	if err != nil {
		return err
	}
	q.Limit = 0
	if sz, ok := src.(store.Summarizer); ok && p.summable() {
		return p.runParts(func(fn func(*store.Part) error) error { return sz.ScanSummarized(q, fn) }, out)
	}
	return p.Run(func(fn func(*schema.Reading) error) error { return src.Scan(q, fn) }, out)
}

// summable reports whether sums of periods give the pipeline's exact
// results: an aggregate that can be answered from sums (SumAggregate), in
// windows of whole periods, of the readings as stored (no cleaner,
// condition or conversion).
func (p *Pipeline) summable() bool {
	return p.aggr.FromSums() && p.clean == nil && p.where == nil && p.unit == "" && p.every > 0 && p.every%store.SummaryPeriod == 0
}
