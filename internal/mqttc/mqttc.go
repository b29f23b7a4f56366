// Package mqttc is apd's MQTT client: paho behind a small API with the
// options every apd client shares (broker URL, credentials, TLS, will,
// reconnect policy).
package mqttc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// ErrUnreachable is returned (wrapped) by Dial when the first connection
// fails and Options.Retry is off.
var ErrUnreachable = errors.New("broker unreachable")

// Will is the message the broker publishes if the connection dies.
type Will struct {
	Topic   string
	Payload []byte
	Retain  bool
}

// Options configure a client. The zero value of each field is a usable
// default unless said otherwise.
type Options struct {
	// URL is the broker: tcp://host:port, ssl://host:port or ws://host:port;
	// several, comma-separated (the nodes of a cluster), are tried in turn.
	// Required.
	URL      string
	ClientID string
	// Username and Password authenticate to the broker; empty for none.
	Username, Password string
	// TLSCA is a PEM file of CAs to trust for ssl:// brokers; empty uses the
	// system pool.
	TLSCA string
	// TLSCert and TLSKey, when set, are a client certificate and its key
	// (PEM) presented to the broker, which may take its common name as the
	// user.
	TLSCert, TLSKey string
	// QoS is used for every publish and subscription.
	QoS byte
	// Persistent asks the broker to keep the session (clean session off).
	Persistent bool
	// ManualAck delays the acknowledgement of received QoS 1 messages until
	// Message.Ack is called.
	ManualAck bool
	Will      *Will
	// Retry keeps trying when the first connection fails instead of
	// returning an error.
	Retry bool
	// ConnectTimeout bounds the first connection attempt; 0 means 5 s.
	ConnectTimeout time.Duration
	// OnConnect runs after every successful (re)connection.
	OnConnect func()
	// Unsolicited receives messages that match no subscription made by
	// this process: with Persistent, the broker delivers the session's
	// queue as soon as it connects, before Subscribe runs. Nil acknowledges
	// and drops them.
	Unsolicited func(Message)
	Logger      *slog.Logger
}

// Message is a received message.
type Message struct {
	Topic   string
	Payload []byte
	ack     func()
}

// Ack acknowledges the message to the broker (with Options.ManualAck).
func (m Message) Ack() {
	if m.ack != nil {
		m.ack()
	}
}

// Client is a connected MQTT client; safe for concurrent use.
//
// It reconnects by itself after a lost connection, with jittered
// exponential backoff capped at MaxBackoff (paho's own ceiling is ten
// minutes), and subscribes again to every filter after each connection,
// because a broker may not have kept the session.
type Client struct {
	c    paho.Client
	opts Options
	qos  byte
	log  *slog.Logger

	mu     sync.Mutex
	subs   map[string]subscription
	down   bool
	closed bool
	retry  chan struct{} // wakes the reconnect loop
	done   chan struct{}
	// ready is closed when the first connection has made its
	// subscriptions.
	ready     chan struct{}
	readyOnce sync.Once
}

// Reconnect backoff bounds.
const (
	MinBackoff = 500 * time.Millisecond
	MaxBackoff = 30 * time.Second
)

