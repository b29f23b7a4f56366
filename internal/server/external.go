package server

import (
	"context"

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

	c          *mqttc.Client
	clientLink // Acknowledge and Publish, through c
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
	e.c, e.clientLink = c, newClientLink(c, s.Logger())
	return nil
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
	e.wait(ackFlushTimeout)
	e.c.Close()
}

// Running names the broker, the client id and the shared group.
func (e *ExternalBroker) Running() []any {
	return []any{"broker", e.Client.URL, "client_id", e.Client.ClientID, "share", e.Share}
}
