// Package promapi is the Prometheus-compatible read API at
// /prometheus/api/v1/: PromQL evaluated by the Prometheus engine itself
// over the store, so Grafana's Prometheus data source, promtool and
// anything else that reads Prometheus' HTTP API read apd unchanged.
//
// A reading of sensor s from host h is a sample of the series
// {__name__="s", host="h", unit="u"}: a quantity as its magnitude in the
// stored unit u, a plain number as itself (no unit label), a boolean as
// 0 or 1. Readings that failed or hold text, lists or objects are not
// samples.
package promapi

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// Defaults of Options.
const (
	// DefaultMaxSamples bounds the samples one query holds, both those
	// the store loads and those the engine keeps at once: 16 bytes each
	// in the loaded series, about 80 MB at the bound.
	DefaultMaxSamples = 5_000_000
	// DefaultTimeout ends a query's evaluation.
	DefaultTimeout = 2 * time.Minute
	// DefaultMaxQueries bounds the queries evaluated at once; more wait
	// for a turn until their timeout.
	DefaultMaxQueries = 4
	// DefaultLookback is how far before a step a plain selector looks for
	// a sample: Prometheus' five minutes.
	DefaultLookback = 5 * time.Minute
	// MaxPoints bounds a range query's steps, as Prometheus does (11,000).
	MaxPoints = 11000
)

// CompatibleVersion is the Prometheus release whose HTTP API this one
// answers like: status/buildinfo reports it, since clients such as
// Grafana choose the API features they use from the version.
const CompatibleVersion = "2.53.0"

// Options configure the API. Zero values mean the defaults.
type Options struct {
	MaxSamples int
	Timeout    time.Duration
	MaxQueries int
	// Version is apd's, reported beside CompatibleVersion.
	Version string
	Logger  *slog.Logger
	// Registerer, when set, takes the engine's metrics
	// (prometheus_engine_*).
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// API serves the read API. Build it with New; Close stops its engine.
type API struct {
	st     store.Reader
	opts   Options
	engine *promql.Engine
	parser parser.Parser
	slots  chan struct{}
	mux    *http.ServeMux
}

// New returns the API over st.
func New(st store.Reader, opts Options) *API {
	opts.MaxSamples = cmp.Or(opts.MaxSamples, DefaultMaxSamples)
	opts.Timeout = cmp.Or(opts.Timeout, DefaultTimeout)
	opts.MaxQueries = cmp.Or(opts.MaxQueries, DefaultMaxQueries)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := parser.NewParser(parser.Options{})
	a := &API{st: st, opts: opts, parser: p, slots: make(chan struct{}, opts.MaxQueries)}
	a.engine = promql.NewEngine(promql.EngineOpts{
		Logger:               opts.Logger,
		Reg:                  opts.Registerer,
		MaxSamples:           opts.MaxSamples,
		Timeout:              opts.Timeout,
		LookbackDelta:        DefaultLookback,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               p,
	})
	mux := http.NewServeMux()
	const base = "/prometheus/api/v1/"
	for _, r := range []struct {
		path string
		h    http.HandlerFunc
	}{
		{"query", a.query},
		{"query_range", a.queryRange},
		{"labels", a.labelNames},
		{"label/{name}/values", a.labelValues},
		{"series", a.series},
		{"metadata", a.metadata},
		{"status/buildinfo", a.buildInfo},
		// Grafana asks these of every Prometheus data source; apd keeps
		// no exemplars and its rules are not Prometheus' rules.
		{"query_exemplars", func(w http.ResponseWriter, _ *http.Request) { writeData(w, []any{}, nil) }},
		{"rules", func(w http.ResponseWriter, _ *http.Request) { writeData(w, map[string]any{"groups": []any{}}, nil) }},
		{"alerts", func(w http.ResponseWriter, _ *http.Request) { writeData(w, map[string]any{"alerts": []any{}}, nil) }},
	} {
		mux.HandleFunc("GET "+base+r.path, r.h)
		mux.HandleFunc("POST "+base+r.path, r.h)
	}
	mux.HandleFunc(base, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorNotFound, fmt.Errorf("%s is not part of apd's Prometheus API", r.URL.Path))
	})
	a.mux = mux
	return a
}

