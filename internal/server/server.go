// Package server is the aggregator's composition root, which apd serve
// and apd aggregate share: the store, the ingester, the rules, the HTTP
// API, retention and the self-reporting goroutines, and the transport
// that carries readings in and acknowledgements out (EmbeddedBroker,
// ExternalBroker, NATS) — built, started, drained and closed in one
// place.
//
// New builds (the store is open, the HTTP address bound, so bad settings
// fail before anything runs); Run attaches the transport, starts
// everything, runs until its context ends and stops in reverse: the
// transport stops taking readings, the queue is committed and
// acknowledged through the transport, then the transport, the API and
// the store close.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apd-telemetry/apd/internal/chart/geo"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/dashboard"
	"github.com/apd-telemetry/apd/internal/httpapi"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/influxline"
	"github.com/apd-telemetry/apd/internal/ingest/remotewrite"
	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/procio"
	"github.com/apd-telemetry/apd/internal/promapi"
	"github.com/apd-telemetry/apd/internal/rules"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// Config is what the aggregator is built from.
type Config struct {
	// Store is the opened storage engine; the server closes it.
	Store store.Store
	// HTTPAddr is the API's listen address; APIKey, when set, is required
	// of every request (see httpapi.Server).
	HTTPAddr string
	APIKey   []byte
	// Ingest configures the ingester (Topics, batching, bounds).
	Ingest ingest.Options
	// Rules are the checked [[rules]] of the config file.
	Rules []rules.Config
	// HADiscovery, when set, announces the rules' outcomes to Home
	// Assistant (the publish action's discovery configs); nil does not.
	HADiscovery *rules.HADiscovery
	// Retention deletes readings older than it, at start and every hour;
	// 0 keeps everything.
	Retention time.Duration
	// PackAfter is how long after a day ends an engine that packs
	// finished days (store.Packer) does so; 0 means store.DefaultPackAfter.
	PackAfter time.Duration
	Logger    *slog.Logger
	// MapOverlay is drawn over every map the API draws.
	MapOverlay []geo.Shape
	// InfluxLine and RemoteWrite configure the API's write endpoints
	// (InfluxDB line protocol, Prometheus remote_write); the server sets
	// their Ingester and Logger.
	InfluxLine  influxline.Options
	RemoteWrite remotewrite.Options
}

// Link is how the aggregator reaches the devices once it runs: its
// transport's way out.
type Link interface {
	// Acknowledge publishes a retained $ack payload; it must not block for
	// long (it runs on the commit path).
	Acknowledge(topic string, payload []byte) error
	// Publish sends a rule's outcome as a reading.
	Publish(topic string, payload []byte) error
}

// Server is the aggregator.
type Server struct {
	cfg      Config
	store    store.Store
	ingester *ingest.Ingester
	rules    *rules.Engine // nil without rules
	live     *dashboard.Hub
	metrics  *metrics.Registry
	http     *http.Server
	httpLn   net.Listener
	log      *slog.Logger
	// prometheus is the PromQL read API; its engine is closed last.
	prometheus *promapi.API
	link       Link
	started    time.Time
	startIO    procio.Counters // at start, for the SIGUSR1 disk writes
	cancel     context.CancelFunc
	closed     sync.Once
	// notReady says why the process does not take readings yet (empty
	// once every part is up); /readyz reports it.
	notReady atomic.Pointer[string]
	// partitions, when set, lists the stream partitions this aggregator
	// reads (reportPartitions).
	partitions atomic.Pointer[func() []int]
}

