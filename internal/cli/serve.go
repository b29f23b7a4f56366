package cli

import (
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

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/httpapi"
	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
	"github.com/apd-telemetry/apd/subscriber"
	mqtt "github.com/mochi-mqtt/server/v2"
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
}

// HTTPFlags place the HTTP API.
type HTTPFlags struct {
	HTTPAddr string `name:"http-addr" help:"HTTP API listen address." default:"127.0.0.1:8080" placeholder:"HOST:PORT" config:"server.http_addr"`
}

// aggregator is the storage side shared by serve and aggregate.
type aggregator struct {
	store    *store.Store
	ingester *subscriber.Ingester
	metrics  *metrics.Registry
	http     *http.Server
	httpLn   net.Listener
	log      *slog.Logger
}

func openAggregator(d DataFlags, in IngestFlags, h HTTPFlags, topics schema.Topics, ack subscriber.AckFunc, log *slog.Logger) (*aggregator, error) {
	path := filepath.Join(d.Data, "apd.db")
	st, err := store.Open(path, store.Options{Timeout: time.Second})
	if errors.Is(err, store.ErrLocked) {
		return nil, withCode(ExitFailure, err, "another apd serve or aggregate uses "+d.Data+"; stop it or pass --data")
	}
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", h.HTTPAddr)
	if err != nil {
		st.Close()
		return nil, withCode(ExitFailure, fmt.Errorf("HTTP listen on %s: %w", h.HTTPAddr, err), "pass another --http-addr")
	}
	a := &aggregator{store: st, metrics: metrics.NewRegistry(), httpLn: ln, log: log}
	a.ingester = subscriber.New(st, ack, subscriber.Options{
		Topics: topics, MaxBatch: in.MaxBatch, MaxDelay: in.BatchDelay, MaxPayload: in.MaxPayload,
		MaxAge: in.MaxAge, MaxAhead: in.MaxAhead, Logger: log})
	a.ingester.Metrics().Register(a.metrics)
	a.metrics.GaugeFunc("apd_db_size_bytes", "Size of the database file.", func() float64 {
		n, _ := st.Size()
		return float64(n)
	})
	a.metrics.GaugeFunc("apd_seq_awaited", "Seqs below each host's highest seq not committed yet, summed over hosts.", func() float64 {
		hosts, _ := st.Hosts()
		var n uint64
		for _, h := range hosts {
			n += h.Awaited
		}
		return float64(n)
	})
	api := &httpapi.Server{Store: st, Metrics: a.metrics, Logger: log}
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

// close commits what is queued, then stops the API and the store.
func (a *aggregator) close() {
	_ = a.ingester.Close()
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

// logMetricsOnSignal writes the self-metrics to the log on SIGUSR1 until ctx
// ends.
func logMetricsOnSignal(ctx context.Context, r *metrics.Registry, log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				var b strings.Builder
				r.WritePrometheus(&b)
				for _, line := range strings.Split(b.String(), "\n") {
					if line != "" && !strings.HasPrefix(line, "#") {
						log.Info("metric", "value", line)
					}
				}
			}
		}
	}()
}

// BrokerFlags configure the embedded broker.
type BrokerFlags struct {
	MQTTAddr      string        `name:"mqtt-addr" help:"MQTT listen address of the embedded broker." default:"127.0.0.1:1883" placeholder:"HOST:PORT" config:"server.mqtt_addr"`
	MaxInflight   int           `help:"Per client, most QoS 1 messages awaiting delivery; beyond it the broker drops (and counts) them." default:"32768" config:"server.max_inflight"`
	SessionExpiry time.Duration `help:"How long the broker keeps the session of a disconnected client." default:"24h" config:"server.session_expiry"`
}

func (f BrokerFlags) options(data string, maxPayload int, log *slog.Logger) broker.Options {
	return broker.Options{
		Addr:          f.MQTTAddr,
		MaxPayload:    uint32(maxPayload) + 1024, // room for the topic and headers
		StatePath:     filepath.Join(data, "broker.db"),
		MaxInflight:   f.MaxInflight,
		SessionExpiry: f.SessionExpiry,
		Logger:        log,
	}
}

