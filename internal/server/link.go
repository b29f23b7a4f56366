package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
)

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
