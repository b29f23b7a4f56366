package apdcmd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"path/filepath"
	"syscall"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/server"
)

// BrokerFlags configure the embedded broker.
type BrokerFlags struct {
	MQTTAddr         string        `name:"mqtt-addr" help:"MQTT listen address of the embedded broker." default:"127.0.0.1:1883" placeholder:"HOST:PORT" config:"server.mqtt_addr"`
	MaxInflight      int           `help:"Per client, most QoS 1 messages awaiting delivery; beyond it the broker drops (and counts) them." default:"32768" config:"server.max_inflight"`
	SessionExpiry    time.Duration `help:"How long the broker keeps the session of a disconnected client." default:"24h" config:"server.session_expiry"`
	MaxWritesPending int           `help:"Per connection, most messages queued for its socket; beyond, deliveries are dropped (and counted)." default:"1024" config:"server.max_writes_pending"`
	UsersFile        string        `help:"Users file (apd users add): clients must log in and are limited to their role. Without it only loopback clients are admitted." placeholder:"FILE" type:"path" config:"server.users_file"`
	Insecure         bool          `help:"Allow a non-loopback --mqtt-addr without a users file: anyone who reaches it may publish." config:"server.insecure"`
	TLSAddr          string        `name:"tls-addr" help:"Also listen for MQTT over TLS here (needs --tls-cert and --tls-key)." placeholder:"HOST:PORT" config:"server.tls_addr"`
	TLSCert          string        `name:"tls-cert" help:"Server certificate (PEM) for the TLS and WebSocket listeners." placeholder:"FILE" type:"path" config:"server.tls_cert"`
	TLSKey           string        `name:"tls-key" help:"Its private key (PEM)." placeholder:"FILE" type:"path" config:"server.tls_key"`
	WSAddr           string        `name:"ws-addr" help:"Also listen for MQTT over WebSocket here, for browsers (TLS when --tls-cert is given)." placeholder:"HOST:PORT" config:"server.ws_addr"`
	TLSClientCA      string        `name:"tls-client-ca" help:"CAs (PEM) whose client certificates log in as the user named by their common name, without a password." placeholder:"FILE" type:"path" config:"server.tls_client_ca"`
	DiscoveryPrefix  string        `name:"discovery-prefix" help:"Home Assistant discovery prefix under which device users may announce their own sensors." default:"homeassistant" config:"server.discovery_prefix"`
	// Limits on clients that have not logged in, on logins, and on what
	// subscribers that do not read can make the broker hold.
	ConnectTimeout     time.Duration `help:"How long a new connection has to send its CONNECT packet." default:"10s" config:"server.connect_timeout"`
	MaxConnectSize     int           `help:"Largest CONNECT packet in bytes (client id, credentials, last will)." default:"16384" config:"server.max_connect_size"`
	MaxUnauthenticated int           `help:"Most connections that have not completed their CONNECT; more are closed at once." default:"1024" config:"server.max_unauthenticated"`
	MaxLogins          int           `help:"Most password checks (bcrypt) at once; 0 means half the cores." default:"0" config:"server.max_logins"`
	MaxQueuedPerUser   int           `help:"Most messages held for delivery to one user's sessions together; beyond, deliveries to them are dropped (and counted)." default:"32768" config:"server.max_queued_per_user"`
	MaxQueued          int           `help:"Most messages held for delivery in all; beyond, deliveries are dropped (and counted)." default:"131072" config:"server.max_queued"`
	// The same bounds in bytes (payload and topic), which hold memory and
	// the broker's in-flight file whatever the message size.
	MaxQueuedBytesPerSession int64 `help:"Most bytes held for delivery to one session; beyond, deliveries to it are dropped (and counted)." default:"16777216" config:"server.max_queued_bytes_per_session"`
	MaxQueuedBytesPerUser    int64 `help:"Most bytes held for delivery to one user's sessions together." default:"16777216" config:"server.max_queued_bytes_per_user"`
	MaxQueuedBytes           int64 `help:"Most bytes held for delivery in all, aggregators' sessions aside (those have only their own bounds)." default:"67108864" config:"server.max_queued_bytes"`
}

// tls loads the listeners' certificate, if one is configured.
func (f BrokerFlags) tls() (*tls.Config, error) {
	if f.TLSCert == "" && f.TLSKey == "" {
		if f.TLSAddr != "" {
			return nil, cli.WithCode(cli.ExitBadConfig, errors.New("--tls-addr needs --tls-cert and --tls-key"), "")
		}
		return nil, nil
	}
	tc, err := broker.LoadTLS(f.TLSCert, f.TLSKey, f.TLSClientCA)
	if err != nil {
		return nil, cli.WithCode(cli.ExitBadConfig, err, "")
	}
	return tc, nil
}

