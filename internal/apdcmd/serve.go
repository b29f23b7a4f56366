package apdcmd

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/agent"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/server"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
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

// Run implements the command: the aggregator on the embedded broker,
// and the local publisher, which starts once the broker listens and
// stops before it does.
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
	srv, err := c.newServer(topics, "", c.DiscoveryPrefix, file, log)
	if err != nil {
		return err
	}
	tr := &server.EmbeddedBroker{Options: c.BrokerFlags.options(c.Data, c.MaxPayload, g.Prefix, users, tc, g.BrokerLogger())}
	local := localPublisher{flags: c.PublisherFlags, sensors: sensors, data: c.Data, topics: topics, log: log}
	err = srv.Run(ctx, tr, server.RunOptions{Name: "apd serve", Attrs: []any{"db", storeLocation(srv.Store()), "version", cli.Version},
		Started: func() error {
			c.logAccess(log, users)
			c.reloadUsersOnSignal(ctx, tr.Broker(), log)
			if !c.WithPublisher {
				return nil
			}
			return local.start(ctx, tr.Broker(), srv.Metrics())
		},
		Stopping: func() {
			if c.WithPublisher {
				local.stop(tr.Broker())
			}
		}})
	if errors.Is(err, server.ErrBrokerStart) {
		return brokerStartError(err)
	}
	return err
}

// localPublisher is apd serve --with-publisher's publisher of this
// machine, a client of the embedded broker like any device.
type localPublisher struct {
	flags   agent.PublisherFlags
	sensors []publisher.Named
	data    string
	topics  schema.Topics
	log     *slog.Logger

	ag   *agent.Agent
	done chan error
}

// start connects the publisher to brk and runs it until ctx ends; its
// spool is reported on metrics.
func (p *localPublisher) start(ctx context.Context, brk *broker.Broker, m *metrics.Registry) error {
	ag, err := agent.NewAgent(p.flags, cli.ClientCertFlags{}, p.sensors, "tcp://"+brk.Addr(),
		filepath.Join(p.data, "apd-spool.db"), p.topics, true, p.log)
	if err != nil {
		return err
	}
	if err := ag.Start(); err != nil {
		ag.Close()
		return err
	}
	m.GaugeFunc("apd_spool_depth", "Readings of the local publisher waiting for acknowledgement.", func() float64 {
		return float64(ag.Spool.Depth())
	})
	m.CounterFunc("apd_spool_dropped_total", "Readings the local publisher's full spool dropped.", func() uint64 {
		_, d := ag.Spool.Stats()
		return d
	})
	p.ag, p.done = ag, make(chan error, 1)
	go func() { p.done <- ag.Pub.Run(ctx) }()
	sampled := len(publisher.Sampled(p.sensors))
	p.log.Info("publishing this machine", "interval", p.flags.Interval, "sensors", sampled, "absent", len(p.sensors)-sampled)
	return nil
}

// stop waits for the publisher, which stops with ctx, closes it, and
// waits for the broker to see it gone: closing the broker while its
// DISCONNECT is unread would publish its last will as if it had died.
func (p *localPublisher) stop(brk *broker.Broker) {
	if p.ag == nil {
		return
	}
	if err := <-p.done; err != nil {
		p.log.Warn("publisher stopped", "err", err)
	}
	p.ag.Close()
	brk.WaitGone(p.ag.ClientID, time.Second)
}