// Close stops the engine.
func (a *API) Close() error { return a.engine.Close() }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Prometheus' error types, which clients read to tell a bad query from a
// failing server.
const (
	errorBadData   = "bad_data"
	errorExec      = "execution"
	errorTimeout   = "timeout"
	errorCanceled  = "canceled"
	errorInternal  = "internal"
	errorNotFound  = "not_found"
	statusSuccess  = "success"
	statusError    = "error"
	maxFormBytes   = 1 << 20
	maxWarningsOut = 10
)

type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

func writeData(w http.ResponseWriter, data any, warnings []string) {
	write(w, http.StatusOK, response{Status: statusSuccess, Data: data, Warnings: warnings})
}

func writeError(w http.ResponseWriter, typ string, err error) {
	status := http.StatusInternalServerError
	switch typ {
	case errorBadData:
		status = http.StatusBadRequest
	case errorExec:
		status = http.StatusUnprocessableEntity
	case errorTimeout:
		status = http.StatusServiceUnavailable
	case errorCanceled:
		status = 499
	case errorNotFound:
		status = http.StatusNotFound
	}
	write(w, status, response{Status: statusError, ErrorType: typ, Error: err.Error()})
}

func write(w http.ResponseWriter, status int, r response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(r)
}

// form parses the query string and, for a POST, its form-encoded body
// (how Grafana sends queries), within maxFormBytes.
func form(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("parse form: %w", err)
	}
	return nil
}

// parseTime reads Prometheus' time arguments: Unix seconds with a
// fraction, or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration reads a step or timeout: seconds with a fraction, or a
// Prometheus duration (5m, 1h30m).
func (a *API) parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f <= 0 || f > float64(math.MaxInt64/int64(time.Second)) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := model.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
	}
	return time.Duration(d), nil
}

// timeArg reads the time argument name, or def when it is absent.
func timeArg(r *http.Request, name string, def time.Time) (time.Time, error) {
	s := r.Form.Get(name)
	if s == "" {
		return def, nil
	}
	t, err := parseTime(s)
	if err != nil {
		return t, fmt.Errorf("invalid parameter %q: %w", name, err)
	}
	return t, nil
}

// evaluation is one query's store view and its bookkeeping.
func (a *API) evaluation() (queryable, *atomic.Bool) {
	budget := new(atomic.Int64)
	budget.Store(int64(a.opts.MaxSamples))
	summarised := new(atomic.Bool)
	return queryable{st: a.st, maxSamples: a.opts.MaxSamples, summaries: true, budget: budget, summarised: summarised}, summarised
}

// turn waits for one of the MaxQueries slots until ctx ends.
func (a *API) turn(ctx context.Context) (func(), error) {
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for one of %d query slots: %w", cap(a.slots), ctx.Err())
	}
}

func (a *API) timeout(r *http.Request) (context.Context, context.CancelFunc, error) {
	d := a.opts.Timeout
	if s := r.Form.Get("timeout"); s != "" {
		t, err := a.parseDuration(s)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid parameter \"timeout\": %w", err)
		}
		d = min(d, t)
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return ctx, cancel, nil
}

func (a *API) query(w http.ResponseWriter, r *http.Request) {
	if err := form(w, r); err != nil {
		writeError(w, errorBadData, err)
		return
	}
	ts, err := timeArg(r, "time", a.opts.Now())
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	a.evaluate(w, r, func(ctx context.Context, qy queryable) (promql.Query, error) {
		return a.engine.NewInstantQuery(ctx, qy, nil, r.Form.Get("query"), ts)
	})
}