// Dial makes a client and connects it (New, then Client.Start).
func Dial(opts Options) (*Client, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// New makes a client without connecting: subscriptions made before Start
// are made on its first connection (and again on every later one), and
// what OnConnect and the handlers use can be built in between.
func New(opts Options) (*Client, error) {
	brokers := strings.Split(opts.URL, ",")
	var u *url.URL
	for i, b := range brokers {
		b = strings.TrimSpace(b)
		p, err := url.Parse(b)
		if err != nil || p.Host == "" {
			return nil, fmt.Errorf("broker URL %q: want tcp://host:port, ssl://host:port or ws://host:port", b)
		}
		switch p.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		default:
			return nil, fmt.Errorf("broker URL %q: unsupported scheme %q", b, p.Scheme)
		}
		if u == nil {
			u = p
		}
		brokers[i] = b
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	cl := &Client{opts: opts, qos: opts.QoS, log: log, subs: map[string]subscription{},
		retry: make(chan struct{}, 1), done: make(chan struct{}), ready: make(chan struct{})}
	po := paho.NewClientOptions()
	// Several brokers (nodes of a cluster): each connection attempt tries
	// them in turn until one answers.
	for _, b := range brokers {
		po.AddBroker(b)
	}
	po.SetClientID(opts.ClientID).
		SetCleanSession(!opts.Persistent).
		SetAutoReconnect(false). // our loop below: jittered, capped at MaxBackoff
		SetConnectRetry(false).
		SetConnectTimeout(opts.ConnectTimeout).
		SetKeepAlive(30 * time.Second).
		// Handlers run one at a time in arrival order: a host's readings
		// must reach the aggregator in the order the broker delivers them
		// (rules skip late readings; acknowledgements follow seq order).
		// Handlers here never wait on the broker, so this cannot deadlock.
		SetOrderMatters(true).
		SetAutoAckDisabled(opts.ManualAck)
	if opts.Username != "" {
		po.SetUsername(opts.Username).SetPassword(opts.Password)
	}
	if strings.HasPrefix(u.Scheme, "ssl") || u.Scheme == "tls" || u.Scheme == "mqtts" || u.Scheme == "wss" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.TLSCA != "" {
			pem, err := os.ReadFile(opts.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("read TLS CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("TLS CA %s: no certificates found", opts.TLSCA)
			}
			tc.RootCAs = pool
		}
		if opts.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("load client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		po.SetTLSConfig(tc)
	}
	if opts.Will != nil {
		po.SetBinaryWill(opts.Will.Topic, opts.Will.Payload, opts.QoS, opts.Will.Retain)
	}
	// A resumed persistent session delivers queued messages as soon as it
	// connects, before this process has subscribed again: route them to the
	// handler of the matching filter instead of dropping them.
	po.SetDefaultPublishHandler(func(pc paho.Client, m paho.Message) {
		if h := cl.handlerFor(m.Topic()); h != nil {
			h(pc, m)
			return
		}
		if opts.Unsolicited != nil {
			opts.Unsolicited(Message{Topic: m.Topic(), Payload: m.Payload(), ack: m.Ack})
			return
		}
		log.Debug("message on no subscription", "topic", m.Topic())
		m.Ack()
	})
	po.SetOnConnectHandler(func(paho.Client) { go cl.connected() })
	po.SetConnectionLostHandler(func(_ paho.Client, err error) {
		cl.mu.Lock()
		cl.down = true
		cl.mu.Unlock()
		log.Warn("lost connection to broker; reconnecting", "broker", opts.URL, "err", err)
		cl.wake()
	})
	cl.c = paho.NewClient(po)
	return cl, nil
}

// Start connects. With Options.Retry it returns at once and keeps
// connecting in the background; otherwise it returns an error wrapping
// ErrUnreachable if the first attempt fails.
func (c *Client) Start() error {
	if c.opts.Retry {
		c.mu.Lock()
		c.down = true
		c.mu.Unlock()
		go c.reconnectLoop(true)
		return nil
	}
	tok := c.c.Connect()
	if !tok.WaitTimeout(c.opts.ConnectTimeout + time.Second) {
		c.c.Disconnect(0)
		return fmt.Errorf("%w: %s: no answer within %s", ErrUnreachable, c.opts.URL, c.opts.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, c.opts.URL, err)
	}
	go c.reconnectLoop(false)
	// Connected means subscribed: whoever says the client is up (a
	// readiness probe) tells the truth.
	select {
	case <-c.ready:
	case <-time.After(10 * time.Second):
		c.log.Warn("subscriptions not confirmed within 10 s", "broker", c.opts.URL)
	}
	return nil
}

// handlerFor returns the handler of the first subscription whose filter
// matches topic, or nil.
func (c *Client) handlerFor(topic string) paho.MessageHandler {
	c.mu.Lock()
	defer c.mu.Unlock()
	for f, s := range c.subs {
		if Match(f, topic) {
			return s.handler
		}
	}
	return nil
}

// Match reports whether an MQTT topic filter (with + and # wildcards)
// matches a topic. Per [MQTT-4.7.2-1], wildcards at the first level do not
// match topics starting with $.
func Match(filter, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) || f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}

func (c *Client) wake() {
	select {
	case c.retry <- struct{}{}:
	default:
	}
}

// connected runs after every successful connection: subscriptions first,
// so nothing published in OnConnect's wake is missed, then OnConnect.
func (c *Client) connected() {
	c.mu.Lock()
	was := c.down
	c.down = false
	subs := make(map[string]subscription, len(c.subs))
	for f, s := range c.subs {
		subs[f] = s
	}
	c.mu.Unlock()
	if was {
		c.log.Info("connected to broker", "broker", c.opts.URL)
	}
	for f, s := range subs {
		if err := c.subscribe(f, s); err != nil {
			// A broker may refuse for a while (a cluster node whose
			// JetStream lost a peer): keep asking while connected, or a
			// device never hears its $ack again.
			c.log.Warn("subscription refused; asking again", "filter", f, "err", err)
			go c.resubscribe(f, s)
		}
	}
	c.readyOnce.Do(func() { close(c.ready) })
	if c.opts.OnConnect != nil {
		c.opts.OnConnect()
	}
}

// subscription is a filter's handler and QoS.
type subscription struct {
	handler paho.MessageHandler
	qos     byte
}

// subscribe makes one subscription and waits for the broker to grant it.
func (c *Client) subscribe(filter string, s subscription) error {
	tok := c.c.Subscribe(filter, s.qos, s.handler)
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("no answer within 10 s")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		if code := st.Result()[filter]; code == 0x80 {
			return errors.New("refused by the broker")
		}
	}
	return nil
}