// users loads the users file, if one is configured.
func (f BrokerFlags) users() (*broker.Users, error) {
	if f.UsersFile == "" {
		return nil, nil
	}
	us, err := broker.LoadUsers(f.UsersFile)
	if err != nil {
		return nil, cli.WithCode(cli.ExitBadConfig, err, "create it with apd users add")
	}
	return us, nil
}

// logAccess says who the broker admits when there is no users file.
func (f BrokerFlags) logAccess(log *slog.Logger, users *broker.Users) {
	switch {
	case users == nil && f.Insecure:
		log.Warn("no users file and --insecure: the broker admits anyone who reaches it, without authentication")
	case users == nil:
		log.Info("no users file: the broker admits loopback clients only, without authentication")
	}
}

// reloadUsersOnSignal reads the users file again on SIGHUP, keeping
// connections, until ctx ends. A bad file keeps the users in force.
func (f BrokerFlags) reloadUsersOnSignal(ctx context.Context, b *broker.Broker, log *slog.Logger) {
	if f.UsersFile == "" {
		return
	}
	server.OnSignal(ctx, syscall.SIGHUP, func() {
		us, err := broker.LoadUsers(f.UsersFile)
		if err != nil {
			log.Error("reload users; keeping the previous ones", "err", err)
			return
		}
		b.SetUsers(us)
		log.Info("users reloaded", "file", f.UsersFile, "users", len(us.List()))
	})
}

func (f BrokerFlags) options(data string, maxPayload int, prefix string, users *broker.Users, tc *tls.Config, log *slog.Logger) broker.Options {
	return broker.Options{
		TLSAddr:            f.TLSAddr,
		TLSConfig:          tc,
		WSAddr:             f.WSAddr,
		Users:              users,
		Prefix:             prefix,
		DiscoveryPrefix:    f.DiscoveryPrefix,
		Insecure:           f.Insecure,
		Addr:               f.MQTTAddr,
		MaxPayload:         uint32(maxPayload) + 1024, // room for the topic and headers
		StatePath:          filepath.Join(data, "broker.db"),
		MaxInflight:        f.MaxInflight,
		SessionExpiry:      f.SessionExpiry,
		MaxWritesPending:   f.MaxWritesPending,
		ConnectTimeout:     f.ConnectTimeout,
		MaxConnectSize:     f.MaxConnectSize,
		MaxUnauthenticated: f.MaxUnauthenticated,
		MaxLogins:          f.MaxLogins,
		Queues: broker.QueueLimits{PerUser: f.MaxQueuedPerUser, Total: f.MaxQueued,
			PerSessionBytes: f.MaxQueuedBytesPerSession, PerUserBytes: f.MaxQueuedBytesPerUser, TotalBytes: f.MaxQueuedBytes},
		Logger: log,
	}
}

// BrokerCmd is apd broker.
type BrokerCmd struct {
	BrokerFlags
	DataFlags
	MaxPayload int `help:"Largest accepted payload in bytes." default:"65536" config:"server.max_payload"`
}

// Help implements kong's HelpProvider.
func (BrokerCmd) Help() string {
	return `Runs the embedded MQTT broker alone. Sessions, subscriptions, retained and
in-flight messages are kept in <data>/broker.db across restarts.

Example:
  apd broker --mqtt-addr 127.0.0.1:1883 --data /var/lib/apd`
}

// Run implements the command.
func (c *BrokerCmd) Run(ctx context.Context, g *cli.Globals) error {
	log := g.Logger()
	users, err := c.users()
	if err != nil {
		return err
	}
	tc, err := c.tls()
	if err != nil {
		return err
	}
	c.logAccess(log, users)
	brk, err := broker.Start(c.BrokerFlags.options(c.Data, c.MaxPayload, g.Prefix, users, tc, g.BrokerLogger()))
	if err != nil {
		return brokerStartError(err)
	}
	log.Info("apd broker running", brk.ListenerAttrs()...)
	c.reloadUsersOnSignal(ctx, brk, log)
	<-ctx.Done()
	err = brk.Close()
	p, i := brk.Dropped()
	log.Info("apd broker stopped", "dropped_publishes", p, "dropped_inflight", i)
	return err
}

// brokerStartError gives a failed broker start its exit code and hint.
func brokerStartError(err error) error {
	if errors.Is(err, broker.ErrInsecure) {
		return cli.WithCode(cli.ExitBadConfig, err, "create a users file with apd users add and pass --users-file, or pass --insecure")
	}
	return cli.WithCode(cli.ExitFailure, err, "pass another --mqtt-addr")
}
