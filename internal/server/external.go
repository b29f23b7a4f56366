package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest/mqttsub"
	"github.com/apd-telemetry/apd/internal/mqttc"
)

// ExternalBroker is apd aggregate's transport on any MQTT broker
// (Mosquitto, EMQX, apd broker): a persistent QoS 1 subscription
// (mqttsub) whose every message is acknowledged to the broker after the
// commit, and the same client publishing the $acks and rule outcomes.
type ExternalBroker struct {
	// Client is the aggregator's client: URL, client id, login, TLS. The
	// session settings are the subscription's; Logger defaults to the
	// server's.
	Client mqttc.Options
	// Share, when set, makes the subscription a member of this shared
	// subscription group: the broker gives each host's readings to one
	// member.
	Share string

	c    *mqttc.Client
	link clientLink
}

var _ Transport = (*ExternalBroker)(nil)

// Attach makes the client and hands it the subscription, which it makes
// on every connection from Start on.
func (e *ExternalBroker) Attach(_ context.Context, s *Server) error {
	opts := e.Client
	if opts.Logger == nil {
		opts.Logger = s.Logger()
	}
	c, err := mqttsub.New(s.Ingester(), opts, e.Share)
	if err != nil {
		return err
	}
	e.c, e.link = c, newClientLink(c, s.Logger())
	return nil
}

// Acknowledge publishes a retained $ack in the background.
func (e *ExternalBroker) Acknowledge(topic string, payload []byte) error {
	return e.link.Acknowledge(topic, payload)
}

// Publish sends a rule's outcome.
func (e *ExternalBroker) Publish(topic string, payload []byte) error {
	return e.link.Publish(topic, payload)
}

// Start connects; it returns once subscribed.
func (e *ExternalBroker) Start() error { return e.c.Start() }

// StopTaking does nothing: what the broker delivers during the drain is
// refused by the closed ingester and left unacknowledged, so the broker
// delivers it again to the next session.
func (e *ExternalBroker) StopTaking() {}

// Close waits a while for the acknowledgements on their way, then
// disconnects.
func (e *ExternalBroker) Close() {
	e.link.wait(ackFlushTimeout)
	e.c.Close()
}

// Running names the broker, the client id and the shared group.
func (e *ExternalBroker) Running() []any {
	return []any{"broker", e.Client.URL, "client_id", e.Client.ClientID, "share", e.Share}
}

// ackFlushTimeout bounds how long a stop waits for the last
// acknowledgements to reach an external broker.
const ackFlushTimeout = 5 * time.Second

// clientLink carries acknowledgements and rule outcomes through an MQTT
// client. Acknowledgements go out in the background (the commit path
// must not wait for a broker) and are counted, so a stop can wait for
// them before the connection closes.
type clientLink struct {
	c      *mqttc.Client
	log    *slog.Logger
	acking *sync.WaitGroup
}

func newClientLink(c *mqttc.Client, log *slog.Logger) clientLink {
	return clientLink{c: c, log: log, acking: new(sync.WaitGroup)}
}

func (l clientLink) Acknowledge(topic string, payload []byte) error {
	l.acking.Add(1)
	go func() {
		defer l.acking.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.c.Publish(ctx, topic, payload, true); err != nil {
			l.log.Debug("publish acknowledgement", "topic", topic, "err", err)
		}
	}()
	return nil
}

// Publish sends a rule's outcome; the broker must let this user publish
// readings (the admin role on apd's own broker).
func (l clientLink) Publish(topic string, payload []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.c.Publish(ctx, topic, payload, false)
}

// wait waits for the acknowledgements on their way, at most timeout.
func (l clientLink) wait(timeout time.Duration) {
	done := make(chan struct{})
	go func() { l.acking.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}
