// Package influxline takes InfluxDB line protocol over HTTP into the
// aggregator, as InfluxDB 1.8 answers it: POST /write (1.x), POST
// /api/v2/write (2.x), GET|HEAD /ping and GET /health, so Telegraf's
// outputs.influxdb and outputs.influxdb_v2 and the influx CLI write to
// apd unchanged.
//
// Every field of a point becomes a reading (the mapping is in name.go and
// docs/integrations/telegraf.md), stamped with the point's time or, for a
// point without one, the time the request arrived. A write is answered
// 204 only after every reading of it is committed. A line that cannot be
// stored (bad syntax, no host, a name that cannot be made valid) is a
// dead letter with its reason, labelled with the endpoint and its line
// number; the other lines of the body are stored, and the answer is 400
// naming the lines, in InfluxDB's error shape with "partial write" in the
// message (Telegraf then drops the batch instead of retrying it).
//
// Lines are split at '\n': a string field holding a newline must escape
// it, as InfluxDB's clients do.
package influxline

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/schema"
)

// Defaults of Options.
const (
	// DefaultHostTag is the tag naming a point's host: Telegraf's.
	DefaultHostTag = "host"
	// DefaultMaxBytes bounds a request body, compressed and
	// decompressed: 32 MiB, above InfluxDB 1.x's 25 MB and about 300,000
	// of Telegraf's lines (its batches are 1,000).
	DefaultMaxBytes = 32 << 20
	// DefaultMaxConcurrent bounds the bodies held at once; with
	// DefaultMaxBytes that is at most 128 MiB of bodies.
	DefaultMaxConcurrent = 4
	// DefaultVersion is what /ping and /health say: the InfluxDB whose
	// write API apd answers like (1.8 serves /write and /api/v2/write).
	DefaultVersion = "1.8.10"
)

// maxLinesNamed bounds the bad lines a 400's message names one by one.
const maxLinesNamed = 10

// Options configure a Handler.
type Options struct {
	// Ingester takes the readings.
	Ingester Ingester
	// HostTag names the tag holding a point's host; "" means
	// DefaultHostTag.
	HostTag string
	// DefaultHost is the host of a point without the host tag; "" makes
	// such a point a dead letter.
	DefaultHost string
	// MaxBytes bounds a body, compressed and decompressed (413 beyond);
	// 0 means DefaultMaxBytes.
	MaxBytes int64
	// MaxConcurrent bounds the writes read and submitted at once (more
	// wait their turn); 0 means DefaultMaxConcurrent.
	MaxConcurrent int
	// Version is the InfluxDB version /ping and /health report; ""
	// means DefaultVersion.
	Version string
	// Now is the clock stamping points without a time; nil means
	// time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Handler serves InfluxDB's write API.
type Handler struct {
	opts  Options
	log   *slog.Logger
	slots chan struct{}
}

// New returns a Handler for opts.
func New(opts Options) *Handler {
	opts.HostTag = cmp.Or(opts.HostTag, DefaultHostTag)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultMaxBytes)
	opts.MaxConcurrent = cmp.Or(opts.MaxConcurrent, DefaultMaxConcurrent)
	opts.Version = cmp.Or(opts.Version, DefaultVersion)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{opts: opts, log: log, slots: make(chan struct{}, opts.MaxConcurrent)}
}

// ServeHTTP answers /write, /api/v2/write, /ping and /health.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ping":
		h.versionHeaders(w)
		w.WriteHeader(http.StatusNoContent)
	case "/health":
		h.versionHeaders(w)
		writeJSON(w, http.StatusOK, map[string]any{"name": "influxdb", "message": "ready for queries and writes",
			"status": "pass", "checks": []any{}, "version": h.opts.Version})
	case "/write", "/api/v2/write":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, r, http.StatusMethodNotAllowed, "method not allowed", "write with POST")
			return
		}
		h.write(w, r)
	case "/query":
		h.query(w, r)
	default:
		writeError(w, r, http.StatusNotFound, "not found", "no such endpoint: "+r.URL.Path)
	}
}

