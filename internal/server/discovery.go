package server

import (
	"context"
	"errors"
	"time"
)

// retainedPublisher is a Link that publishes retained messages: the Home
// Assistant discovery configs of rule outcomes (rules.HADiscovery), which
// Home Assistant must find whenever it subscribes.
type retainedPublisher interface {
	PublishRetained(topic string, payload []byte) error
}

var (
	_ retainedPublisher = (*EmbeddedBroker)(nil)
	_ retainedPublisher = clientLink{}
)

// PublishRetained publishes a retained message at QoS 1, which the broker
// keeps in its state file across restarts (unlike Acknowledge's).
func (e *EmbeddedBroker) PublishRetained(topic string, payload []byte) error {
	return e.brk.Publish(topic, payload, true)
}

// PublishRetained publishes a retained message; the broker must let this
// user publish under the discovery prefix (the admin role on apd's own
// broker).
func (l clientLink) PublishRetained(topic string, payload []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.c.Publish(ctx, topic, payload, true)
}

// publishRetained is the rules' way to publish retained messages: through
// the link, once there is one.
func (s *Server) publishRetained(topic string, payload []byte) error {
	rp, ok := s.link.(retainedPublisher)
	if !ok {
		return errors.New("not started, or a transport that cannot publish retained messages")
	}
	return rp.PublishRetained(topic, payload)
}
