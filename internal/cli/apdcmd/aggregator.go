package apdcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/httpapi"
	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/rules"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
	"github.com/apd-telemetry/apd/subscriber"
)

// DataFlags locate the aggregator's database.
type DataFlags struct {
	Data string `help:"Data directory; the database is <data>/apd.db." default:"./apd-data" placeholder:"DIR" type:"path" config:"server.data" envalias:"APD_DATA"`
}

// IngestFlags tune the ingestion pipeline.
type IngestFlags struct {
	MaxPayload int           `help:"Largest accepted payload in bytes." default:"65536" config:"server.max_payload"`
	MaxBatch   int           `help:"Most readings per commit." default:"2000" config:"server.max_batch"`
	BatchDelay time.Duration `help:"How long a commit waits to gather more readings." default:"10ms" config:"server.batch_delay"`
	MaxAge     time.Duration `help:"Reject readings stamped earlier than this before now (to dead letters)." default:"8760h" config:"server.max_age"`
	MaxAhead   time.Duration `help:"Reject readings stamped later than this after now." default:"24h" config:"server.max_ahead"`
	Retention  string        `help:"Delete readings older than this (e.g. 90d, 26w); empty keeps everything." placeholder:"D" config:"server.retention"`
	// Dead letters are bounded: a device flooding junk must not fill the disk.
	DeadLettersMax      int   `help:"Most dead letters kept; the oldest are dropped (and counted) beyond it." default:"10000" config:"server.dead_letters_max"`
	DeadLettersMaxBytes int64 `help:"Most bytes of dead letters kept; the oldest are dropped (and counted) beyond it." default:"8388608" config:"server.dead_letters_max_bytes"`
}

// retention parses --retention; 0 means keep everything.
func (f IngestFlags) retention() (time.Duration, error) {
	if f.Retention == "" {
		return 0, nil
	}
	keep, err := config.ParseDuration(f.Retention)
	if err != nil || keep <= 0 {
		return 0, cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--retention %q: want a duration like 90d", f.Retention), "")
	}
	return keep, nil
}