// resubscribe asks for a refused subscription again every few seconds
// until the broker grants it, the connection drops (connected makes it
// again then) or the client closes.
func (c *Client) resubscribe(filter string, s subscription) {
	for {
		select {
		case <-c.done:
			return
		case <-time.After(2 * time.Second):
		}
		if !c.c.IsConnectionOpen() {
			return
		}
		if err := c.subscribe(filter, s); err == nil {
			c.log.Info("subscription granted", "filter", filter)
			return
		}
	}
}

// reconnectLoop connects whenever the connection is down, waiting a
// jittered, doubling pause between attempts. Failed attempts are logged
// once per outage, not per attempt.
func (c *Client) reconnectLoop(now bool) {
	backoff := MinBackoff
	if !now {
		select {
		case <-c.retry:
		case <-c.done:
			return
		}
	}
	for {
		c.mu.Lock()
		closed, down := c.closed, c.down
		c.mu.Unlock()
		if closed {
			return
		}
		if down && !c.c.IsConnected() {
			tok := c.c.Connect()
			ok := tok.WaitTimeout(c.opts.ConnectTimeout+time.Second) && tok.Error() == nil
			if !ok {
				if backoff == MinBackoff {
					c.log.Debug("broker unreachable; retrying", "broker", c.opts.URL)
				}
				pause := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
				backoff = min(backoff*2, MaxBackoff)
				select {
				case <-time.After(pause):
				case <-c.done:
					return
				}
				continue
			}
		}
		backoff = MinBackoff
		select {
		case <-c.retry:
		case <-c.done:
			return
		}
	}
}

// wait waits for tok or the end of ctx. A token already complete gives
// its own result even when ctx has ended too, so that what the broker
// acknowledged is never reported as failed.
func wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	default:
	}
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errNotConnected is what a publish without a connection returns.
var errNotConnected = errors.New("not connected to broker")

// Publish sends payload to topic at the client's QoS and waits for the
// broker's acknowledgement or the end of ctx.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, retain bool) error {
	if !c.c.IsConnectionOpen() {
		return errNotConnected
	}
	if err := wait(ctx, c.c.Publish(topic, c.qos, retain, payload)); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// MaxInFlight is the most messages one PublishAll has sent and not yet
// seen acknowledged: the next one waits for the oldest's acknowledgement.
//
// paho (MQTT 3.1.1) has no bound of its own: MaxResumePubInFlight only
// paces what it sends again from its store when it resumes a session, and
// a publish fails only once all 65535 packet identifiers are taken. The
// bound is the broker's. apd's broker (mochi) gives each client a receive
// quota of 1024 unacknowledged QoS 1 messages (its Receive Maximum, which
// an MQTT 3.1.1 client is never told), used up only while its ingestion
// holds acknowledgements back until their commit; a client at the quota
// is not read from until one is released (upstream mochi disconnects it).
// MQTT 5 lets a broker ask for as few as 1, unknown to a 3.1.1 client.
// 64 takes a device's tick (13 to 30 readings) in one go, hence into one
// of the server's commits, stays far below mochi's quota even with a
// replay publishing at the same time, and bounds what one lost
// connection leaves unconfirmed.
const MaxInFlight = 64

