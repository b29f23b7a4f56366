// Package httpapi is the aggregator's HTTP API: queries, hosts, health and
// metrics. Errors become HTTP statuses in one place, writeError.
package httpapi

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apd-telemetry/apd/internal/chart/geo"
	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/rules"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// Server serves the API.
type Server struct {
	Store   store.Store
	Metrics *metrics.Registry
	Logger  *slog.Logger
	Now     func() time.Time
	// APIKey, when not empty, is required in the X-API-Key header of every
	// request except /healthz.
	APIKey []byte
	// Rules, when set, answers /api/v1/rules.
	Rules RuleStats
	// Dashboard, when set, serves the web dashboard at / and /ui/; Live,
	// when set, its stream of readings at /api/v1/live.
	Dashboard http.Handler
	Live      http.Handler
	// MapOverlay is drawn over every map (chart.png|svg with map).
	MapOverlay []geo.Shape
	// Prometheus, when set, serves the Prometheus-compatible read API
	// (PromQL) under /prometheus/api/v1/, where Grafana's Prometheus data
	// source and promtool find it.
	Prometheus http.Handler
	// InfluxWrite, when set, takes InfluxDB line protocol at /write (1.x)
	// and /api/v2/write (2.x) and answers InfluxDB's /ping and /health,
	// and the InfluxQL writers send first at /query;
	// RemoteWrite, when set, takes Prometheus remote_write at
	// /api/v1/write and /prometheus/api/v1/write.
	InfluxWrite http.Handler
	RemoteWrite http.Handler
	// Held, when set, answers /api/v1/held: what this aggregator, one of
	// several sharing the work, holds (ingest.Held).
	Held func() any
	// Ready, when set, says whether every part of the process (store,
	// broker listeners, subscriptions) is up: nil when it is, else why
	// not. /readyz answers 200 only then; /healthz only says the process
	// answers.
	Ready func() error
	// SessionTTL is how long a dashboard session lasts from its login; 0
	// means DefaultSessionTTL. MaxSessions bounds the sessions kept; 0
	// means DefaultMaxSessions.
	SessionTTL  time.Duration
	MaxSessions int
	// MaxCharts bounds the chart images drawn at once; 0 means
	// MaxConcurrentCharts. ChartWait is how long a chart waits for a
	// turn before it is answered 503; 0 means ChartQueueWait.
	MaxCharts int
	ChartWait time.Duration

	once     sync.Once
	sessions *sessions
	charts   chartSlots
}

// init makes the server's state from its settings, once.
func (s *Server) init() {
	s.once.Do(func() {
		s.sessions = newSessions(cmp.Or(s.MaxSessions, DefaultMaxSessions))
		s.charts = make(chartSlots, cmp.Or(s.MaxCharts, MaxConcurrentCharts))
	})
}

// RuleStats reports the counters of the running rules.
type RuleStats interface {
	Stats() []rules.Stats
}

// APIKeyHeader carries the API key.
const APIKeyHeader = "X-API-Key"

// errBadRequest marks errors caused by the request's parameters;
// errNotFound those naming something that does not exist.
var (
	errBadRequest = errors.New("bad request")
	errNotFound   = errors.New("not found")
)

