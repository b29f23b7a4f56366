package server

import (
	"context"
	"slices"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest/brokerhook"
	"github.com/apd-telemetry/apd/internal/metrics"
)

// EmbeddedBroker is apd serve's transport: the MQTT broker in this
// process, whose ingestion hook (brokerhook) submits every publish
// before it is delivered and releases its PUBACK after the commit.
// Acknowledgements ($ack, retained, QoS 0) and rule outcomes are
// published from inside the process.
type EmbeddedBroker struct {
	// Options configure the broker; the ingestion hook is added after
	// their Hooks.
	Options broker.Options

	brk         *broker.Broker
	startFailed bool
}

var _ Transport = (*EmbeddedBroker)(nil)

// Attach makes the broker with the ingestion hook; it binds its
// listeners but admits no client before Start. Its errors wrap
// ErrBrokerStart.
func (e *EmbeddedBroker) Attach(_ context.Context, s *Server) error {
	hook := brokerhook.New(s.Ingester())
	hook.Sender = broker.Sender
	opts := e.Options
	opts.Hooks = append(slices.Clone(opts.Hooks), hook)
	brk, err := broker.New(opts)
	if err != nil {
		return markError(ErrBrokerStart, err)
	}
	e.brk = brk
	registerBrokerMetrics(s.Metrics(), brk)
	return nil
}

// Broker is the broker, once attached.
func (e *EmbeddedBroker) Broker() *broker.Broker { return e.brk }

// Acknowledge publishes a retained $ack that a later one supersedes
// (broker.PublishState).
func (e *EmbeddedBroker) Acknowledge(topic string, payload []byte) error {
	return e.brk.PublishState(topic, payload)
}

// Publish publishes a rule's outcome: subscribers get it, and the hook
// submits it like any reading.
func (e *EmbeddedBroker) Publish(topic string, payload []byte) error {
	return e.brk.Publish(topic, payload, false)
}

// Start serves the listeners; its errors wrap ErrBrokerStart.
func (e *EmbeddedBroker) Start() error {
	if err := e.brk.Start(); err != nil {
		e.startFailed = true // the broker closed itself
		return markError(ErrBrokerStart, err)
	}
	return nil
}

// StopTaking closes the listeners and disconnects every client: their
// wills are in. The broker still publishes from inside the process and
// keeps what it retains: the drain's acknowledgements.
func (e *EmbeddedBroker) StopTaking() { e.brk.StopListening() }

// Close stops the broker.
func (e *EmbeddedBroker) Close() {
	if !e.startFailed {
		_ = e.brk.Close()
	}
}

// Running names the listeners and their addresses.
func (e *EmbeddedBroker) Running() []any { return e.brk.ListenerAttrs() }

// registerBrokerMetrics adds the broker's drop counters to r.
func registerBrokerMetrics(r *metrics.Registry, b *broker.Broker) {
	r.CounterFunc("apd_broker_dropped_publishes_total", "Messages the broker dropped for clients over their limits.", func() uint64 {
		p, _ := b.Dropped()
		return p
	})
	r.CounterFunc("apd_broker_dropped_inflight_total", "In-flight messages the broker dropped or expired.", func() uint64 {
		_, i := b.Dropped()
		return i
	})
	r.CounterFunc("apd_broker_dropped_queued_total", "Deliveries dropped because the subscriber's user, or the broker, held its most queued messages.", b.DroppedQueued)
	r.GaugeFunc("apd_broker_queued", "Messages the broker holds for delivery (in flight).", func() float64 {
		return float64(b.Queued())
	})
}