func (a *API) queryRange(w http.ResponseWriter, r *http.Request) {
	if err := form(w, r); err != nil {
		writeError(w, errorBadData, err)
		return
	}
	start, end, step, err := a.rangeArgs(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	a.evaluate(w, r, func(ctx context.Context, qy queryable) (promql.Query, error) {
		return a.engine.NewRangeQuery(ctx, qy, nil, r.Form.Get("query"), start, end, step)
	})
}

// rangeArgs reads query_range's start, end and step, as Prometheus
// checks them.
func (a *API) rangeArgs(r *http.Request) (start, end time.Time, step time.Duration, err error) {
	for _, arg := range []struct {
		name string
		t    *time.Time
	}{{"start", &start}, {"end", &end}} {
		if *arg.t, err = timeArg(r, arg.name, time.Time{}); err != nil {
			return
		}
		if arg.t.IsZero() {
			err = fmt.Errorf("invalid parameter %q: missing", arg.name)
			return
		}
	}
	if step, err = a.parseDuration(r.Form.Get("step")); err != nil {
		err = fmt.Errorf("invalid parameter \"step\": %w", err)
		return
	}
	switch {
	case end.Before(start):
		err = errors.New("end timestamp must not be before start time")
	case end.Sub(start)/step >= MaxPoints:
		err = fmt.Errorf("exceeded maximum resolution of %d points per timeseries: try decreasing the query resolution (?step=XX)", MaxPoints)
	}
	return
}

// evaluate makes a query over a fresh view of the store within the
// request's timeout and answers with its result.
func (a *API) evaluate(w http.ResponseWriter, r *http.Request, newQuery func(context.Context, queryable) (promql.Query, error)) {
	ctx, cancel, err := a.timeout(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	defer cancel()
	qy, summarised := a.evaluation()
	q, err := newQuery(ctx, qy)
	if err != nil {
		writeError(w, errorBadData, fmt.Errorf("invalid parameter \"query\": %w", err))
		return
	}
	a.run(ctx, w, q, summarised)
}

// run evaluates q in a turn and writes its result in Prometheus' shape.
func (a *API) run(ctx context.Context, w http.ResponseWriter, q promql.Query, summarised *atomic.Bool) {
	defer q.Close()
	release, err := a.turn(ctx)
	if err != nil {
		writeError(w, errorTimeout, err)
		return
	}
	defer release()
	res := q.Exec(ctx)
	if res.Err != nil {
		writeError(w, errorType(res.Err), res.Err)
		return
	}
	warnings, infos := res.Warnings.AsStrings(q.String(), maxWarningsOut, maxWarningsOut)
	if summarised.Load() {
		infos = append(infos, fmt.Sprintf("long range: each step shows the mean of the %s before it, from the stored sums (a step below %s shows the readings themselves)",
			store.SummaryPeriod, store.SummaryPeriod))
	}
	if m, ok := res.Value.(promql.Matrix); ok && len(m) > 0 {
		writeMatrix(w, m, warnings, infos)
		return
	}
	write(w, http.StatusOK, response{Status: statusSuccess, Warnings: warnings, Infos: infos,
		Data: map[string]any{"resultType": res.Value.Type(), "result": resultValue(res.Value)}})
}

// writeMatrix writes a range query's answer by hand: through
// encoding/json (reflection and a MarshalJSON per point) it took a
// quarter of a 1,000,000-reading query's time (BenchmarkPromQL).
func writeMatrix(w http.ResponseWriter, m promql.Matrix, warnings, infos []string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, 0, 256)
	buf = append(buf, `{"status":"success","data":{"resultType":"matrix","result":[`...)
	for i, s := range m {
		if i > 0 {
			buf = append(buf, ',')
		}
		metric, _ := s.Metric.MarshalJSON()
		buf = append(buf, `{"metric":`...)
		buf = append(buf, metric...)
		buf = append(buf, `,"values":[`...)
		for j, p := range s.Floats {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '[')
			buf = appendTimestamp(buf, p.T)
			buf = append(buf, ',', '"')
			buf = appendValue(buf, p.F)
			buf = append(buf, '"', ']')
			if len(buf) > 32<<10 {
				_, _ = bw.Write(buf)
				buf = buf[:0]
			}
		}
		buf = append(buf, ']', '}')
	}
	buf = append(buf, ']', '}')
	for _, notes := range []struct {
		key  string
		list []string
	}{{"warnings", warnings}, {"infos", infos}} {
		if len(notes.list) > 0 {
			b, _ := json.Marshal(notes.list)
			buf = append(buf, `,"`+notes.key+`":`...)
			buf = append(buf, b...)
		}
	}
	buf = append(buf, '}', '\n')
	_, _ = bw.Write(buf)
	_ = bw.Flush()
}

