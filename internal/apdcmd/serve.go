package apdcmd

import (
	"context"
	"path/filepath"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/agent"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// ServeCmd is apd serve.
type ServeCmd struct {
	serverFlags
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

// brokerLink carries the aggregator's acknowledgements and rule outcomes
// through the embedded broker, from inside the process: retained $acks,
// and outcomes that reach subscribers and, by the ingestion hook, the
// store like any reading.
type brokerLink struct{ b *broker.Broker }

func (l brokerLink) Acknowledge(topic string, payload []byte) error {
	return l.b.PublishState(topic, payload)
}
func (l brokerLink) Publish(topic string, payload []byte) error {
	return l.b.Publish(topic, payload, false)
}

// Run implements the command. Everything is built first, then started
// (aggregator, broker, local publisher), and stopped in reverse.
func (c *ServeCmd) Run(ctx context.Context, g *cli.Globals, file *config.File) error {
	log := g.Logger()
	topics := schema.Topics{Prefix: g.Prefix}
	var sensors []publisher.Named
	if c.WithPublisher {
		var err error
		// Fail on a bad sensor list before anything listens.
		if sensors, err = agent.BuildSensors(c.SensorFlags, file); err != nil {
			return err
		}
	}
	users, err := c.users()
	if err != nil {
		return err
	}
	tc, err := c.tls()
	if err != nil {
		return err
	}
	srv, err := c.newServer(topics, "", file, log)
	if err != nil {
		return err
	}
	bopts := c.BrokerFlags.options(c.Data, c.MaxPayload, g.Prefix, users, tc, g.BrokerLogger())
	ingest := ingest.NewHook(srv.Ingester())
	ingest.Sender = broker.Sender
	bopts.Hooks = []mqtt.Hook{ingest}
	brk, err := broker.New(bopts)
	if err != nil {
		srv.Close()
		return brokerStartError(err)
	}
	srv.Start(ctx, brokerLink{brk})
	if err := brk.Start(); err != nil {
		srv.Close()
		return brokerStartError(err)
	}
	c.reloadUsersOnSignal(ctx, brk, log)
	c.logAccess(log, users)
	registerBrokerMetrics(srv.Metrics(), brk)
	log.Info("apd serve running", "mqtt", brk.Addr(), "http", srv.HTTPURL(), "db", storeLocation(srv.Store()), "version", cli.Version)

	var agentDone chan error
	var ag *agent.Agent
	if c.WithPublisher {
		ag, err = agent.NewAgent(c.PublisherFlags, cli.ClientCertFlags{}, sensors, "tcp://"+brk.Addr(),
			filepath.Join(c.Data, "apd-spool.db"), topics, true, log)
		if err == nil {
			err = ag.Start()
		}
		if err != nil {
			brk.StopListening()
			srv.Close()
			_ = brk.Close()
			return err
		}
		srv.Metrics().GaugeFunc("apd_spool_depth", "Readings of the local publisher waiting for acknowledgement.", func() float64 {
			return float64(ag.Spool.Depth())
		})
		srv.Metrics().GaugeFunc("apd_spool_dropped", "Readings the local publisher's full spool ever dropped.", func() float64 {
			_, d := ag.Spool.Stats()
			return float64(d)
		})
		agentDone = make(chan error, 1)
		go func() { agentDone <- ag.Pub.Run(ctx) }()
		log.Info("publishing this machine", "interval", c.Interval, "sensors", len(sensors))
	}
	srv.SetReady("")
	<-ctx.Done()
	srv.SetReady("shutting down")
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
	srv.Close()
	_ = brk.Close()
	return nil
}