// New builds the aggregator on cfg.Store and binds the HTTP address. It
// takes no readings before Run; on an error it closes the store.
func New(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		cfg.Store.Close()
		return nil, fmt.Errorf("HTTP listen on %s: %w", cfg.HTTPAddr, err)
	}
	s := &Server{cfg: cfg, store: cfg.Store, metrics: metrics.NewRegistry(), httpLn: ln, log: log, started: time.Now()}
	s.startIO, _ = procio.Self()
	s.setReady("starting")
	opts := cfg.Ingest
	opts.Logger = log
	s.live = dashboard.NewHub(maxLiveDashboards)
	opts.OnCommit = s.live.Publish
	opts.WantCommits = func() bool { return s.live.Watchers() > 0 }
	if len(cfg.Rules) > 0 {
		s.rules = rules.NewEngine(cfg.Rules, rules.Deps{Publish: s.publish, PublishRetained: s.publishRetained,
			HADiscovery: cfg.HADiscovery, Topics: opts.Topics, Logger: log})
		opts.OnCommit = func(rs []schema.Reading) {
			s.rules.Submit(rs)
			s.live.Publish(rs)
		}
		opts.WantCommits = nil // the rules see every commit
		log.Info("rules loaded", "rules", len(cfg.Rules))
	}
	s.ingester = ingest.NewIngester(s.store, opts)
	s.registerMetrics()
	api := &httpapi.Server{Store: s.store, Metrics: s.metrics, Logger: log, APIKey: cfg.APIKey, Ready: s.ready,
		Dashboard: dashboard.Handler(), Live: s.live, MapOverlay: cfg.MapOverlay}
	if s.rules != nil {
		api.Rules = s.rules
	}
	s.prometheus = promapi.New(s.store, promapi.Options{Version: cli.Version, Logger: log})
	api.Prometheus = s.prometheus
	cfg.InfluxLine.Ingester, cfg.InfluxLine.Logger = s.ingester, log
	api.InfluxWrite = influxline.New(cfg.InfluxLine)
	cfg.RemoteWrite.Ingester = s.ingester
	rw := remotewrite.New(cfg.RemoteWrite)
	rw.Register(s.metrics)
	api.RemoteWrite = rw
	if opts.Name != "" {
		api.Held = func() any {
			h := s.ingester.Held()
			if p := s.partitions.Load(); p != nil {
				h.Partitions = (*p)()
			}
			return h
		}
		s.metrics.GaugeFunc("apd_hosts_held", "Hosts whose readings this aggregator committed in the last five minutes.", func() float64 {
			return float64(s.ingester.HostsHeld(5 * time.Minute))
		})
	}
	s.http = api.HTTPServer()
	return s, nil
}

// maxLiveDashboards bounds the dashboards streaming live readings at once;
// each costs a goroutine, a connection and an encoding per commit.
const maxLiveDashboards = 64

// publish is the rules' publish action: through the link, once there is
// one (rules act only on commits, which begin once Run has started).
func (s *Server) publish(topic string, payload []byte) error {
	if s.link == nil {
		return errors.New("not started")
	}
	return s.link.Publish(topic, payload)
}

func (s *Server) registerMetrics() {
	st := s.store
	s.ingester.Metrics().Register(s.metrics)
	s.metrics.GaugeFunc("apd_dashboard_watchers", "Dashboards streaming live readings now.", func() float64 { return float64(s.live.Watchers()) })
	s.metrics.CounterFunc("apd_dashboard_events_dropped_total", "Live events dropped for dashboards that fell behind (each then fetches again).", s.live.Dropped)
	s.metrics.GaugeFunc("apd_db_size_bytes", "Size of the database.", func() float64 {
		n, _ := st.Size()
		return float64(n)
	})
	deadStat := func(f func(store.DeadLetterStats) uint64) func() float64 {
		return func() float64 {
			ds, _ := st.DeadLetterStats()
			return float64(f(ds))
		}
	}
	s.metrics.GaugeFunc("apd_dead_letters", "Dead letters kept.", deadStat(func(d store.DeadLetterStats) uint64 { return d.Count }))
	s.metrics.GaugeFunc("apd_dead_letters_bytes", "Bytes of dead letters kept.", deadStat(func(d store.DeadLetterStats) uint64 { return d.Bytes }))
	s.metrics.CounterFunc("apd_dead_letters_dropped_total", "Dead letters dropped (oldest first) to stay within the bounds, ever.", func() uint64 {
		ds, _ := st.DeadLetterStats()
		return ds.Dropped
	})
	// What wears an SD card (docs/reliability.md).
	if _, err := procio.Self(); err == nil {
		s.metrics.CounterFunc("apd_process_written_bytes_total", "Bytes this process caused to be written to storage (the kernel's write_bytes less cancelled_write_bytes).", func() uint64 {
			c, _ := procio.Self()
			return c.Written()
		})
	}
	if wr, ok := st.(store.WriteReporter); ok {
		s.metrics.CounterFunc("apd_store_syncs_total", "fsyncs of the store's commits.", func() uint64 { return wr.WriteStats().Syncs })
		s.metrics.CounterFunc("apd_store_deferred_commits_total", "Commits made durable in the write-ahead file.", func() uint64 { return wr.WriteStats().Deferred })
		s.metrics.CounterFunc("apd_store_checkpoints_total", "Commits of the database file that took the write-ahead file's.", func() uint64 { return wr.WriteStats().Checkpoints })
	}
	s.metrics.GaugeFunc("apd_seq_awaited", "Seqs below each host's highest seq not committed yet, summed over hosts.", func() float64 {
		hosts, _ := st.Hosts()
		var n uint64
		for _, h := range hosts {
			n += h.Awaited
		}
		return float64(n)
	})
}

