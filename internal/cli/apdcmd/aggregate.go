package apdcmd

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/schema"
	"github.com/apd-telemetry/apd/subscriber"
)

// AggregateCmd is apd aggregate.
type AggregateCmd struct {
	DataFlags
	HTTPFlags
	IngestFlags
	Broker       string `help:"Broker URL: tcp://, ssl:// or ws://." default:"tcp://127.0.0.1:1883" config:"aggregator.broker"`
	ClientID     string `help:"MQTT client id; fixed so the broker keeps the session." default:"apd-aggregator" config:"aggregator.client_id"`
	Username     string `help:"Broker user name." config:"aggregator.username"`
	PasswordFile string `help:"File holding the broker password." placeholder:"FILE" type:"path" config:"aggregator.password_file"`
	cli.ClientCertFlags
	TLSCA string `name:"tls-ca" help:"PEM file of CAs to trust for ssl:// brokers." placeholder:"FILE" type:"path" config:"aggregator.tls_ca"`
}

// Help implements kong's HelpProvider.
func (AggregateCmd) Help() string {
	return `Subscribes to readings on any MQTT broker (Mosquitto, EMQX, HiveMQ, apd broker)
with a persistent QoS 1 session, stores them, and acknowledges each message to
the broker only after it is committed.

Example:
  apd aggregate --broker tcp://mqtt.lan:1883 --data /var/lib/apd`
}

// Run implements the command.
func (c *AggregateCmd) Run(ctx context.Context, g *cli.Globals, file *config.File) error {
	log := g.Logger()
	keep, err := c.retention()
	if err != nil {
		return err
	}
	topics := schema.Topics{Prefix: g.Prefix}
	password, err := cli.ReadPassword(c.PasswordFile)
	if err != nil {
		return err
	}
	var clientRef atomic.Pointer[mqttc.Client]
	dialed := make(chan struct{})
	var acking sync.WaitGroup // acknowledgements on their way to the broker
	ack := func(topic string, payload []byte) error {
		client := clientRef.Load()
		if client == nil {
			return errors.New("not connected")
		}
		acking.Add(1)
		go func() {
			defer acking.Done()
			actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := client.Publish(actx, topic, payload, true); err != nil {
				log.Debug("publish acknowledgement", "topic", topic, "err", err)
			}
		}()
		return nil
	}
	ruleCfgs, err := loadRules(file)
	if err != nil {
		return err
	}
	// The rules' publish action: to the external broker, which must let
	// this user publish readings (admin role on apd's own broker).
	publish := func(topic string, payload []byte) error {
		client := clientRef.Load()
		if client == nil {
			return errors.New("not connected")
		}
		pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return client.Publish(pctx, topic, payload, false)
	}
	agg, err := openAggregator(c.DataFlags, c.IngestFlags, c.HTTPFlags, topics, ack, ruleCfgs, publish, log)
	if err != nil {
		return err
	}
	subscribed := make(chan error, 1)
	client, err := mqttc.Dial(mqttc.Options{
		URL: c.Broker, ClientID: c.ClientID, Username: c.Username, Password: password, TLSCA: c.TLSCA, TLSCert: c.TLSCert, TLSKey: c.TLSKey,
		QoS: 1, Persistent: true, ManualAck: true, Logger: log,
		Unsolicited: agg.ingester.Handle,
		OnConnect: func() {
			// Subscribe on every connection: the broker may not have kept
			// the session.
			go func() {
				<-dialed
				err := subscriber.Subscribe(agg.ingester, clientRef.Load())
				select {
				case subscribed <- err:
				default:
				}
				if err != nil {
					log.Error("subscribe", "err", err)
				}
			}()
		},
	})
	if err != nil {
		agg.close()
		return err
	}
	clientRef.Store(client)
	close(dialed)
	if err := <-subscribed; err != nil {
		client.Close()
		agg.close()
		return err
	}
	agg.acknowledgeStored()
	log.Info("apd aggregate running", "broker", c.Broker, "http", agg.HTTPURL(), "db", storeLocation(agg.store))
	agg.logMetricsOnSignal(ctx)
	agg.logProgress(ctx)
	agg.startRetention(ctx, keep)
	agg.setReady("")
	<-ctx.Done()
	agg.setReady("shutting down")
	log.Info("shutting down")
	// Commit what is queued; its PUBACKs and $acks go out on the
	// connection, which closes only once they are sent.
	agg.drain()
	waitTimeout(&acking, 5*time.Second)
	client.Close()
	agg.close()
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