// query answers the InfluxQL that writers send before writing, and only
// that: Telegraf's outputs.influxdb creates its database, the influx CLI
// checks one with SHOW DATABASES on `use` and sends whatever it reads
// from a pipe here. There is one database, apd; every other statement
// is answered with an error naming where apd's readings are read, in
// InfluxDB's per-statement shape (status 200), which the CLI prints as
// "ERR: …".
func (h *Handler) query(w http.ResponseWriter, r *http.Request) {
	h.versionHeaders(w)
	r.Body = http.MaxBytesReader(w, r.Body, maxQueryBytes)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "parse query: " + err.Error()})
		return
	}
	type statement struct {
		ID     int              `json:"statement_id"`
		Series []map[string]any `json:"series,omitempty"`
		Error  string           `json:"error,omitempty"`
	}
	var results []statement
	for i, stmt := range splitStatements(r.Form.Get("q")) {
		res := statement{ID: i}
		upper := strings.ToUpper(strings.Join(strings.Fields(stmt), " "))
		switch {
		case strings.HasPrefix(upper, "CREATE DATABASE "), strings.HasPrefix(upper, "CREATE RETENTION POLICY "):
			// Every database is apd's one store: nothing to create.
		case upper == "SHOW DATABASES":
			res.Series = []map[string]any{{"name": "databases", "columns": []string{"name"}, "values": [][]string{{"apd"}}}}
		default:
			res.Error = "apd takes writes here and answers no InfluxQL: read with PromQL at /prometheus/api/v1/query or with apd query"
		}
		results = append(results, res)
	}
	if len(results) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "missing required parameter \"q\""})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// maxQueryBytes bounds a /query body: the statements writers send are short.
const maxQueryBytes = 64 << 10

// splitStatements splits InfluxQL at semicolons outside quotes.
func splitStatements(q string) []string {
	var out []string
	var quote rune
	start := 0
	for i, c := range q {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == ';':
			out = append(out, q[start:i])
			start = i + 1
		}
	}
	out = append(out, q[start:])
	return slices.DeleteFunc(out, func(s string) bool { return strings.TrimSpace(s) == "" })
}

func (h *Handler) versionHeaders(w http.ResponseWriter) {
	w.Header().Set("X-Influxdb-Version", h.opts.Version)
	w.Header().Set("X-Influxdb-Build", "apd")
}