// Ingester is what the transport feeds.
func (s *Server) Ingester() *ingest.Ingester { return s.ingester }

// Logger is the server's logger, which its transport logs with.
func (s *Server) Logger() *slog.Logger { return s.log }

// Metrics is the registry /metrics serves, for the other parts of the
// process to add to.
func (s *Server) Metrics() *metrics.Registry { return s.metrics }

// Store is the storage engine.
func (s *Server) Store() store.Store { return s.store }

// HTTPURL returns the API's base URL.
func (s *Server) HTTPURL() string { return "http://" + s.httpLn.Addr().String() }

// start runs the aggregator: commits acknowledged through link, the
// HTTP API, retention, packing, progress and metrics logs (until ctx
// ends).
func (s *Server) start(ctx context.Context, link Link) {
	s.link = link
	ctx, s.cancel = context.WithCancel(ctx)
	s.ingester.Start(link.Acknowledge)
	go func() {
		if err := s.http.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP server stopped", "err", err)
		}
	}()
	s.logMetricsOnSignal(ctx)
	s.logProgress(ctx)
	s.startRetention(ctx)
	s.startPacking(ctx)
}

// reportPartitions makes /api/v1/held and /metrics show the stream
// partitions this aggregator reads, as held says.
func (s *Server) reportPartitions(held func() []int) {
	s.partitions.Store(&held)
	s.metrics.GaugeFunc("apd_partitions_held", "Stream partitions this aggregator reads.", func() float64 { return float64(len(held())) })
}

// setReady marks the process ready (why empty) or not, and why.
func (s *Server) setReady(why string) { s.notReady.Store(&why) }

func (s *Server) ready() error {
	if why := s.notReady.Load(); why != nil && *why != "" {
		return errors.New(*why)
	}
	if s.ingester.Metrics().CommitFailing.Value() != 0 {
		return errors.New("commits are failing (is the disk full?): readings are neither stored nor acknowledged")
	}
	return nil
}

// drain commits and acknowledges what is queued and lets the rules
// finish; nothing more is taken in. The link must still carry
// acknowledgements.
func (s *Server) drain() {
	_ = s.ingester.Close()
	if s.rules != nil {
		s.rules.Close()
	}
}

