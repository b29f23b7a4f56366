package apdcmd

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/agent"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
	"github.com/apd-telemetry/apd/subscriber"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// ServeCmd is apd serve.
type ServeCmd struct {
	DataFlags
	HTTPFlags
	IngestFlags
	BrokerFlags
	WithPublisher bool `help:"Also sample this machine's sensors and publish them." config:"server.with_publisher"`
	agent.PublisherFlags
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
func (c *ServeCmd) Run(ctx context.Context, g *cli.Globals, file *config.File) error {
	log := g.Logger()
	keep, err := c.retention()
	if err != nil {
		return err
	}
	topics := schema.Topics{Prefix: g.Prefix}
	var sensors []publisher.Named
	if c.WithPublisher {
		// Fail on a bad sensor list before anything listens.
		if sensors, err = agent.BuildSensors(c.SensorFlags, file); err != nil {
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
	ruleCfgs, err := loadRules(file)
	if err != nil {
		return err
	}
	// A rule's outcome goes through the broker like any reading: to MQTT
	// subscribers, and by the ingestion hook to the store and the rules.
	publish := func(topic string, payload []byte) error {
		b := brkRef.Load()
		if b == nil {
			return errors.New("broker not started")
		}
		return b.Publish(topic, payload, false)
	}
	agg, err := openAggregator(c.DataFlags, c.IngestFlags, c.HTTPFlags, topics, ack, ruleCfgs, publish, log)
	if err != nil {
		return err
	}
	users, err := c.users()
	if err != nil {
		agg.close()
		return err
	}
	tc, err := c.tls()
	if err != nil {
		agg.close()
		return err
	}
	bopts := c.BrokerFlags.options(c.Data, c.MaxPayload, g.Prefix, users, tc, g.BrokerLogger())
	ingest := subscriber.NewHook(agg.ingester)
	ingest.Sender = broker.Sender
	bopts.Hooks = []mqtt.Hook{ingest}
	brk, err := broker.Start(bopts)
	if err != nil {
		agg.close()
		return brokerStartError(err)
	}
	brkRef.Store(brk)
	agg.acknowledgeStored()
	c.reloadUsersOnSignal(ctx, brk, log)
	c.logAccess(log, users)
	registerBrokerMetrics(agg.metrics, brk)
	log.Info("apd serve running", "mqtt", brk.Addr(), "http", agg.HTTPURL(), "db", storeLocation(agg.store), "version", cli.Version)
	agg.logMetricsOnSignal(ctx)
	agg.logProgress(ctx)
	agg.startRetention(ctx, keep)

	var agentDone chan error
	var ag *agent.Agent
	if c.WithPublisher {
		ag, err = agent.StartAgent(c.PublisherFlags, cli.ClientCertFlags{}, sensors, "tcp://"+brk.Addr(),
			filepath.Join(c.Data, "apd-spool.db"), topics, true, log)
		if err != nil {
			brk.Close()
			agg.close()
			return err
		}
		agg.metrics.GaugeFunc("apd_spool_depth", "Readings of the local publisher waiting for acknowledgement.", func() float64 {
			return float64(ag.Spool.Depth())
		})
		agg.metrics.GaugeFunc("apd_spool_dropped", "Readings the local publisher's full spool ever dropped.", func() float64 {
			_, d := ag.Spool.Stats()
			return float64(d)
		})
		agentDone = make(chan error, 1)
		go func() { agentDone <- ag.Pub.Run(ctx) }()
		log.Info("publishing this machine", "interval", c.Interval, "sensors", len(sensors))
	}
	agg.setReady("")
	<-ctx.Done()
	agg.setReady("shutting down")
	log.Info("shutting down")
	if ag != nil {
		if err := <-agentDone; err != nil {
			log.Warn("publisher stopped", "err", err)
		}
		ag.Close()
		brk.WaitGone(ag.ClientID, time.Second)
	}
	// No client may publish any more (their wills are in); then commit
	// what is queued and acknowledge it through the broker, which keeps
	// the acknowledgements; then stop the broker.
	brk.StopListening()
	agg.close()
	_ = brk.Close()
	return nil
}
