package ingest

import (
	"fmt"

	"github.com/apd-telemetry/apd/internal/mqttc"
)

// Subscribe feeds every message under the ingester's prefix from an
// external broker into in. The client should be persistent with manual
// acknowledgement (mqttc.Options Persistent and ManualAck): each message is
// acknowledged to the broker only after the commit that stores it, so a
// crash before the commit makes the broker deliver it again. With share
// set, the subscription is a member of that shared subscription group
// ($share/share/…), and the broker gives each message to one member.
func Subscribe(in *Ingester, c *mqttc.Client, share string) error {
	filter := in.opts.Topics.All()
	if share != "" {
		filter = "$share/" + share + "/" + filter
	}
	if err := c.SubscribeMessages(filter, in.Handle); err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	return nil
}

// Handle submits a message received from an external broker and
// acknowledges it to the broker after the commit. Use it as the client's
// mqttc.Options.Unsolicited too, so a resumed session's queue, delivered
// before Subscribe, is stored rather than dropped.
func (in *Ingester) Handle(m mqttc.Message) {
	if err := in.Submit(m.Topic, m.Payload, m.Ack); err != nil {
		// Not acknowledged: the broker delivers it again after a restart.
		in.log.Warn("ingest closed; message left to the broker", "topic", m.Topic)
	}
}