// Close drains, then stops the API, the goroutines and the store. Run
// closes the server itself; Close is for a server that never runs. Later
// calls do nothing.
func (s *Server) Close() {
	s.closed.Do(func() {
		s.drain()
		if s.cancel != nil {
			s.cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.http.Shutdown(ctx)
		_ = s.httpLn.Close()
		_ = s.prometheus.Close()
		_ = s.store.Close()
	})
}

// startRetention deletes readings older than the retention at start and
// then every hour, until ctx ends.
func (s *Server) startRetention(ctx context.Context) {
	keep := s.cfg.Retention
	if keep == 0 {
		return
	}
	deleted := new(metrics.Counter)
	s.metrics.Counter("apd_retention_deleted_total", "Readings deleted for being older than the retention period.", "", deleted)
	go func() {
		tick := time.NewTicker(time.Hour)
		defer tick.Stop()
		for {
			n, err := s.store.Delete(store.Query{Until: time.Now().Add(-keep)})
			if err != nil {
				s.log.Error("retention", "err", err)
			} else if n > 0 {
				deleted.Add(uint64(n))
				s.log.Info("retention: deleted old readings", "deleted", n, "older_than", keep)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// startPacking packs finished days (when the engine does) at start and
// then every hour, until ctx ends.
func (s *Server) startPacking(ctx context.Context) {
	p, ok := s.store.(store.Packer)
	if !ok {
		return
	}
	after := cmp.Or(s.cfg.PackAfter, store.DefaultPackAfter)
	packed := new(metrics.Counter)
	s.metrics.Counter("apd_packed_readings_total", "Readings of finished days moved into the packed layout.", "", packed)
	go func() {
		tick := time.NewTicker(time.Hour)
		defer tick.Stop()
		for {
			st, err := p.Pack(ctx, after)
			if err != nil && ctx.Err() == nil {
				s.log.Error("pack finished days", "err", err)
			} else if st.Days > 0 {
				packed.Add(uint64(st.Readings))
				s.log.Info("packed finished days", "days", st.Days, "readings", st.Readings)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// logProgress tells the operator that readings arrive: once when the first
// are stored, then a summary per minute in which anything happened.
func (s *Server) logProgress(ctx context.Context) {
	m := s.ingester.Metrics()
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var last, lastRejected uint64
		announced := false
		lastSummary := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			stored, rejected := m.Stored.Value(), m.RejectedTotal()
			switch {
			case !announced && stored > 0:
				announced = true
				s.log.Info("readings are being stored", "stored", stored,
					"try", "apd query --server "+s.HTTPURL()+" --sensor cpu_load --since 5m")
				last, lastSummary = stored, time.Now()
			case announced && time.Since(lastSummary) >= time.Minute && (stored != last || rejected != lastRejected):
				s.log.Info("ingestion", "stored_last_minute", stored-last, "stored_total", stored,
					"rejected_last_minute", rejected-lastRejected)
				last, lastRejected, lastSummary = stored, rejected, time.Now()
			}
		}
	}()
}

// OnSignal calls fn each time sig arrives, until ctx ends.
func OnSignal(ctx context.Context, sig os.Signal, fn func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				fn()
			}
		}
	}()
}

// logMetricsOnSignal writes the self-metrics and the rules' counters to
// the log on SIGUSR1 until ctx ends.
func (s *Server) logMetricsOnSignal(ctx context.Context) {
	OnSignal(ctx, syscall.SIGUSR1, func() {
		var b strings.Builder
		s.metrics.WritePrometheus(&b)
		for _, line := range strings.Split(b.String(), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				s.log.Info("metric", "value", line)
			}
		}
		if s.rules != nil {
			s.rules.LogStats(s.log)
		}
		s.logDiskWrites()
	})
}

// logDiskWrites logs what this process wrote to storage since it started,
// and that rate over a day: what a Pi's SD card gets.
func (s *Server) logDiskWrites() {
	up := time.Since(s.started)
	attrs := []any{"since", s.started.UTC().Format(time.RFC3339), "uptime", up.Round(time.Second).String()}
	if c, err := procio.Self(); err == nil {
		written := c.WrittenSince(s.startIO)
		attrs = append(attrs, "bytes_written", written, "bytes_written_per_day", procio.PerDay(written, up))
	}
	if wr, ok := s.store.(store.WriteReporter); ok {
		ws := wr.WriteStats()
		attrs = append(attrs, "syncs", ws.Syncs, "syncs_per_day", procio.PerDay(ws.Syncs, up),
			"deferred_commits", ws.Deferred, "checkpoints", ws.Checkpoints)
	}
	s.log.Info("disk writes", attrs...)
}

// Topics returns the topics the ingester reads.
func (s *Server) Topics() schema.Topics { return s.cfg.Ingest.Topics }