// registerBrokerMetrics adds the broker's drop counters to r.
func registerBrokerMetrics(r *metrics.Registry, b *broker.Broker) {
	r.GaugeFunc("apd_broker_dropped_publishes", "Messages the broker dropped for clients over their limits (since start).", func() float64 {
		p, _ := b.Dropped()
		return float64(p)
	})
	r.GaugeFunc("apd_broker_dropped_inflight", "In-flight messages the broker dropped or expired (since start).", func() float64 {
		_, i := b.Dropped()
		return float64(i)
	})
}

// ServeCmd is apd serve.
type ServeCmd struct {
	DataFlags
	HTTPFlags
	IngestFlags
	BrokerFlags
	WithPublisher bool `help:"Also sample this machine's sensors and publish them." config:"server.with_publisher"`
	PublisherFlags
}

// Help implements kong's HelpProvider.
func (ServeCmd) Help() string {
	return `Runs the embedded MQTT broker, the aggregator (storing readings in
<data>/apd.db) and the HTTP API in one process.

Examples:
  apd serve --with-publisher
  apd serve --data /var/lib/apd --mqtt-addr 127.0.0.1:1883 --http-addr 127.0.0.1:8080`
}

// Run implements the command.
func (c *ServeCmd) Run(ctx context.Context, g *Globals, file *config.File) error {
	log := g.Logger()
	topics := schema.Topics{Prefix: g.Prefix}
	var sensors []publisher.Named
	if c.WithPublisher {
		// Fail on a bad sensor list before anything listens.
		var err error
		if sensors, err = buildSensors(c.SensorFlags, file); err != nil {
			return err
		}
	}
	// The ingester acknowledges through the broker, which needs the
	// ingester's hook: the broker is filled in once it runs.
	var brkRef atomic.Pointer[broker.Broker]
	ack := func(topic string, payload []byte) error {
		b := brkRef.Load()
		if b == nil {
			return errors.New("broker not started")
		}
		return b.Publish(topic, payload, true)
	}
	agg, err := openAggregator(c.DataFlags, c.IngestFlags, c.HTTPFlags, topics, ack, log)
	if err != nil {
		return err
	}
	bopts := c.BrokerFlags.options(c.Data, c.MaxPayload, g.brokerLogger())
	bopts.Hooks = []mqtt.Hook{subscriber.NewHook(agg.ingester)}
	brk, err := broker.Start(bopts)
	if err != nil {
		agg.close()
		return withCode(ExitFailure, err, "pass another --mqtt-addr")
	}
	brkRef.Store(brk)
	registerBrokerMetrics(agg.metrics, brk)
	log.Info("apd serve running", "mqtt", brk.Addr(), "http", agg.HTTPURL(), "db", agg.store.Path(), "version", Version)
	logMetricsOnSignal(ctx, agg.metrics, log)
	agg.logProgress(ctx)

	var agentDone chan error
	var ag *agent
	if c.WithPublisher {
		ag, err = startAgent(c.PublisherFlags, sensors, "tcp://"+brk.Addr(),
			filepath.Join(c.Data, "apd-spool.db"), topics, true, log)
		if err != nil {
			brk.Close()
			agg.close()
			return err
		}
		agg.metrics.GaugeFunc("apd_spool_depth", "Readings of the local publisher waiting for acknowledgement.", func() float64 {
			return float64(ag.spool.Depth())
		})
		agg.metrics.GaugeFunc("apd_spool_dropped", "Readings the local publisher's full spool ever dropped.", func() float64 {
			_, d := ag.spool.Stats()
			return float64(d)
		})
		agentDone = make(chan error, 1)
		go func() { agentDone <- ag.pub.Run(ctx) }()
		log.Info("publishing this machine", "interval", c.Interval, "sensors", len(sensors))
	}
	<-ctx.Done()
	log.Info("shutting down")
	if ag != nil {
		if err := <-agentDone; err != nil {
			log.Warn("publisher stopped", "err", err)
		}
		ag.close()
		brk.WaitGone(ag.clientID, time.Second)
	}
	// Stop the broker first so no publish reaches a closed ingester, then
	// commit what is queued.
	_ = brk.Close()
	agg.close()
	return nil
}

// BrokerCmd is apd broker.
type BrokerCmd struct {
	BrokerFlags
	DataFlags
	MaxPayload int `help:"Largest accepted payload in bytes." default:"65536" config:"server.max_payload"`
}