// appendTimestamp writes a millisecond time as Prometheus does: seconds,
// with the milliseconds as a fraction when there are any.
func appendTimestamp(b []byte, ms int64) []byte {
	if ms < 0 {
		b = append(b, '-')
		ms = -ms
	}
	sec, frac := ms/1000, ms%1000
	b = strconv.AppendInt(b, sec, 10)
	if frac == 0 {
		return b
	}
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	for b[len(b)-1] == '0' {
		b = b[:len(b)-1]
	}
	return b
}

// appendValue writes a sample's value as Prometheus does.
func appendValue(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

// resultValue is what "result" holds: an empty list, not null, when
// nothing matched, as clients expect.
func resultValue(v parser.Value) any {
	switch v := v.(type) {
	case promql.Matrix:
		if v == nil {
			return []any{}
		}
	case promql.Vector:
		if v == nil {
			return []any{}
		}
	}
	return v
}

func errorType(err error) string {
	var (
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
		storeErr promql.ErrStorage
	)
	switch {
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return errorTimeout
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return errorCanceled
	case errors.Is(err, ErrTooManySamples):
		return errorExec
	case errors.As(err, &storeErr):
		return errorInternal
	}
	return errorExec
}

// matcherSets parses the match[] arguments.
func (a *API) matcherSets(r *http.Request) ([][]*labels.Matcher, error) {
	var sets [][]*labels.Matcher
	for _, s := range r.Form["match[]"] {
		ms, err := a.parser.ParseMetricSelector(s)
		if err != nil {
			return nil, fmt.Errorf("invalid parameter \"match[]\": %w", err)
		}
		sets = append(sets, ms)
	}
	return sets, nil
}

// labelQuerier opens the store for the start and end arguments (all time
// when absent) and the match[] sets.
func (a *API) labelQuerier(w http.ResponseWriter, r *http.Request) (*querier, [][]*labels.Matcher, bool) {
	if err := form(w, r); err != nil {
		writeError(w, errorBadData, err)
		return nil, nil, false
	}
	start, err := timeArg(r, "start", time.UnixMilli(math.MinInt64/2))
	var end time.Time
	if err == nil {
		end, err = timeArg(r, "end", time.UnixMilli(math.MaxInt64/2))
	}
	var sets [][]*labels.Matcher
	if err == nil {
		sets, err = a.matcherSets(r)
	}
	if err != nil {
		writeError(w, errorBadData, err)
		return nil, nil, false
	}
	qy, _ := a.evaluation()
	q, _ := qy.Querier(start.UnixMilli(), end.UnixMilli())
	return q.(*querier), sets, true
}

// limitArg reads the limit argument (0: none).
func limitArg(r *http.Request) (int, error) {
	s := r.Form.Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid parameter \"limit\": %q is not a count", s)
	}
	return n, nil
}

func (a *API) labelNames(w http.ResponseWriter, r *http.Request) {
	a.labelList(w, r, func(q *querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, error) {
		names, _, err := q.LabelNames(r.Context(), hints, ms...)
		return names, err
	})
}

