// Package broker runs apd's embedded MQTT broker (mochi-mqtt/server/v2).
// Behaviour beyond routing is added through mochi hooks: the broker's own
// (queue bounds, authentication and ACLs, login, shared subscriptions by
// host, drop counts, persistence) and those passed in Options (the
// aggregator's ingestion). The server itself is mochi with the small patch
// described in third_party/mochi/PATCHES.md.
package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/schema"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DefaultAddr is where the broker listens unless told otherwise: loopback
// only, because without authentication nothing else is safe.
const DefaultAddr = "127.0.0.1:1883"

// Options configure a Broker. The zero value listens on DefaultAddr.
type Options struct {
	// Addr is the TCP listen address, host:port; port 0 picks a free one.
	Addr string
	// Hooks are added after the broker's own (authentication and ACLs,
	// queue bounds, persistence), in order: they see only what those let
	// through.
	Hooks []mqtt.Hook
	// SysInterval is the period of $SYS topic updates in seconds; 0 means 10.
	SysInterval int64
	// MaxPayload bounds a packet's size in bytes; 0 means no bound.
	MaxPayload uint32
	// StatePath is the bbolt file keeping sessions, subscriptions, retained
	// and in-flight messages across restarts; empty keeps them in memory.
	StatePath string
	// MaxInflight bounds, per client, the QoS 1 messages awaiting delivery
	// and the writes pending on its connection; beyond it messages are
	// dropped and counted. 0 means DefaultMaxInflight. It caps what an
	// offline or slow subscriber can hold in memory.
	MaxInflight int
	// MaxWritesPending bounds, per connection, the messages queued for its
	// socket; beyond it deliveries are dropped and counted. mochi makes a
	// channel of this size for every connection, so it is most of an idle
	// connection's memory. 0 means DefaultMaxWritesPending.
	MaxWritesPending int
	// SessionExpiry is how long the session of a disconnected client is
	// kept; 0 means DefaultSessionExpiry.
	SessionExpiry time.Duration
	// Users authenticates clients and limits what each may publish and
	// subscribe to (see Role). Nil admits loopback clients only, without
	// authentication.
	Users *Users
	// Prefix is the apd topic prefix the roles are checked against; empty
	// means "apd".
	Prefix string
	// DiscoveryPrefix is the Home Assistant discovery prefix under which a
	// device user may announce its own sensors; empty means
	// "homeassistant".
	DiscoveryPrefix string
	// Insecure allows listening on a non-loopback address without Users.
	Insecure bool
	// TLSAddr, when set, adds an MQTT over TLS listener with TLSConfig;
	// port 0 picks a free one (see Broker.TLSAddr).
	TLSAddr   string
	TLSConfig *tls.Config
	// WSAddr, when set, adds an MQTT over WebSocket listener for browsers
	// (over TLS when TLSConfig is set); port 0 picks a free one (see
	// Broker.WSAddr).
	WSAddr string
	// ConnectTimeout, MaxConnectSize and MaxUnauthenticated bound
	// connections that have not logged in yet; 0 means
	// DefaultConnectTimeout, DefaultMaxConnectSize and
	// DefaultMaxUnauthenticated.
	ConnectTimeout     time.Duration
	MaxConnectSize     int
	MaxUnauthenticated int
	// MaxLogins bounds the password checks (bcrypt) running at once; 0
	// means half the cores. LoginWait is how long a login waits for one
	// before it is refused as busy; 0 means DefaultLoginWait.
	MaxLogins int
	LoginWait time.Duration
	// Queues bound what the broker holds for delivery, in messages and
	// bytes, per session, per user and in all; beyond, deliveries are
	// dropped and counted. Zero values mean the defaults (QueueLimits).
	Queues QueueLimits
	Logger *slog.Logger
}