// PublishAll sends payloads[i] to topics[i], not retained, at the
// client's QoS, back to back without waiting for acknowledgements in
// between (at most MaxInFlight at a time), and then waits for all of them
// or the end of ctx. A broker that acknowledges after a commit can then
// store them in one. The messages go on the wire in their order.
//
// errs[i] is message i's error, nil once the broker acknowledged it: a
// message that was never sent (no connection, or ctx ended first) fails
// as well as one whose acknowledgement did not come. topics and payloads
// must have the same length.
func (c *Client) PublishAll(ctx context.Context, topics []string, payloads [][]byte) (errs []error) {
	if len(topics) != len(payloads) {
		panic(fmt.Sprintf("mqttc: PublishAll of %d topics and %d payloads", len(topics), len(payloads)))
	}
	errs = make([]error, len(topics))
	toks := make([]paho.Token, len(topics))
	// Messages are handed to paho one after the other from this
	// goroutine; paho writes them in that order.
	for i := range topics {
		if i >= MaxInFlight && toks[i-MaxInFlight] != nil {
			// Waiting for the oldest keeps the window sliding; its error,
			// if any, is collected below with the rest.
			_ = wait(ctx, toks[i-MaxInFlight])
		}
		switch {
		case ctx.Err() != nil:
			errs[i] = ctx.Err()
		case !c.c.IsConnectionOpen():
			errs[i] = errNotConnected
		default:
			toks[i] = c.c.Publish(topics[i], c.qos, false, payloads[i])
		}
	}
	for i, tok := range toks {
		if tok != nil {
			errs[i] = wait(ctx, tok)
		}
		if errs[i] != nil {
			errs[i] = fmt.Errorf("publish %s: %w", topics[i], errs[i])
		}
	}
	return errs
}

// Subscribe delivers every message on filter to fn, from paho's goroutines.
func (c *Client) Subscribe(filter string, fn func(topic string, payload []byte)) error {
	return c.SubscribeMessages(filter, func(m Message) { fn(m.Topic, m.Payload) })
}

// SubscribeLatest subscribes at QoS 0 to a topic whose retained message
// each new one supersedes (a device's $ack): a broker then keeps no
// queue or delivery state per subscriber for it — a NATS node, none of
// the replicated consumer it makes for every QoS 1 subscription — and a
// connection that missed some gets the retained latest when it
// subscribes again.
func (c *Client) SubscribeLatest(filter string, fn func(topic string, payload []byte)) error {
	return c.subscribeWith(filter, 0, func(m Message) { fn(m.Topic, m.Payload) })
}

// SubscribeMessages is Subscribe with the message's Ack, for ManualAck.
// The client owns the subscription from then on: it is made again after
// every reconnection. Before a connection it is only recorded.
func (c *Client) SubscribeMessages(filter string, fn func(Message)) error {
	return c.subscribeWith(filter, c.qos, fn)
}

func (c *Client) subscribeWith(filter string, qos byte, fn func(Message)) error {
	h := func(_ paho.Client, m paho.Message) {
		fn(Message{Topic: m.Topic(), Payload: m.Payload(), ack: m.Ack})
	}
	c.mu.Lock()
	c.subs[filter] = subscription{h, qos}
	c.mu.Unlock()
	if !c.c.IsConnectionOpen() {
		return nil // made by connected() once there is a connection
	}
	tok := c.c.Subscribe(filter, qos, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wait(ctx, tok); err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	return nil
}

// Connected reports whether the connection is up.
func (c *Client) Connected() bool { return c.c.IsConnectionOpen() }

// Close disconnects cleanly (the will is not sent), waiting up to 250 ms
// for work in flight, and stops reconnecting.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	c.c.Disconnect(250)
}
