// Package mqttsub is the transport of an aggregator on another broker
// (Mosquitto, EMQX, apd broker): a persistent QoS 1 subscription whose
// every message is acknowledged to the broker only after the commit that
// stores it, so a crash before the commit makes the broker deliver it
// again.
package mqttsub

import (
	"fmt"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/mqttc"
)

// New makes the aggregator's client of the broker opts names (URL, client
// id, login, TLS), with what the subscription needs whatever opts says: a
// persistent session at QoS 1 with manual acknowledgement, the handler
// for a resumed session's queue (which arrives before the subscription is
// made again), and the subscription, made on every connection from Start
// on. With share set, the subscription is a member of that shared
// subscription group ($share/<share>/…), and the broker gives each
// message to one member.
func New(in *ingest.Ingester, opts mqttc.Options, share string) (*mqttc.Client, error) {
	opts.QoS, opts.Persistent, opts.ManualAck = 1, true, true
	opts.Unsolicited = Handler(in)
	c, err := mqttc.New(opts)
	if err != nil {
		return nil, err
	}
	if err := Subscribe(in, c, share); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Subscribe feeds every message under the ingester's prefix from the
// broker into in. The client must be persistent with manual
// acknowledgement (mqttc.Options Persistent and ManualAck), and should
// have Handler as its Unsolicited.
func Subscribe(in *ingest.Ingester, c *mqttc.Client, share string) error {
	filter := in.Topics().All()
	if share != "" {
		filter = "$share/" + share + "/" + filter
	}
	if err := c.SubscribeMessages(filter, Handler(in)); err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	return nil
}

// Handler returns what submits a message from the broker to in and
// acknowledges it to the broker after the commit.
func Handler(in *ingest.Ingester) func(mqttc.Message) {
	return func(m mqttc.Message) {
		if _, err := in.SubmitMessage(m.Topic, m.Payload, m.Ack); err != nil {
			// Not acknowledged: the broker delivers it again after a restart.
			in.Logger().Warn("ingest closed; message left to the broker", "topic", m.Topic)
		}
	}
}
