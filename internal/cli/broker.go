package cli

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/metrics"
)

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