// Defaults of Options.
const (
	// DefaultMaxInflight is four times mochi's own default: drops are
	// recoverable (devices republish what the aggregator did not
	// acknowledge), so the limit is about memory, ~6 MB per client at
	// 200-byte readings.
	DefaultMaxInflight = 32768
	// DefaultMaxWritesPending: 8 KiB of channel per connection (it was
	// max_inflight's 32,768 slots: 256 KiB per connection, 2.5 GB for
	// 10,000 devices). A subscriber that reads keeps it nearly empty.
	DefaultMaxWritesPending = 1024
	DefaultSessionExpiry    = 24 * time.Hour
)

// Broker is a running MQTT broker.
type Broker struct {
	srv    *mqtt.Server
	access *accessHook
	tcp    *listeners.TCP
	log    *slog.Logger
	drops  *dropCounter
	queues *queueBudget
	guard  *guard
	// the addresses the TLS and WebSocket listeners bound ("" without
	// them), which Start waits for besides tcp
	tlsAddr, wsAddr string
	wsTLS           *tls.Config

	closeOnce sync.Once
	closeErr  error
}

// Start creates the broker and starts it (New, then Broker.Start).
func Start(opts Options) (*Broker, error) {
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := b.Start(); err != nil {
		return nil, err
	}
	return b, nil
}

// New creates the broker with its hooks and binds its listeners, but
// admits no client until Start: what the hooks feed (the ingester) and
// what acknowledges through the broker can be wired in between. It returns
// an error if an address cannot be bound.
func New(opts Options) (*Broker, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.SysInterval == 0 {
		opts.SysInterval = 10
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// mochi warns per packet, with the packet: bound and throttle it.
	guardLog := newLogGuard(log.Handler())
	log = slog.New(guardLog)
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	if opts.SessionExpiry <= 0 {
		opts.SessionExpiry = DefaultSessionExpiry
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = opts.MaxPayload
	caps.MaximumInflight = uint16(min(opts.MaxInflight, 65535))
	if opts.MaxWritesPending <= 0 {
		opts.MaxWritesPending = DefaultMaxWritesPending
	}
	caps.MaximumClientWritesPending = int32(opts.MaxWritesPending)
	caps.MaximumSessionExpiryInterval = uint32(opts.SessionExpiry / time.Second)
	// A PUBACK carries no copy of the publisher's user properties (MQTT 5
	// §3.4.2.2 gives them to the receiver's own use).
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	srv := mqtt.New(&mqtt.Options{
		InlineClient:           true,
		Capabilities:           caps,
		SysTopicResendInterval: opts.SysInterval,
		Logger:                 log,
	})
	for _, a := range []string{opts.Addr, opts.TLSAddr, opts.WSAddr} {
		if a != "" && opts.Users == nil && !opts.Insecure && !loopbackAddr(a) {
			return nil, fmt.Errorf("broker on %s: %w", a, ErrInsecure)
		}
	}
	if opts.TLSAddr != "" && opts.TLSConfig == nil {
		return nil, errors.New("broker: a TLS listener needs a certificate and key")
	}
	if opts.Prefix == "" {
		opts.Prefix = "apd"
	}
	if opts.DiscoveryPrefix == "" {
		opts.DiscoveryPrefix = schema.DefaultDiscoveryPrefix
	}
	guardLog.identify(func(id string) string {
		if cl, ok := srv.Clients.Get(id); ok {
			return Sender(cl)
		}
		return id
	})
	queues := newQueueBudget(srv, opts.Queues)
	if err := srv.AddHook(queues, nil); err != nil {
		return nil, fmt.Errorf("broker queue hook: %w", err)
	}
	access := newAccessHook(srv, opts, queues)
	if err := srv.AddHook(access, nil); err != nil {
		return nil, fmt.Errorf("broker auth hook: %w", err)
	}
	if err := srv.AddHook(new(loginHook), nil); err != nil {
		return nil, fmt.Errorf("broker login hook: %w", err)
	}
	share := &shareHook{connected: func(id string) bool {
		cl, ok := srv.Clients.Get(id)
		return ok && !cl.Closed()
	}}
	if err := srv.AddHook(share, nil); err != nil {
		return nil, fmt.Errorf("broker shared subscription hook: %w", err)
	}
	guard := newGuard(opts, log)
	drops := &dropCounter{}
	if err := srv.AddHook(drops, nil); err != nil {
		return nil, fmt.Errorf("broker drop counter: %w", err)
	}
	if opts.StatePath != "" {
		if err := os.MkdirAll(filepath.Dir(opts.StatePath), 0o755); err != nil {
			return nil, fmt.Errorf("broker state directory: %w", err)
		}
		h, cfg := newPersistence(opts.StatePath)
		if err := srv.AddHook(h, cfg); err != nil {
			return nil, fmt.Errorf("open broker state %s: %w", opts.StatePath, err)
		}
	}
	for _, h := range opts.Hooks {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("broker hook %s: %w", h.ID(), err)
		}
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: opts.Addr})
	if err := srv.AddListener(guard.wrap(tcp)); err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			return nil, fmt.Errorf("broker listen on %s: %w", opts.Addr, opErr.Err)
		}
		return nil, fmt.Errorf("broker listen on %s: %w", opts.Addr, err)
	}
	var tlsAddr, wsAddr string
	if opts.TLSAddr != "" {
		l := listeners.NewTCP(listeners.Config{ID: "tls", Address: opts.TLSAddr, TLSConfig: opts.TLSConfig})
		if err := srv.AddListener(guard.wrap(l)); err != nil {
			return nil, fmt.Errorf("broker TLS listen on %s: %w", opts.TLSAddr, err)
		}
		tlsAddr = l.Address()
	}
	if opts.WSAddr != "" {
		l := newWSListener(listeners.Config{ID: "ws", Address: opts.WSAddr, TLSConfig: opts.TLSConfig}, guard)
		if err := srv.AddListener(l); err != nil {
			return nil, fmt.Errorf("broker WebSocket listen on %s: %w", opts.WSAddr, err)
		}
		wsAddr = l.Address()
	}
	return &Broker{srv: srv, access: access, tcp: tcp, log: log, drops: drops, queues: queues, guard: guard,
		tlsAddr: tlsAddr, wsAddr: wsAddr, wsTLS: opts.TLSConfig}, nil
}