// Handler returns the API's routes. Serve it with the limits of
// HTTPServer.
func (s *Server) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.Ready != nil {
			if err := s.Ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, "not ready:", err)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if s.Metrics != nil {
			s.Metrics.WritePrometheus(w)
		}
	})
	mux.HandleFunc("GET /api/v1/query", s.query)
	mux.HandleFunc("GET /api/v1/hosts", s.hosts)
	mux.HandleFunc("PUT /api/v1/hosts/{host}", s.setHostMeta)
	mux.HandleFunc("GET /api/v1/deadletters", s.deadLetters)
	mux.HandleFunc("GET /api/v1/deadletters/stats", func(w http.ResponseWriter, _ *http.Request) {
		st, err := s.Store.DeadLetterStats()
		if err != nil {
			s.writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	if s.Dashboard != nil {
		mux.Handle("GET /{$}", s.Dashboard)
		mux.Handle("GET /ui/", s.Dashboard)
	}
	if s.Live != nil {
		mux.Handle("GET /api/v1/live", s.Live)
	}
	mux.HandleFunc("POST /api/v1/session", s.openSession)
	mux.HandleFunc("DELETE /api/v1/session", s.closeSession)
	mux.HandleFunc("GET /api/v1/chart.png", s.chartImage("png"))
	mux.HandleFunc("GET /api/v1/chart.svg", s.chartImage("svg"))
	mux.HandleFunc("GET /api/v1/series", s.series)
	mux.HandleFunc("GET /api/v1/dashboard/hosts", s.dashboardHosts)
	mux.HandleFunc("GET /api/v1/dashboard/sensors", s.dashboardSensors)
	mux.HandleFunc("DELETE /api/v1/readings", s.delete)
	mux.HandleFunc("POST /api/v1/import", s.importReadings)
	mux.HandleFunc("GET /api/v1/backup", s.backup)
	mux.HandleFunc("GET /api/v1/rules", s.rules)
	if s.Prometheus != nil {
		mux.Handle("/prometheus/api/v1/", s.Prometheus)
	}
	if s.InfluxWrite != nil {
		mux.Handle("POST /write", s.InfluxWrite)
		mux.Handle("POST /api/v2/write", s.InfluxWrite)
		mux.Handle("GET /ping", s.InfluxWrite)
		mux.Handle("HEAD /ping", s.InfluxWrite)
		mux.Handle("GET /health", s.InfluxWrite)
		mux.Handle("GET /query", s.InfluxWrite)
		mux.Handle("POST /query", s.InfluxWrite)
	}
	if s.RemoteWrite != nil {
		mux.Handle("POST /api/v1/write", s.RemoteWrite)
		mux.Handle("POST /prometheus/api/v1/write", s.RemoteWrite)
	}
	mux.HandleFunc("GET /api/v1/held", func(w http.ResponseWriter, _ *http.Request) {
		if s.Held == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "this aggregator shares no work (apd aggregate --share)"})
			return
		}
		writeJSON(w, http.StatusOK, s.Held())
	})
	return securityHeaders(limitURL(s.requireKey(writeDeadlines(mux, WriteIdleTimeout))))
}

// WriteIdleTimeout is how long a response may make no progress before the
// connection is closed: a client that stops reading does not hold a
// response (and what it reads from) forever, while a long export to a
// client that keeps reading is never cut off.
const WriteIdleTimeout = 30 * time.Second

// writeDeadlines gives every write of a response a deadline idle from now.
func writeDeadlines(h http.Handler, idle time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), idle: idle}
		dw.extend()
		h.ServeHTTP(dw, r)
	})
}

type deadlineWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	idle     time.Duration
	extended time.Time
}