// write takes one body of lines.
func (h *Handler) write(w http.ResponseWriter, r *http.Request) {
	h.versionHeaders(w)
	unit, err := precision(r.URL.Query().Get("precision"))
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	case <-r.Context().Done():
		return
	}
	body, status, err := ReadBody(w, r, h.opts.MaxBytes)
	if err != nil {
		writeError(w, r, status, statusCode(status), err.Error())
		return
	}
	res := h.submit(body, r.URL.Path, unit, h.opts.Now())
	if res.closed {
		writeError(w, r, http.StatusServiceUnavailable, "unavailable", "the aggregator is shutting down; write again")
		return
	}
	if err := res.pending.Wait(r.Context()); err != nil {
		return // the client is gone
	}
	if len(res.bad) > 0 {
		h.log.Debug("line protocol lines not stored", "endpoint", r.URL.Path, "bad", len(res.bad), "lines", res.lines)
		writeError(w, r, http.StatusBadRequest, "invalid", res.message())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// result is what became of a body's lines.
type result struct {
	pending *Pending
	lines   int       // lines holding a point
	bad     []badLine // lines not stored (in full), in order
	closed  bool      // the ingester closed before every line was submitted
}

type badLine struct {
	n   int
	err error
}

// message is a 400's: the bad lines, the first few by number and reason.
func (res result) message() string {
	var b strings.Builder
	b.WriteString("partial write: ")
	for i, l := range res.bad {
		if i == maxLinesNamed {
			fmt.Fprintf(&b, "; and %d more lines", len(res.bad)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "line %d: %v", l.n, l.err)
	}
	fmt.Fprintf(&b, " (%d of %d lines not stored", len(res.bad), res.lines)
	if len(res.bad) < res.lines {
		b.WriteString(", the others were")
	}
	b.WriteString("; see apd deadletters)")
	return b.String()
}

// submit decodes body line by line and submits every reading, received
// at now; endpoint labels the dead letters.
func (h *Handler) submit(body []byte, endpoint string, unit time.Duration, now time.Time) result {
	res := result{pending: NewPending(h.opts.Ingester)}
	for n := 1; len(body) > 0; n++ {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if t := bytes.TrimLeft(line, " \t"); len(t) == 0 || t[0] == '#' {
			continue
		}
		res.lines++
		label := fmt.Sprintf("%s line %d", endpoint, n)
		readings, reason, err := h.decodeLine(line, unit)
		if err != nil {
			res.bad = append(res.bad, badLine{n, err})
			_, serr := res.pending.Submit(ingest.Submission{Undecodable: &ingest.Undecodable{Reason: reason, Err: err},
				Topic: label, Payload: line, Received: now})
			if serr != nil {
				res.closed = true
				return res
			}
			continue
		}
		var rejected []string
		for i := range readings {
			out, serr := res.pending.Submit(ingest.Submission{Reading: &readings[i], Topic: label, Payload: line, Received: now})
			if serr != nil {
				res.closed = true
				return res
			}
			if out == ingest.Rejected {
				rejected = append(rejected, readings[i].Sensor)
			}
		}
		if len(rejected) > 0 {
			res.bad = append(res.bad, badLine{n, fmt.Errorf("refused by the aggregator (time window or series bound): %s", strings.Join(rejected, ", "))})
		}
	}
	return res
}

// decodeLine turns one line into its readings, one per field, or says
// why it cannot (with the dead-letter reason).
func (h *Handler) decodeLine(line []byte, unit time.Duration) (readings []schema.Reading, reason string, err error) {
	if !utf8.Valid(line) {
		return nil, ingest.ReasonInvalidUTF8, errors.New("not valid UTF-8")
	}
	dec := lineprotocol.NewDecoderWithBytes(line)
	if !dec.Next() {
		return nil, ingest.ReasonInvalid, errors.New("no point")
	}
	m, err := dec.Measurement()
	if err != nil {
		return nil, ingest.ReasonInvalid, syntaxError(err)
	}
	type tag struct{ key, value string }
	var tags []tag
	host := ""
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return nil, ingest.ReasonInvalid, syntaxError(err)
		}
		if k == nil {
			break
		}
		if string(k) == h.opts.HostTag {
			host = HostName(string(v))
			continue
		}
		tags = append(tags, tag{string(k), string(v)})
	}
	slices.SortFunc(tags, func(a, b tag) int { return strings.Compare(a.key, b.key) })
	type field struct {
		key string
		val lineprotocol.Value
	}
	var fields []field
	for {
		k, v, err := dec.NextField()
		if err != nil {
			return nil, ingest.ReasonInvalid, syntaxError(err)
		}
		if k == nil {
			break
		}
		fields = append(fields, field{string(k), v})
	}
	tb, err := dec.TimeBytes()
	if err != nil {
		return nil, ingest.ReasonInvalid, syntaxError(err)
	}
	var ts time.Time
	if tb != nil {
		if ts, err = timestamp(tb, unit); err != nil {
			return nil, ingest.ReasonInvalid, err
		}
	}
	if dec.Next() {
		return nil, ingest.ReasonInvalid, errors.New("more than one point on the line")
	}
	if host == "" {
		if h.opts.DefaultHost == "" {
			return nil, ingest.ReasonInvalidName, fmt.Errorf("no %q tag naming the host (add one, or configure a default host)", h.opts.HostTag)
		}
		host = h.opts.DefaultHost
	}
	parts := make([]string, 2, 2+len(tags))
	parts[0] = string(m)
	for _, t := range tags {
		parts = append(parts, t.value)
	}
	readings = make([]schema.Reading, 0, len(fields))
	// One buffer for the line's values: the ingester holds them until
	// the commit, so it is never reused.
	buf := make([]byte, 0, 16*len(fields))
	for _, f := range fields {
		parts[1] = f.key
		sensor, err := FoldName(parts...)
		if err != nil {
			return nil, ingest.ReasonInvalidName, fmt.Errorf("field %q: sensor: %w", f.key, err)
		}
		start := len(buf)
		buf = appendValue(buf, f.val, UnitOf(f.key))
		readings = append(readings, schema.Reading{Host: host, Sensor: sensor, Time: ts, Value: buf[start:len(buf):len(buf)]})
	}
	return readings, "", nil
}