func (a *API) labelValues(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	// Prometheus 3 clients escape names that are not plain identifiers.
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	a.labelList(w, r, func(q *querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, error) {
		values, _, err := q.LabelValues(r.Context(), name, hints, ms...)
		return values, err
	})
}

// labelList answers with the union of what list gives for each match[]
// set (or for every series), sorted, within the limit argument.
func (a *API) labelList(w http.ResponseWriter, r *http.Request, list func(*querier, *storage.LabelHints, []*labels.Matcher) ([]string, error)) {
	q, sets, ok := a.labelQuerier(w, r)
	if !ok {
		return
	}
	lim, err := limitArg(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	hints := &storage.LabelHints{Limit: lim}
	union := map[string]bool{}
	for _, ms := range orAll(sets) {
		got, err := list(q, hints, ms)
		if err != nil {
			writeError(w, errorType(err), err)
			return
		}
		for _, v := range got {
			union[v] = true
		}
	}
	writeData(w, sorted(union, lim), nil)
}

func (a *API) series(w http.ResponseWriter, r *http.Request) {
	q, sets, ok := a.labelQuerier(w, r)
	if !ok {
		return
	}
	if len(sets) == 0 {
		writeError(w, errorBadData, errors.New("no match[] parameter provided"))
		return
	}
	lim, err := limitArg(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	seen := map[string]bool{}
	out := []labels.Labels{}
	for _, ms := range sets {
		lsets, err := q.labelSets(r.Context(), ms)
		if err != nil {
			writeError(w, errorType(err), err)
			return
		}
		for _, ls := range lsets {
			if k := ls.String(); !seen[k] {
				seen[k] = true
				out = append(out, ls)
			}
		}
	}
	slices.SortFunc(out, labels.Compare)
	if lim > 0 && len(out) > lim {
		out = out[:lim]
	}
	writeData(w, out, nil)
}

// metadata answers every sensor as a gauge, helped by its title.
func (a *API) metadata(w http.ResponseWriter, r *http.Request) {
	if err := form(w, r); err != nil {
		writeError(w, errorBadData, err)
		return
	}
	lim, err := limitArg(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	hosts, err := a.st.Hosts()
	if err != nil {
		writeError(w, errorInternal, err)
		return
	}
	want := r.Form.Get("metric")
	type meta struct {
		Type string `json:"type"`
		Help string `json:"help"`
		Unit string `json:"unit"`
	}
	out := map[string][]meta{}
	for _, h := range hosts {
		for s, stats := range h.Sensors {
			if (want != "" && s != want) || out[s] != nil {
				continue
			}
			// The help is the title of the sensor's last reading on the
			// first host that has it: one seek a sensor.
			help := s
			_ = a.st.Scan(store.Query{Sensor: s, Hosts: []string{h.Name}, Since: stats.Last, Limit: 1}, func(r *schema.Reading) error {
				if r.Title != "" {
					help = r.Title
				}
				return store.ErrStop
			})
			out[s] = []meta{{Type: "gauge", Help: help}}
		}
	}
	if lim > 0 && len(out) > lim {
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range out {
				if !yield(k) {
					return
				}
			}
		})
		for _, n := range names[lim:] {
			delete(out, n)
		}
	}
	writeData(w, out, nil)
}

func (a *API) buildInfo(w http.ResponseWriter, _ *http.Request) {
	writeData(w, map[string]string{
		"version":   CompatibleVersion,
		"revision":  "apd " + a.opts.Version,
		"branch":    "",
		"buildUser": "",
		"buildDate": "",
		"goVersion": runtime.Version(),
	}, nil)
}

// orAll is sets, or one empty set (every series) when there is none.
func orAll(sets [][]*labels.Matcher) [][]*labels.Matcher {
	if len(sets) == 0 {
		return [][]*labels.Matcher{nil}
	}
	return sets
}

func sorted(set map[string]bool, lim int) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	if lim > 0 && len(out) > lim {
		out = out[:lim]
	}
	return out
}