// extend moves the deadline, at most once a second (it is a syscall).
func (d *deadlineWriter) extend() {
	if now := time.Now(); now.Sub(d.extended) >= time.Second {
		d.extended = now
		_ = d.rc.SetWriteDeadline(now.Add(d.idle))
	}
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.extend()
	return d.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// public reports whether a request needs no key: health and readiness
// probes, the dashboard's page and assets (which hold no data; the page
// asks for the key and every call it makes needs it), and opening a
// session with the key.
func public(r *http.Request) bool {
	switch p := r.URL.Path; {
	case p == "/healthz" || p == "/readyz":
		return true
	// InfluxDB's probes answer without credentials there too: clients
	// call them before they authenticate anything (the influx CLI's
	// connect, Telegraf's health checks), and they say nothing of the data.
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && (p == "/ping" || p == "/health"):
		return true
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && (p == "/" || strings.HasPrefix(p, "/ui/")):
		return true
	case (r.Method == http.MethodPost || r.Method == http.MethodDelete) && p == "/api/v1/session":
		return true
	}
	return false
}

// requireKey answers 401 to requests without the API key (compared in
// constant time), except probes. Without a key the API is for this
// machine only, and that is enforced on the Host header too: a web page
// in a browser on this machine could otherwise read the API through a
// name of its own that resolves to 127.0.0.1 (DNS rebinding).
func (s *Server) requireKey(h http.Handler) http.Handler {
	if len(s.APIKey) == 0 {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !public(r) && !LoopbackHost(r.Host) {
				writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": fmt.Sprintf("host %q is not a loopback name: without an API key the API answers only localhost, 127.0.0.1 and ::1", r.Host)})
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !public(r) && !s.keyGiven(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong API key (header " + APIKeyHeader + ")"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// LoopbackHost reports whether a Host header (name or address, with or
// without a port) names this machine's loopback interface.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// writeError maps an error to its status and a JSON body {"error": "..."}.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, errNotFound):
		status = http.StatusNotFound
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG):
		status = http.StatusInsufficientStorage
		s.log().Error("api request failed", "err", err)
	default:
		s.log().Error("api request failed", "err", err)
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// selectsSensor refuses a query that names no sensor unless it asks for
// every reading with all=1 (what apd export does): a client that meant
// Prometheus' /api/v1/query (Grafana, promtool, a health check's query
// 1+1) would otherwise get the whole database back as an answer.
func selectsSensor(v url.Values) error {
	if v.Get("sensor") != "" || v.Get("all") == "1" {
		return nil
	}
	if v.Has("query") {
		return fmt.Errorf("%w: this is apd's own query API, which takes sensor=NAME; PromQL (query=%q) is answered at /prometheus/api/v1/query", errBadRequest, v.Get("query"))
	}
	return fmt.Errorf("%w: sensor is required (sensor=temperature); all=1 selects every sensor's readings", errBadRequest)
}

// ParseQuery reads the selection parameters of /api/v1/query: sensor, host
// (repeatable), since and until (durations back from now, RFC 3339 times
// or dates). The processing parameters (where, agg, every, unit, limit)
// are read by query.SpecFromValues.
func ParseQuery(v map[string][]string, now time.Time) (store.Query, error) {
	get := func(k string) string {
		if len(v[k]) == 0 {
			return ""
		}
		return v[k][0]
	}
	q := store.Query{Sensor: get("sensor"), Hosts: v["host"]}
	var err error
	if q.Since, err = query.ParseTime(get("since"), now); err != nil {
		return q, fmt.Errorf("%w: since: %v", errBadRequest, err)
	}
	if q.Until, err = query.ParseTime(get("until"), now); err != nil {
		return q, fmt.Errorf("%w: until: %v", errBadRequest, err)
	}
	if q.Sensor != "" {
		if err := schema.ValidateName(q.Sensor); err != nil {
			return q, fmt.Errorf("%w: sensor: %v", errBadRequest, err)
		}
	}
	for _, h := range q.Hosts {
		if err := schema.ValidateName(h); err != nil {
			return q, fmt.Errorf("%w: host: %v", errBadRequest, err)
		}
	}
	return q, nil
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	if err := selectsSensor(r.URL.Query()); err != nil {
		s.writeError(w, err)
		return
	}
	q, err := ParseQuery(r.URL.Query(), s.now())
	if err != nil {
		s.writeError(w, err)
		return
	}
	spec, err := query.SpecFromValues(r.URL.Query())
	if err == nil {
		_, err = spec.Compile(q.Since) // report a bad spec as 400 before streaming
	}
	if err != nil {
		s.writeError(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "ndjson"
	}
	sw := &sentWriter{ResponseWriter: w}
	out, err := query.NewWriter(format, sw)
	if err != nil {
		s.writeError(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	switch format {
	case "ndjson":
		w.Header().Set("Content-Type", "application/x-ndjson")
	case "json":
		w.Header().Set("Content-Type", "application/json")
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	// Results stream: once the first byte is out, a failure can only cut
	// the body short. The connection is cut rather than the body ended,
	// so the client sees an error, not a clean end of fewer results.
	if err := query.Execute(s.Store, q, spec, out.Write); err != nil {
		if !sw.sent {
			s.writeError(w, fmt.Errorf("query: %w", err))
			return
		}
		s.log().Error("query failed mid-stream; cutting the connection", "err", err)
		panic(http.ErrAbortHandler)
	}
	_ = out.Close()
}

// sentWriter records whether anything of the response went out, so a
// failure before that can still be answered with an error status.
type sentWriter struct {
	http.ResponseWriter
	sent bool
}

func (s *sentWriter) WriteHeader(code int) {
	s.sent = true
	s.ResponseWriter.WriteHeader(code)
}

func (s *sentWriter) Write(p []byte) (int, error) {
	s.sent = true
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *sentWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *Server) hosts(w http.ResponseWriter, _ *http.Request) {
	hosts, err := s.Store.Hosts()
	if err != nil {
		s.writeError(w, err)
		return
	}
	if hosts == nil {
		hosts = []store.Host{}
	}
	writeJSON(w, http.StatusOK, hosts)
}

// setHostMeta replaces a host's display name, colour and location with
// the JSON body (a store.HostMeta; {} clears them). Only a host that was
// seen can be named over HTTP (404 otherwise): a name in a URL must not
// make a host appear that never sent anything.
func (s *Server) setHostMeta(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	if err := schema.ValidateName(host); err != nil {
		s.writeError(w, fmt.Errorf("%w: host: %v", errBadRequest, err))
		return
	}
	hosts, err := s.Store.Hosts()
	if err != nil {
		s.writeError(w, err)
		return
	}
	if _, seen := slices.BinarySearchFunc(hosts, host, func(h store.Host, name string) int { return strings.Compare(h.Name, name) }); !seen {
		s.writeError(w, fmt.Errorf("%w: no host %q has sent anything (apd hosts lists those that have)", errNotFound, host))
		return
	}
	var m store.HostMeta
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		s.writeError(w, fmt.Errorf("%w: host meta: %v", errBadRequest, err))
		return
	}
	if err := m.Validate(); err != nil {
		s.writeError(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	if err := s.Store.SetHostMeta(host, m); err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			s.writeError(w, fmt.Errorf("%w: limit %q is not a positive whole number", errBadRequest, l))
			return
		}
		limit = n
	}
	dead, err := s.Store.DeadLetters(limit)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if dead == nil {
		dead = []store.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, dead)
}

// delete removes readings: host is required (repeatable), sensor, since
// and until narrow the selection.
func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query(), s.now())
	if err != nil {
		s.writeError(w, err)
		return
	}
	if len(q.Hosts) == 0 {
		s.writeError(w, fmt.Errorf("%w: host is required", errBadRequest))
		return
	}
	n, err := s.Store.Delete(q)
	if err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
}

// The backup's size, known before it is sent, and its SHA-256, known
// after: a client that received fewer bytes, or other ones, can tell.
const (
	BackupSizeHeader     = "X-Apd-Backup-Size"
	BackupChecksumHeader = "X-Apd-Backup-Sha256" // an HTTP trailer
)

// backup streams a consistent copy of the database file. A backup that fails before its first byte (the copy is made on the
// server's disk first, which may be full) is answered with an error
// status, 507 when the disk is full. One that fails later cuts the
// connection, so the client sees an error rather than a clean end.
func (s *Server) backup(w http.ResponseWriter, _ *http.Request) {
	b, ok := s.Store.(store.Backuper)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "this storage engine makes no backups over HTTP"})
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="apd-backup.db"`)
	w.Header().Set("Trailer", BackupChecksumHeader)
	sw := &sentWriter{ResponseWriter: w}
	sum := sha256.New()
	_, err := b.WriteBackup(io.MultiWriter(sw, sum), func(size int64) {
		w.Header().Set(BackupSizeHeader, strconv.FormatInt(size, 10))
	})
	if err != nil {
		if !sw.sent {
			for _, k := range []string{"Content-Disposition", "Trailer", BackupSizeHeader} {
				w.Header().Del(k)
			}
			s.writeError(w, err) // the engine says it is a backup that failed
			return
		}
		s.log().Error("backup failed mid-stream; cutting the connection", "err", err)
		panic(http.ErrAbortHandler)
	}
	w.Header().Set(BackupChecksumHeader, hex.EncodeToString(sum.Sum(nil)))
}

// rules lists each rule with its counters; no rules is an empty list.
func (s *Server) rules(w http.ResponseWriter, _ *http.Request) {
	stats := []rules.Stats{}
	if s.Rules != nil {
		stats = s.Rules.Stats()
	}
	writeJSON(w, http.StatusOK, stats)
}
