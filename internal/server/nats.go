package server

import (
	"context"

	"github.com/apd-telemetry/apd/internal/ingest/natsfeed"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
)

// NATS is apd aggregate's transport on a NATS cluster: readings from the
// partitions of a JetStream stream that this aggregator claims
// (natsfeed), the partitions divided among the aggregators on one store
// that keeps claims (store.Claimer: PostgreSQL); acknowledgements and
// rule outcomes through the nodes' MQTT gateway, retained, as from any
// broker.
type NATS struct {
	// URL is the cluster: nats://host:port, several comma-separated.
	URL string
	// Partitions is how many partitions the stream has (fixed when it is
	// made: every aggregator must agree); 0 means natsfeed's default.
	Partitions int
	// Acks is the client of the nodes' MQTT listeners that carries the
	// acknowledgements; its ClientID also names this aggregator among
	// those dividing the partitions. Logger defaults to the server's.
	Acks mqttc.Options

	claims     store.Claims
	feed       *natsfeed.Feed
	c          *mqttc.Client
	clientLink // Acknowledge and Publish, through c (the MQTT gateway)
}

var _ Transport = (*NATS)(nil)

// Attach registers this aggregator for the partitions on the store,
// makes (or updates) the stream and makes the acknowledging client.
// Errors wrap ErrNoClaims (the store keeps no claims), ErrClaims or
// ErrSourceUnreachable.
func (n *NATS) Attach(ctx context.Context, s *Server) error {
	claimer, ok := s.Store().(store.Claimer)
	if !ok {
		return ErrNoClaims
	}
	claims, err := claimer.Claims(ctx, n.Acks.ClientID)
	if err != nil {
		return markError(ErrClaims, err)
	}
	log := s.Logger()
	feed, err := natsfeed.New(natsfeed.Options{URL: n.URL, Prefix: s.Topics().Prefix, Partitions: n.Partitions,
		Claims: claims, Ingester: s.Ingester(), Logger: log})
	if err != nil {
		claims.Close()
		return markError(ErrSourceUnreachable, err)
	}
	opts := n.Acks
	// QoS 0, as apd serve's: a later $ack supersedes an earlier one and a
	// reconnecting device gets the retained latest; on NATS a QoS 1
	// publish costs a JetStream write on top of the retained one.
	opts.QoS = 0
	if opts.Logger == nil {
		opts.Logger = log
	}
	c, err := mqttc.New(opts)
	if err != nil {
		feed.Close()
		claims.Close()
		return err
	}
	n.claims, n.feed, n.c, n.clientLink = claims, feed, c, newClientLink(c, log)
	s.reportPartitions(feed.Held)
	return nil
}

// Start connects the acknowledging client, then claims partitions and
// reads them, now and every rebalance.
func (n *NATS) Start() error {
	if err := n.c.Start(); err != nil {
		return err
	}
	n.feed.Start()
	return nil
}

// StopTaking stops reading the partitions; what was taken is committed
// and acknowledged to JetStream in the drain.
func (n *NATS) StopTaking() { n.feed.Stop() }

// Close waits a while for the $acks on their way, disconnects, flushes
// the stream's acknowledgements and gives up the claims.
func (n *NATS) Close() {
	n.wait(ackFlushTimeout)
	n.c.Close()
	n.feed.Close()
	n.claims.Close()
}

// Running names the cluster, the gateway, the client id and the
// partitions.
func (n *NATS) Running() []any {
	return []any{"source", n.URL, "acknowledging_through", n.Acks.URL, "client_id", n.Acks.ClientID, "partitions", n.Partitions}
}