// startRetention deletes readings older than keep at start and then every
// hour, until ctx ends. keep 0 does nothing.
func (a *aggregator) startRetention(ctx context.Context, keep time.Duration) {
	if keep == 0 {
		return
	}
	deleted := new(metrics.Counter)
	a.metrics.Counter("apd_retention_deleted_total", "Readings deleted for being older than the retention period.", "", deleted)
	go func() {
		tick := time.NewTicker(time.Hour)
		defer tick.Stop()
		for {
			n, err := a.store.Delete(store.Query{Until: time.Now().Add(-keep)})
			if err != nil {
				a.log.Error("retention", "err", err)
			} else if n > 0 {
				deleted.Add(uint64(n))
				a.log.Info("retention: deleted old readings", "deleted", n, "older_than", keep)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// HTTPFlags place the HTTP API.
type HTTPFlags struct {
	HTTPAddr   string `name:"http-addr" help:"HTTP API listen address." default:"127.0.0.1:8080" placeholder:"HOST:PORT" config:"server.http_addr"`
	APIKeyFile string `name:"api-key-file" help:"File holding the API key every request must carry in X-API-Key (/healthz excepted); required to listen beyond loopback." placeholder:"FILE" type:"path" config:"server.api_key_file"`
}

// apiKey reads the key file; it refuses a non-loopback address without one.
func (f HTTPFlags) apiKey() ([]byte, error) {
	if f.APIKeyFile == "" {
		host, _, err := net.SplitHostPort(f.HTTPAddr)
		if ip := net.ParseIP(host); err != nil || host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--http-addr %s is beyond loopback: an API key is required", f.HTTPAddr), "pass --api-key-file")
		}
		return nil, nil
	}
	b, err := os.ReadFile(f.APIKeyFile)
	if err != nil {
		return nil, cli.WithCode(cli.ExitBadConfig, fmt.Errorf("read API key: %w", err), "")
	}
	key := bytes.TrimSpace(b)
	if len(key) < 16 {
		return nil, cli.WithCode(cli.ExitBadConfig, errors.New("API key shorter than 16 characters"), "use e.g. openssl rand -hex 32")
	}
	return key, nil
}

// loadRules reads and checks the [[rules]] of the config file.
func loadRules(file *config.File) ([]rules.Config, error) {
	tables, err := file.Rules()
	if err != nil {
		return nil, err
	}
	cfgs, err := rules.Parse(tables)
	if err != nil {
		return nil, cli.WithCode(cli.ExitBadConfig, fmt.Errorf("%s: %w", file.Path, err), "apd rules check "+file.Path+" checks a rules file")
	}
	return cfgs, nil
}

// aggregator is the storage side shared by serve and aggregate.
type aggregator struct {
	store    store.Store
	ingester *subscriber.Ingester
	rules    *rules.Engine // nil without rules
	metrics  *metrics.Registry
	http     *http.Server
	httpLn   net.Listener
	log      *slog.Logger
	// notReady says why the process does not take readings yet (empty
	// once every part is up); /readyz reports it.
	notReady atomic.Pointer[string]
}

// setReady marks the process ready (why empty) or not, and why.
func (a *aggregator) setReady(why string) { a.notReady.Store(&why) }

func (a *aggregator) ready() error {
	if why := a.notReady.Load(); why != nil && *why != "" {
		return errors.New(*why)
	}
	return nil
}

// openAggregator opens the store, starts the ingester, the rules (their
// publish action sends through publish) and the HTTP API.
func openAggregator(d DataFlags, in IngestFlags, h HTTPFlags, topics schema.Topics, ack subscriber.AckFunc,
	ruleCfgs []rules.Config, publish func(topic string, payload []byte) error, log *slog.Logger) (*aggregator, error) {
	key, err := h.apiKey()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(d.Data, "apd.db")
	st, err := openStore(path, readWrite, store.Limits{MaxDeadLetters: in.DeadLettersMax, MaxDeadBytes: in.DeadLettersMaxBytes})
	if errors.Is(err, store.ErrLocked) {
		return nil, cli.WithCode(cli.ExitFailure, err, "another apd serve or aggregate uses "+d.Data+"; stop it or pass --data")
	}
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", h.HTTPAddr)
	if err != nil {
		st.Close()
		return nil, cli.WithCode(cli.ExitFailure, fmt.Errorf("HTTP listen on %s: %w", h.HTTPAddr, err), "pass another --http-addr")
	}
	a := &aggregator{store: st, metrics: metrics.NewRegistry(), httpLn: ln, log: log}
	a.setReady("starting")
	var onCommit func([]schema.Reading)
	if len(ruleCfgs) > 0 {
		a.rules = rules.NewEngine(ruleCfgs, rules.Deps{Publish: publish, Topics: topics, Logger: log})
		onCommit = a.rules.Submit
		log.Info("rules loaded", "rules", len(ruleCfgs))
	}
	a.ingester = subscriber.New(st, ack, subscriber.Options{
		Topics: topics, MaxBatch: in.MaxBatch, MaxDelay: in.BatchDelay, MaxPayload: in.MaxPayload,
		MaxAge: in.MaxAge, MaxAhead: in.MaxAhead, OnCommit: onCommit, Logger: log})
	a.ingester.Metrics().Register(a.metrics)
	a.metrics.GaugeFunc("apd_db_size_bytes", "Size of the database file.", func() float64 {
		n, _ := st.Size()
		return float64(n)
	})
	deadStat := func(f func(store.DeadLetterStats) uint64) func() float64 {
		return func() float64 {
			ds, _ := st.DeadLetterStats()
			return float64(f(ds))
		}
	}
	a.metrics.GaugeFunc("apd_dead_letters", "Dead letters kept.", deadStat(func(d store.DeadLetterStats) uint64 { return d.Count }))
	a.metrics.GaugeFunc("apd_dead_letters_bytes", "Bytes of dead letters kept.", deadStat(func(d store.DeadLetterStats) uint64 { return d.Bytes }))
	a.metrics.GaugeFunc("apd_dead_letters_dropped", "Dead letters dropped (oldest first) to stay within the bounds, ever.", deadStat(func(d store.DeadLetterStats) uint64 { return d.Dropped }))
	a.metrics.GaugeFunc("apd_seq_awaited", "Seqs below each host's highest seq not committed yet, summed over hosts.", func() float64 {
		hosts, _ := st.Hosts()
		var n uint64
		for _, h := range hosts {
			n += h.Awaited
		}
		return float64(n)
	})
	api := &httpapi.Server{Store: st, Metrics: a.metrics, Logger: log, APIKey: key, Ready: a.ready}
	if a.rules != nil {
		api.Rules = a.rules
	}
	a.http = &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", "err", err)
		}
	}()
	return a, nil
}

// HTTPURL returns the API's base URL.
func (a *aggregator) HTTPURL() string { return "http://" + a.httpLn.Addr().String() }

// acknowledgeStored publishes every host's stored watermark again, once
// the broker can take it.
func (a *aggregator) acknowledgeStored() {
	hosts, err := a.store.Hosts()
	if err != nil {
		a.log.Error("read hosts to acknowledge", "err", err)
		return
	}
	a.ingester.AcknowledgeStored(hosts)
}

// drain commits and acknowledges what is queued and lets the rules
// finish; nothing more is taken in.
func (a *aggregator) drain() {
	_ = a.ingester.Close()
	if a.rules != nil {
		a.rules.Close()
	}
}

// close drains, then stops the API and the store.
func (a *aggregator) close() {
	a.drain()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.http.Shutdown(ctx)
	_ = a.store.Close()
}

// logProgress tells the operator that readings arrive: once when the first
// are stored, then a summary per minute in which anything happened.
func (a *aggregator) logProgress(ctx context.Context) {
	m := a.ingester.Metrics()
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
				a.log.Info("readings are being stored", "stored", stored,
					"try", "apd query --server "+a.HTTPURL()+" --sensor cpu_load --since 5m")
				last, lastSummary = stored, time.Now()
			case announced && time.Since(lastSummary) >= time.Minute && (stored != last || rejected != lastRejected):
				a.log.Info("ingestion", "stored_last_minute", stored-last, "stored_total", stored,
					"rejected_last_minute", rejected-lastRejected)
				last, lastRejected, lastSummary = stored, rejected, time.Now()
			}
		}
	}()
}

// onSignal calls fn each time sig arrives, until ctx ends.
func onSignal(ctx context.Context, sig os.Signal, fn func()) {
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
func (a *aggregator) logMetricsOnSignal(ctx context.Context) {
	onSignal(ctx, syscall.SIGUSR1, func() {
		var b strings.Builder
		a.metrics.WritePrometheus(&b)
		for _, line := range strings.Split(b.String(), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				a.log.Info("metric", "value", line)
			}
		}
		if a.rules != nil {
			a.rules.LogStats(a.log)
		}
	})
}
