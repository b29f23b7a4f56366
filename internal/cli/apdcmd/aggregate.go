package apdcmd

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/schema"
	"github.com/apd-telemetry/apd/subscriber"
)

// AggregateCmd is apd aggregate.
type AggregateCmd struct {
	serverFlags
	Broker        string `help:"Broker URL: tcp://, ssl:// or ws://." default:"tcp://127.0.0.1:1883" config:"aggregator.broker"`
	ClientID      string `help:"MQTT client id; fixed so the broker keeps the session. With --share each aggregator needs its own (default apd-aggregator-<hostname>)." default:"apd-aggregator" config:"aggregator.client_id"`
	Share         string `help:"Share the work with other aggregators: subscribe as a member of shared subscription group GROUP ($share/GROUP/apd/#); each host's readings go to one member. Use one PostgreSQL --store for all." placeholder:"GROUP" config:"aggregator.share"`
	cli.MQTTLogin `embed:"" envprefix:"APD_AGGREGATOR_"`
	cli.ClientCertFlags
}

// Help implements kong's HelpProvider.
func (AggregateCmd) Help() string {
	return `Subscribes to readings on any MQTT broker (Mosquitto, EMQX, HiveMQ, apd broker)
with a persistent QoS 1 session, stores them, and acknowledges each message to
the broker only after it is committed.

Several aggregators can share the work of one broker and one PostgreSQL
database (--share): the broker gives each host's readings to one of
them; readings are stored once whoever stores them, and each host's
watermark is advanced in the database. apd's own broker keeps a host with
one connected member; EMQX does so with shared_subscription_strategy =
hash_clientid. See docs/scale.md.

Examples:
  apd aggregate --broker tcp://mqtt.lan:1883 --data /var/lib/apd
  apd aggregate --broker tcp://mqtt.lan:1883 --share apd --store postgres://apd@db.lan/apd`
}

// clientLink carries the aggregator's acknowledgements and rule outcomes
// to an external broker. Acknowledgements go out in the background (the
// commit path must not wait for the broker) and are counted, so a stop
// can wait for them before the connection closes.
type clientLink struct {
	c       *mqttc.Client
	acking  *sync.WaitGroup
	onError func(topic string, err error)
}

func (l clientLink) Acknowledge(topic string, payload []byte) error {
	l.acking.Add(1)
	go func() {
		defer l.acking.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.c.Publish(ctx, topic, payload, true); err != nil {
			l.onError(topic, err)
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

// Run implements the command: the aggregator and its MQTT client are
// built, the subscription handed to the client (which makes it again on
// every connection), then both started; a stop commits and acknowledges
// what is queued before the connection closes.
func (c *AggregateCmd) Run(ctx context.Context, g *cli.Globals, file *config.File) error {
	log := g.Logger()
	topics := schema.Topics{Prefix: g.Prefix}
	password, err := c.Password()
	if err != nil {
		return err
	}
	clientID, name := c.ClientID, ""
	if c.Share != "" {
		if strings.ContainsAny(c.Share, "/+#") {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--share %q: a group name has no /, + or #", c.Share), "")
		}
		if clientID == "apd-aggregator" {
			host, _ := os.Hostname()
			clientID = "apd-aggregator-" + cmp.Or(host, "unknown")
		}
		name = clientID
	}
	srv, err := c.newServer(topics, name, file, log)
	if err != nil {
		return err
	}
	client, err := mqttc.New(mqttc.Options{
		URL: c.Broker, ClientID: clientID, Username: c.Username, Password: password, TLSCA: c.TLSCA, TLSCert: c.TLSCert, TLSKey: c.TLSKey,
		QoS: 1, Persistent: true, ManualAck: true, Logger: log,
		// A resumed session's queue arrives before the subscription is
		// made again: it is stored too.
		Unsolicited: srv.Ingester().Handle,
	})
	if err != nil {
		srv.Close()
		return err
	}
	if err := subscriber.Subscribe(srv.Ingester(), client, c.Share); err != nil {
		srv.Close()
		return err
	}
	var acking sync.WaitGroup
	srv.Start(ctx, clientLink{c: client, acking: &acking, onError: func(topic string, err error) {
		log.Debug("publish acknowledgement", "topic", topic, "err", err)
	}})
	if err := client.Start(); err != nil {
		srv.Close()
		return err
	}
	log.Info("apd aggregate running", "broker", c.Broker, "http", srv.HTTPURL(), "db", storeLocation(srv.Store()), "client_id", clientID, "share", c.Share)
	srv.SetReady("")
	<-ctx.Done()
	srv.SetReady("shutting down")
	log.Info("shutting down")
	srv.Drain()
	waitTimeout(&acking, 5*time.Second)
	client.Close()
	srv.Close()
	return nil
}

// waitTimeout waits for wg, at most timeout.
func waitTimeout(wg *sync.WaitGroup, timeout time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}