// Start serves the listeners and returns once every one takes
// connections, so whoever reports the broker ready tells the truth.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		b.srv.Close()
		return fmt.Errorf("broker serve: %w", err)
	}
	for _, l := range []struct {
		addr string
		tls  *tls.Config
	}{{b.tcp.Address(), nil}, {b.tlsAddr, nil}, {b.wsAddr, b.wsTLS}} {
		if l.addr == "" {
			continue
		}
		if err := waitAccepting(l.addr, l.tls, 5*time.Second); err != nil {
			b.srv.Close()
			return fmt.Errorf("broker: %w", err)
		}
	}
	return nil
}

// Sender names who is behind a client, for limits that a client must not
// escape by changing its client id: its user, or without one its remote
// address.
func Sender(cl *mqtt.Client) string {
	if len(cl.Properties.Username) > 0 {
		return "user " + string(cl.Properties.Username)
	}
	host, _, err := net.SplitHostPort(cl.Net.Remote)
	if err != nil {
		return cl.Net.Remote
	}
	return "address " + host
}

// Addr returns the address the broker listens on (with the real port when
// Options.Addr had port 0).
func (b *Broker) Addr() string { return b.tcp.Address() }

// TLSAddr returns the address of the MQTT over TLS listener (with the
// real port when Options.TLSAddr had port 0), or "" without one.
func (b *Broker) TLSAddr() string { return b.tlsAddr }

// WSAddr returns the address of the MQTT over WebSocket listener (with
// the real port when Options.WSAddr had port 0), or "" without one.
func (b *Broker) WSAddr() string { return b.wsAddr }

// Publish publishes a message from inside the process, bypassing ACLs.
// Retained messages are kept for later subscribers.
func (b *Broker) Publish(topic string, payload []byte, retain bool) error {
	return b.srv.Publish(topic, payload, retain, 1)
}