// appendValue appends v as apd's JSON value: a number (a quantity when
// the field names a unit), a bool or a string.
func appendValue(b []byte, v lineprotocol.Value, unit string) []byte {
	var num []byte
	switch v.Kind() {
	case lineprotocol.Int:
		num = strconv.AppendInt(nil, v.IntV(), 10)
	case lineprotocol.Uint:
		num = strconv.AppendUint(nil, v.UintV(), 10)
	case lineprotocol.Float:
		num = AppendFloat(nil, v.FloatV()) // the decoder refuses NaN and ±Inf
	case lineprotocol.Bool:
		return strconv.AppendBool(b, v.BoolV())
	default:
		raw, _ := json.Marshal(v.StringV())
		return append(b, raw...)
	}
	return Quantity(b, num, unit)
}

// syntaxError is a decoder's error without its line number, which is
// always 1 (a line is decoded alone) and named by the caller.
func syntaxError(err error) error {
	var de *lineprotocol.DecodeError
	if errors.As(err, &de) {
		return fmt.Errorf("column %d: %w", de.Column, de.Err)
	}
	return err
}

// precision returns the unit of a precision parameter: 1.x's n, u, ms,
// s, m, h and 2.x's ns, us, ms, s (both accepted on both endpoints).
func precision(p string) (time.Duration, error) {
	switch p {
	case "", "n", "ns":
		return time.Nanosecond, nil
	case "u", "us", "µ", "µs":
		return time.Microsecond, nil
	case "ms":
		return time.Millisecond, nil
	case "s":
		return time.Second, nil
	case "m":
		return time.Minute, nil
	case "h":
		return time.Hour, nil
	}
	return 0, fmt.Errorf("precision %q: want ns (n), us (u), ms, s, m or h", p)
}

// timestamp is a line's time in unit.
func timestamp(b []byte, unit time.Duration) (time.Time, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: not an integer", b)
	}
	if n > math.MaxInt64/int64(unit) || n < math.MinInt64/int64(unit) {
		return time.Time{}, fmt.Errorf("timestamp %d: out of range for precision %s", n, unit)
	}
	return time.Unix(0, n*int64(unit)), nil
}

// ReadBody reads a request's body, gunzipped when its Content-Encoding
// says gzip, at most max bytes both before and after: beyond either it
// answers http.StatusRequestEntityTooLarge. The error says why, with the
// status to answer.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, int, error) {
	var src io.Reader = http.MaxBytesReader(w, r.Body, max)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, bodyStatus(err, http.StatusBadRequest), fmt.Errorf("gzip body: %w", tooLarge(err, max))
		}
		defer zr.Close()
		src = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q: want gzip or none", enc)
	}
	body, err := io.ReadAll(io.LimitReader(src, max+1))
	if err != nil {
		return nil, bodyStatus(err, http.StatusBadRequest), fmt.Errorf("read body: %w", tooLarge(err, max))
	}
	if int64(len(body)) > max {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body decompresses to more than %d bytes: send smaller batches", max)
	}
	return body, 0, nil
}

// bodyStatus is the status of a body read's error: 413 past the bound.
func bodyStatus(err error, otherwise int) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return otherwise
}

func tooLarge(err error, max int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("more than %d bytes: send smaller batches", max)
	}
	return err
}

// statusCode is InfluxDB's error code of a status.
func statusCode(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "request too large"
	case http.StatusUnsupportedMediaType:
		return "unsupported media type"
	}
	return "invalid"
}

// writeError answers in InfluxDB's error shape: {"code","message"} as
// 2.x does, with the message under "error" on 1.x's /write, where the
// influx CLI and Telegraf's outputs.influxdb read it (Telegraf looks for
// "partial write" there to drop a batch it should not send again).
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("X-Influxdb-Error", msg)
	key := "message"
	if r.URL.Path == "/write" {
		key = "error"
	}
	writeJSON(w, status, map[string]string{"code": code, key: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