// Help implements kong's HelpProvider.
func (BrokerCmd) Help() string {
	return `Runs the embedded MQTT broker alone. Sessions, subscriptions, retained and
in-flight messages are kept in <data>/broker.db across restarts.

Example:
  apd broker --mqtt-addr 127.0.0.1:1883 --data /var/lib/apd`
}

// Run implements the command.
func (c *BrokerCmd) Run(ctx context.Context, g *Globals) error {
	log := g.Logger()
	brk, err := broker.Start(c.BrokerFlags.options(c.Data, c.MaxPayload, g.brokerLogger()))
	if err != nil {
		return withCode(ExitFailure, err, "pass another --mqtt-addr")
	}
	log.Info("apd broker running", "mqtt", brk.Addr())
	<-ctx.Done()
	err = brk.Close()
	p, i := brk.Dropped()
	log.Info("apd broker stopped", "dropped_publishes", p, "dropped_inflight", i)
	return err
}

// AggregateCmd is apd aggregate.
type AggregateCmd struct {
	DataFlags
	HTTPFlags
	IngestFlags
	Broker       string `help:"Broker URL: tcp://, ssl:// or ws://." default:"tcp://127.0.0.1:1883" config:"aggregator.broker"`
	ClientID     string `help:"MQTT client id; fixed so the broker keeps the session." default:"apd-aggregator" config:"aggregator.client_id"`
	Username     string `help:"Broker user name." config:"aggregator.username"`
	PasswordFile string `help:"File holding the broker password." placeholder:"FILE" type:"path" config:"aggregator.password_file"`
	TLSCA        string `name:"tls-ca" help:"PEM file of CAs to trust for ssl:// brokers." placeholder:"FILE" type:"path" config:"aggregator.tls_ca"`
}

// Help implements kong's HelpProvider.
func (AggregateCmd) Help() string {
	return `Subscribes to readings on any MQTT broker (Mosquitto, EMQX, HiveMQ, apd broker)
with a persistent QoS 1 session, stores them, and acknowledges each message to
the broker only after it is committed.

Example:
  apd aggregate --broker tcp://mqtt.lan:1883 --data /var/lib/apd`
}

// Run implements the command.
func (c *AggregateCmd) Run(ctx context.Context, g *Globals) error {
	log := g.Logger()
	topics := schema.Topics{Prefix: g.Prefix}
	password, err := readPassword(c.PasswordFile)
	if err != nil {
		return err
	}
	var clientRef atomic.Pointer[mqttc.Client]
	dialed := make(chan struct{})
	ack := func(topic string, payload []byte) error {
		client := clientRef.Load()
		if client == nil {
			return errors.New("not connected")
		}
		go func() {
			actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := client.Publish(actx, topic, payload, true); err != nil {
				log.Debug("publish acknowledgement", "topic", topic, "err", err)
			}
		}()
		return nil
	}
	agg, err := openAggregator(c.DataFlags, c.IngestFlags, c.HTTPFlags, topics, ack, log)
	if err != nil {
		return err
	}
	defer agg.close()
	subscribed := make(chan error, 1)
	client, err := mqttc.Dial(mqttc.Options{
		URL: c.Broker, ClientID: c.ClientID, Username: c.Username, Password: password, TLSCA: c.TLSCA,
		QoS: 1, Persistent: true, ManualAck: true, Logger: log,
		Unsolicited: agg.ingester.Handle,
		OnConnect: func() {
			// Subscribe on every connection: the broker may not have kept
			// the session.
			go func() {
				<-dialed
				err := subscriber.Subscribe(agg.ingester, clientRef.Load())
				select {
				case subscribed <- err:
				default:
				}
				if err != nil {
					log.Error("subscribe", "err", err)
				}
			}()
		},
	})
	if err != nil {
		return err
	}
	clientRef.Store(client)
	close(dialed)
	defer client.Close()
	if err := <-subscribed; err != nil {
		return err
	}
	log.Info("apd aggregate running", "broker", c.Broker, "http", agg.HTTPURL(), "db", agg.store.Path())
	logMetricsOnSignal(ctx, agg.metrics, log)
	agg.logProgress(ctx)
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}