// PublishState publishes a retained message that a later one of the same
// topic supersedes (an $ack) at QoS 0: each subscriber gets it without an
// in-flight entry and a PUBACK to wait for. Nothing is lost that matters:
// TCP delivers it while the connection lasts, and a subscriber that
// reconnects receives the topic's retained message, the latest. State
// messages are not kept in the state file: their publisher publishes them
// again at every start.
func (b *Broker) PublishState(topic string, payload []byte) error {
	return b.srv.Publish(topic, payload, true, 0)
}

// WaitGone waits up to timeout for the client with id to be disconnected,
// and reports whether it is. Closing the broker while a client's DISCONNECT
// is still unread would publish that client's last will as if it had died.
func (b *Broker) WaitGone(id string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		cl, ok := b.srv.Clients.Get(id)
		if !ok || cl.Closed() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// LoadTLS reads a certificate and its key (PEM) for the TLS listeners.
// With clientCA (a PEM file of CAs), clients may present a certificate
// signed by one of them instead of a password: its common name is the user.
func LoadTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no certificates found", clientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// ErrInsecure is returned by Start for a non-loopback address without
// users and without Options.Insecure.
var ErrInsecure = errors.New("listening beyond loopback needs a users file (or an explicit --insecure)")

// loopbackAddr reports whether a listen address binds loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SetUsers replaces the users, for a reload on SIGHUP: connected clients
// stay connected, later connections and checks use the new set.
func (b *Broker) SetUsers(us *Users) { b.access.setUsers(us) }

// Dropped returns how many messages the broker dropped instead of
// delivering: publishes to clients whose pending writes were full, and
// QoS 1 messages for clients over their in-flight quota (an offline
// subscriber's queue) or expired in flight.
func (b *Broker) Dropped() (publishes, inflight uint64) {
	return b.drops.publishes.Load(), uint64(atomic.LoadInt64(&b.srv.Info.InflightDropped)) + b.drops.inflight.Load()
}

// StopListening closes every listener and disconnects every client (last
// wills are published as for any lost connection), and returns once
// their connections are gone. The broker still publishes from inside the
// process and keeps what it retains, until Close: a shutdown drains the
// aggregator in between, so its last acknowledgements are kept.
func (b *Broker) StopListening() {
	b.srv.Listeners.CloseAll(func(id string) {
		b.guard.closePending()
		for _, cl := range b.srv.Clients.GetByListener(id) {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	})
}

// DroppedQueued returns how many deliveries the queue bounds dropped.
func (b *Broker) DroppedQueued() uint64 { return b.queues.dropped.Load() }

// ListenerAttrs names the listeners and the addresses they bound, as
// log attributes for the line saying the broker runs: mqtt, and tls and
// ws when they are on.
func (b *Broker) ListenerAttrs() []any {
	attrs := []any{"mqtt", b.Addr()}
	if a := b.TLSAddr(); a != "" {
		attrs = append(attrs, "tls", a)
	}
	if a := b.WSAddr(); a != "" {
		attrs = append(attrs, "ws", a)
	}
	return attrs
}

// Queued returns the messages the broker holds in flight for delivery.
// It counts the sessions' in-flight entries rather than reading mochi's
// running total, which a resumed session's acknowledgements drive below
// zero (seen at -20 after a persistent session took its queue back).
func (b *Broker) Queued() int64 {
	var n int64
	for _, cl := range b.srv.Clients.GetAll() {
		n += int64(cl.State.Inflight.Len())
	}
	return n
}

// QueuedBytes returns the payload and topic bytes the broker holds for
// delivery: in flight and waiting to be written to connections.
func (b *Broker) QueuedBytes() int64 { return b.srv.InflightBytes() + b.srv.OutboundBytes() }

// Close disconnects every client and stops the broker. Later calls do
// nothing.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.StopListening()
		b.closeErr = b.srv.Close()
	})
	return b.closeErr
}
