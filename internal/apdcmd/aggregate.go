package apdcmd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/natsfeed"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/server"
	"github.com/apd-telemetry/apd/internal/store/pgstore"
	"github.com/apd-telemetry/apd/schema"
)

// AggregateCmd is apd aggregate.
type AggregateCmd struct {
	serverFlags
	Broker        string `help:"Broker URL: tcp://, ssl:// or ws://." default:"tcp://127.0.0.1:1883" config:"aggregator.broker"`
	ClientID      string `help:"MQTT client id; fixed so the broker keeps the session. With --share each aggregator needs its own (default apd-aggregator-<hostname>)." default:"apd-aggregator" config:"aggregator.client_id"`
	Share         string `help:"Share the work with other aggregators: subscribe as a member of shared subscription group GROUP ($share/GROUP/apd/#); each host's readings go to one member. Use one PostgreSQL --store for all." placeholder:"GROUP" config:"aggregator.share"`
	Source        string `help:"Read the readings from a NATS cluster instead (nats://host:4222, several comma-separated): devices publish over MQTT to any node, the readings are read from a replicated JetStream stream partitioned by host, the partitions divided among the aggregators on one PostgreSQL --store. --broker is then the nodes' MQTT listeners, for acknowledgements." placeholder:"URL" config:"aggregator.source"`
	Partitions    int    `help:"With --source: partitions of the stream (fixed when it is made; every aggregator must agree)." default:"8" config:"aggregator.partitions"`
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

With --source nats://… the readings come from a NATS cluster's JetStream
instead (devices keep publishing plain MQTT to any node): the aggregators
on one PostgreSQL database divide the stream's partitions among
themselves, and take over a stopped one's within seconds.

Examples:
  apd aggregate --broker tcp://mqtt.lan:1883 --data /var/lib/apd
  apd aggregate --broker tcp://mqtt.lan:1883 --share apd --store postgres://apd@db.lan/apd
  apd aggregate --source nats://n1:4222,nats://n2:4222 --broker tcp://n1:1883,tcp://n2:1883 \
      --store postgres://apd@db.lan/apd`
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
	if c.Share != "" && strings.ContainsAny(c.Share, "/+#") {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("--share %q: a group name has no /, + or #", c.Share), "")
	}
	if c.Source != "" && !pgstore.IsURL(c.storeLocation()) {
		return cli.WithCode(cli.ExitUsage, errors.New("--source needs a PostgreSQL --store: the aggregators divide the stream there"), "")
	}
	if c.Share != "" || c.Source != "" {
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
	if c.Source != "" {
		return c.runFromNATS(ctx, srv, clientID, password, log)
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
	if err := ingest.Subscribe(srv.Ingester(), client, c.Share); err != nil {
		srv.Close()
		return err
	}
	return runLinked(ctx, srv, client, log, nil, nil,
		"broker", c.Broker, "http", srv.HTTPURL(), "db", storeLocation(srv.Store()), "client_id", clientID, "share", c.Share)
}

// runLinked starts srv acknowledging through client (then start, when
// set) and runs until ctx ends. A stop first stops taking messages
// (stopTaking, when set), then commits and acknowledges what is queued,
// then closes the client and the server.
func runLinked(ctx context.Context, srv *server.Server, client *mqttc.Client, log *slog.Logger, start, stopTaking func(), running ...any) error {
	var acking sync.WaitGroup
	srv.Start(ctx, clientLink{c: client, acking: &acking, onError: func(topic string, err error) {
		log.Debug("publish acknowledgement", "topic", topic, "err", err)
	}})
	if err := client.Start(); err != nil {
		srv.Close()
		return err
	}
	if start != nil {
		start()
	}
	log.Info("apd aggregate running", running...)
	srv.SetReady("")
	<-ctx.Done()
	srv.SetReady("shutting down")
	log.Info("shutting down")
	if stopTaking != nil {
		stopTaking()
	}
	srv.Drain()
	waitTimeout(&acking, 5*time.Second)
	client.Close()
	srv.Close()
	return nil
}

// runFromNATS runs the aggregator on a NATS cluster: readings from the
// stream partitions it claims, acknowledgements to the devices through
// the nodes' MQTT gateway (retained, as from any broker).
func (c *AggregateCmd) runFromNATS(ctx context.Context, srv *server.Server, clientID, password string, log *slog.Logger) error {
	claims, err := pgstore.OpenClaims(ctx, c.storeLocation(), clientID)
	if err != nil {
		srv.Close()
		return cli.WithCode(cli.ExitFailure, err, "give each aggregator its own --client-id")
	}
	defer claims.Close()
	feed, err := natsfeed.New(natsfeed.Options{URL: c.Source, Prefix: srv.Topics().Prefix, Partitions: c.Partitions,
		Claims: claims, Submit: srv.Ingester().Submit, Logger: log})
	if err != nil {
		srv.Close()
		return cli.WithCode(cli.ExitUnreachable, err, "is the NATS cluster up, with JetStream?")
	}
	defer feed.Close() // after the drain: it flushes the stream acknowledgements
	client, err := mqttc.New(mqttc.Options{
		URL: c.Broker, ClientID: clientID, Username: c.Username, Password: password, TLSCA: c.TLSCA, TLSCert: c.TLSCert, TLSKey: c.TLSKey,
		// QoS 0, as apd serve's: a later $ack supersedes an earlier one and
		// a reconnecting device gets the retained latest; on NATS a QoS 1
		// publish costs a JetStream write on top of the retained one.
		QoS: 0, Logger: log,
	})
	if err != nil {
		srv.Close()
		return err
	}
	srv.ReportPartitions(feed.Held)
	return runLinked(ctx, srv, client, log, feed.Start, feed.Stop,
		"source", c.Source, "acknowledging_through", c.Broker, "http", srv.HTTPURL(),
		"db", storeLocation(srv.Store()), "client_id", clientID, "partitions", c.Partitions)
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
