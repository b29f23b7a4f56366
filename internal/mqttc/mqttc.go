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
	// URL is the broker: tcp://host:port, ssl://host:port or ws://host:port.
	// Required.
	URL      string
	ClientID string
	// Username and Password authenticate to the broker; empty for none.
	Username, Password string
	// TLSCA is a PEM file of CAs to trust for ssl:// brokers; empty uses the
	// system pool.
	TLSCA string
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
	Logger    *slog.Logger
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
type Client struct {
	c    paho.Client
	qos  byte
	log  *slog.Logger
	mu   sync.Mutex
	down bool
}

// Dial connects to the broker. With Retry it returns at once and keeps
// connecting in the background; otherwise it returns an error wrapping
// ErrUnreachable if the first attempt fails.
func Dial(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("broker URL %q: want tcp://host:port, ssl://host:port or ws://host:port", opts.URL)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return nil, fmt.Errorf("broker URL %q: unsupported scheme %q", opts.URL, u.Scheme)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl := &Client{qos: opts.QoS, log: log}
	po := paho.NewClientOptions().
		AddBroker(opts.URL).
		SetClientID(opts.ClientID).
		SetCleanSession(!opts.Persistent).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(30 * time.Second).
		SetConnectRetry(opts.Retry).
		SetConnectRetryInterval(2 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(false).
		SetAutoAckDisabled(opts.ManualAck).
		SetResumeSubs(true)
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
		po.SetTLSConfig(tc)
	}
	if opts.Will != nil {
		po.SetBinaryWill(opts.Will.Topic, opts.Will.Payload, opts.QoS, opts.Will.Retain)
	}
	po.SetOnConnectHandler(func(paho.Client) {
		cl.mu.Lock()
		was := cl.down
		cl.down = false
		cl.mu.Unlock()
		if was {
			log.Info("connected to broker again", "broker", opts.URL)
		} else {
			log.Debug("connected to broker", "broker", opts.URL)
		}
		if opts.OnConnect != nil {
			opts.OnConnect()
		}
	})
	po.SetConnectionLostHandler(func(_ paho.Client, err error) {
		cl.mu.Lock()
		cl.down = true
		cl.mu.Unlock()
		log.Warn("lost connection to broker; reconnecting", "broker", opts.URL, "err", err)
	})
	cl.c = paho.NewClient(po)
	tok := cl.c.Connect()
	if opts.Retry {
		return cl, nil
	}
	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if !tok.WaitTimeout(timeout) {
		cl.c.Disconnect(0)
		return nil, fmt.Errorf("%w: %s: no answer within %s", ErrUnreachable, opts.URL, timeout)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, opts.URL, err)
	}
	return cl, nil
}

func wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Publish sends payload to topic at the client's QoS and waits for the
// broker's acknowledgement or the end of ctx.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, retain bool) error {
	if !c.c.IsConnectionOpen() {
		return errors.New("not connected to broker")
	}
	if err := wait(ctx, c.c.Publish(topic, c.qos, retain, payload)); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// Subscribe delivers every message on filter to fn, from paho's goroutines.
func (c *Client) Subscribe(filter string, fn func(topic string, payload []byte)) error {
	return c.SubscribeMessages(filter, func(m Message) { fn(m.Topic, m.Payload) })
}

// SubscribeMessages is Subscribe with the message's Ack, for ManualAck.
func (c *Client) SubscribeMessages(filter string, fn func(Message)) error {
	tok := c.c.Subscribe(filter, c.qos, func(_ paho.Client, m paho.Message) {
		fn(Message{Topic: m.Topic(), Payload: m.Payload(), ack: m.Ack})
	})
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
// for work in flight.
func (c *Client) Close() { c.c.Disconnect(250) }
