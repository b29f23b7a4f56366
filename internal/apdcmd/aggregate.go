package apdcmd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/server"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/schema"
)

// errSourceNeedsShared refuses --source on a store only one aggregator
// writes to.
var errSourceNeedsShared = errors.New("--source needs a PostgreSQL --store: the aggregators divide the stream there")

// AggregateCmd is apd aggregate.
type AggregateCmd struct {
	serverFlags
	Broker     string `help:"Broker URL: tcp://, ssl:// or ws://." default:"tcp://127.0.0.1:1883" config:"aggregator.broker"`
	ClientID   string `help:"MQTT client id; fixed so the broker keeps the session. With --share each aggregator needs its own (default apd-aggregator-<hostname>)." default:"apd-aggregator" config:"aggregator.client_id"`
	Share      string `help:"Share the work with other aggregators: subscribe as a member of shared subscription group GROUP ($share/GROUP/apd/#); each host's readings go to one member. Use one PostgreSQL --store for all." placeholder:"GROUP" config:"aggregator.share"`
	Source     string `help:"Read the readings from a NATS cluster instead (nats://host:4222, several comma-separated): devices publish over MQTT to any node, the readings are read from a replicated JetStream stream partitioned by host, the partitions divided among the aggregators on one PostgreSQL --store. --broker is then the nodes' MQTT listeners, for acknowledgements." placeholder:"URL" config:"aggregator.source"`
	Partitions int    `help:"With --source: partitions of the stream (fixed when it is made; every aggregator must agree)." default:"8" config:"aggregator.partitions"`
	// The same key as apd serve's, which its broker's ACL also uses.
	DiscoveryPrefix string `name:"discovery-prefix" help:"Home Assistant's discovery prefix, for --rules-ha-discovery." default:"homeassistant" config:"server.discovery_prefix"`
	cli.MQTTLogin   `embed:"" envprefix:"APD_AGGREGATOR_"`
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

// Run implements the command: the aggregator on the transport its flags
// choose — a subscription to --broker (a member of --share's group), or
// the partitions of a NATS stream (--source) acknowledged through
// --broker.
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
	if c.Share != "" || c.Source != "" {
		if clientID == "apd-aggregator" {
			host, _ := os.Hostname()
			clientID = "apd-aggregator-" + cmp.Or(host, "unknown")
		}
		name = clientID
	}
	if c.Source != "" {
		// Before anything is opened or created: the aggregators divide the
		// stream in the database they share.
		loc, err := locateStore(c.storeLocation())
		if err != nil {
			return err
		}
		if _, ok := loc.Engine.(engine.Shared); !ok {
			return cli.WithCode(cli.ExitUsage, errSourceNeedsShared, "")
		}
	}
	srv, err := c.newServer(topics, name, c.DiscoveryPrefix, file, log)
	if err != nil {
		return err
	}
	client := mqttc.Options{URL: c.Broker, ClientID: clientID, Username: c.Username, Password: password,
		TLSCA: c.TLSCA, TLSCert: c.TLSCert, TLSKey: c.TLSKey, Logger: log}
	var tr server.Transport = &server.ExternalBroker{Client: client, Share: c.Share}
	if c.Source != "" {
		tr = &server.NATS{URL: c.Source, Partitions: c.Partitions, Acks: client}
	}
	err = srv.Run(ctx, tr, server.RunOptions{Name: "apd aggregate", Attrs: []any{"db", storeLocation(srv.Store())}})
	switch {
	case errors.Is(err, server.ErrNoClaims):
		return cli.WithCode(cli.ExitUsage, errSourceNeedsShared, "")
	case errors.Is(err, server.ErrClaims):
		return cli.WithCode(cli.ExitFailure, err, "give each aggregator its own --client-id")
	case errors.Is(err, server.ErrSourceUnreachable):
		return cli.WithCode(cli.ExitUnreachable, err, "is the NATS cluster up, with JetStream?")
	}
	return err
}
