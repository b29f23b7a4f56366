package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// wsBroker starts a broker with a WebSocket listener, over TLS when secure,
// and returns it with the WebSocket address and the TLS CA file (empty
// without TLS).
func wsBroker(t *testing.T, secure bool, opts Options) (*Broker, string, string) {
	t.Helper()
	var ca string
	if secure {
		var cert, key string
		ca, cert, key = testutil.TLSFiles(t, t.TempDir())
		tc, err := LoadTLS(cert, key, "")
		if err != nil {
			t.Fatal(err)
		}
		opts.TLSConfig = tc
	}
	opts.Addr, opts.WSAddr = "127.0.0.1:0", "127.0.0.1:0"
	b, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, b.WSAddr(), ca
}

// endsWithin reports whether the broker closes c within d, whatever it
// answers first.
func endsWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	ne, ok := err.(net.Error)
	return !ok || !ne.Timeout()
}

// halfUpgrade opens a connection to a WebSocket listener, completes TLS
// when secure, and sends the first half of an HTTP upgrade request. It
// fails the test if the TLS handshake fails.
func halfUpgrade(t *testing.T, addr string, secure bool) net.Conn {
	t.Helper()
	c, err := dialHalfUpgrade(addr, secure)
	if err != nil {
		t.Fatalf("half upgrade: %v", err)
	}
	return c
}

func dialHalfUpgrade(addr string, secure bool) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if secure {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // the test's own listener
		_ = tc.SetDeadline(time.Now().Add(2 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		_ = tc.SetDeadline(time.Time{})
		c = tc
	}
	if _, err := c.Write([]byte("GET /mqtt HTTP/1.1\r\nHost: apd\r\nUpgrade: websocket\r\n")); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// TestWSHalfUpgradeClosedAtDeadline: a connection to the WebSocket
// listener that completes TLS (or not) and sends half an HTTP upgrade is
// closed at the CONNECT deadline, which runs from accept.
func TestWSHalfUpgradeClosedAtDeadline(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name   string
		secure bool
		open   func(t *testing.T, addr string) net.Conn
	}{
		{"wss half upgrade", true, func(t *testing.T, addr string) net.Conn { return halfUpgrade(t, addr, true) }},
		{"ws half upgrade", false, func(t *testing.T, addr string) net.Conn { return halfUpgrade(t, addr, false) }},
		{"wss silent before TLS", true, func(t *testing.T, addr string) net.Conn { return dialRaw(t, addr) }},
		{"wss half ClientHello", true, func(t *testing.T, addr string) net.Conn {
			c := dialRaw(t, addr)
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a 512-byte record announced, 1 byte sent
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr, _ := wsBroker(t, tc.secure, Options{ConnectTimeout: timeout})
			start := time.Now()
			c := tc.open(t, addr)
			defer c.Close()
			if !closedWithin(c, 5*time.Second) {
				t.Fatalf("held %s, the CONNECT deadline is %s", time.Since(start).Round(time.Millisecond), timeout)
			}
			if held := time.Since(start); held < timeout*2/3 {
				t.Errorf("closed after %s, before the %s deadline", held, timeout)
			}
		})
	}
}

// TestWSPreLoginCap: WebSocket connections count toward the cap of
// connections not logged in from the moment they are accepted; beyond it
// a new one is closed at once, on every listener, while those held stay
// open; a place freed is taken again.
func TestWSPreLoginCap(t *testing.T) {
	t.Parallel()
	for _, secure := range []bool{true, false} {
		name := map[bool]string{true: "wss", false: "ws"}[secure]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, addr, _ := wsBroker(t, secure, Options{ConnectTimeout: 20 * time.Second, MaxUnauthenticated: 5})
			settled(t, b, b.Addr(), addr)
			held := make([]net.Conn, 5)
			for i := range held {
				held[i] = halfUpgrade(t, addr, secure)
				defer held[i].Close()
			}
			testutil.WaitFor(t, "5 half-open WebSocket connections counted", 10*time.Second, func() bool {
				return b.guard.pending.Load() == 5
			})
			over, err := dialHalfUpgrade(addr, secure)
			if err == nil {
				defer over.Close()
				if !closedWithin(over, time.Second) {
					t.Errorf("the 6th %s connection was held beyond the cap of 5", name)
				}
			}
			tcp := dialRaw(t, b.Addr())
			if !closedWithin(tcp, time.Second) {
				t.Error("a TCP connection was held while 5 WebSocket ones fill the cap")
			}
			for i, c := range held {
				if closedWithin(c, 20*time.Millisecond) {
					t.Fatalf("held connection %d closed", i)
				}
			}
			held[0].Close()
			testutil.WaitFor(t, "the closed connection's place freed", 10*time.Second, func() bool {
				return b.guard.pending.Load() == 4
			})
			again := halfUpgrade(t, addr, secure)
			defer again.Close()
			if closedWithin(again, 100*time.Millisecond) {
				t.Error("a freed place was not taken again")
			}
		})
	}
}

// TestWSErrorsThrottled: failed TLS handshakes on the WebSocket listener
// write nothing to the standard library's log; they go to the broker's
// logger, throttled. Not parallel: it takes over the standard log.
func TestWSErrorsThrottled(t *testing.T) {
	var std testutil.SyncBuffer // written by the log package's goroutines
	prev, flags := log.Writer(), log.Flags()
	log.SetOutput(&std)
	defer func() { log.SetOutput(prev); log.SetFlags(flags) }()
	var logged testutil.SyncBuffer
	_, addr, _ := wsBroker(t, true, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})

	const n = 40
	for i := range n {
		c := dialRaw(t, addr)
		if i%2 == 0 {
			// plain HTTP to the TLS port
			_, _ = c.Write([]byte("GET /mqtt HTTP/1.1\r\nHost: apd\r\n\r\n"))
		} else {
			// a client that does not trust the server's certificate
			_ = tls.Client(c, &tls.Config{ServerName: "apd", RootCAs: x509.NewCertPool()}).Handshake()
		}
		if !endsWithin(c, 5*time.Second) {
			t.Fatalf("bad handshake %d: connection held", i)
		}
		c.Close()
	}
	if s := std.String(); s != "" {
		t.Errorf("the standard log got:\n%s", s)
	}
	testutil.WaitFor(t, "a handshake error in the broker's log", 5*time.Second, func() bool {
		return strings.Contains(logged.String(), "TLS handshake error")
	})
	if lines := strings.Count(logged.String(), "level=WARN"); lines > 3 {
		t.Errorf("%d bad handshakes made %d warnings in the broker's log, want at most 3:\n%s", n, lines, logged.String())
	}
}

// TestWSHeaderBound: an upgrade request whose header exceeds the bound is
// refused (431) instead of upgraded.
func TestWSHeaderBound(t *testing.T) {
	t.Parallel()
	_, addr, _ := wsBroker(t, false, Options{})
	c := dialRaw(t, addr)
	req := "GET /mqtt HTTP/1.1\r\nHost: apd\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n" +
		"X-Padding: " + strings.Repeat("a", 16<<10) + "\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 16 KiB header: got status %d, want %d", resp.StatusCode, http.StatusRequestHeaderFieldsTooLarge)
	}
}

// TestMQTTOverWebSocket: real clients connect, subscribe and publish over
// WS and WSS; the CONNECT checks apply to the MQTT bytes inside the
// WebSocket; a client that logged in stays connected past the CONNECT
// deadline and no longer counts as not logged in.
func TestMQTTOverWebSocket(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	for _, secure := range []bool{true, false} {
		scheme := map[bool]string{true: "wss", false: "ws"}[secure]
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			b, addr, ca := wsBroker(t, secure, Options{ConnectTimeout: timeout, MaxConnectSize: 1024})
			url := scheme + "://" + addr
			sub, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: "sub", TLSCA: ca, QoS: 1})
			if err != nil {
				t.Fatalf("subscriber over %s: %v", scheme, err)
			}
			defer sub.Close()
			got := make(chan string, 1)
			if err := sub.Subscribe("apd/#", func(_ string, p []byte) { got <- string(p) }); err != nil {
				t.Fatal(err)
			}
			pub, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: "pub", TLSCA: ca, QoS: 1})
			if err != nil {
				t.Fatalf("publisher over %s: %v", scheme, err)
			}
			defer pub.Close()
			if err := pub.Publish(context.Background(), "apd/pi/t", []byte("21"), false); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-got:
				if p != "21" {
					t.Errorf("got %q, want 21", p)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("nothing received")
			}
			testutil.WaitFor(t, "logged-in clients no longer counted", 2*time.Second, func() bool {
				return b.guard.pending.Load() == 0
			})

			dialer := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 2 * time.Second}
			if secure {
				pem, err := os.ReadFile(ca)
				if err != nil {
					t.Fatal(err)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(pem)
				dialer.TLSClientConfig = &tls.Config{RootCAs: pool}
			}
			dial := func() *websocket.Conn {
				ws, _, err := dialer.Dial(url, nil)
				if err != nil {
					t.Fatalf("WebSocket dial: %v", err)
				}
				t.Cleanup(func() { ws.Close() })
				return ws
			}
			// A logged-in connection outlives the CONNECT deadline.
			ws := dial()
			connect := []byte{0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x03, 'r', 'a', 'w'}
			if err := ws.WriteMessage(websocket.BinaryMessage, connect); err != nil {
				t.Fatal(err)
			}
			_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, ack, err := ws.ReadMessage(); err != nil || len(ack) != 4 || ack[0] != 0x20 || ack[3] != 0 {
				t.Fatalf("CONNACK over %s: %x, %v", scheme, ack, err)
			}
			_ = ws.SetReadDeadline(time.Now().Add(3 * timeout))
			if _, _, err := ws.ReadMessage(); err == nil {
				t.Fatal("unexpected message")
			} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Fatalf("a logged-in WebSocket client was disconnected: %v", err)
			}

			for _, c := range []struct {
				name  string
				first []byte
			}{
				{"a 64 KiB CONNECT", []byte{0x10, 0x80, 0x80, 0x04, 0x00, 0x04, 'M', 'Q', 'T', 'T'}},
				{"a PUBLISH before CONNECT", []byte{0x30, 0x02, 0x00, 0x00}},
			} {
				ws := dial()
				start := time.Now()
				if err := ws.WriteMessage(websocket.BinaryMessage, c.first); err != nil {
					t.Fatal(err)
				}
				_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, _, err := ws.ReadMessage(); err == nil {
					t.Errorf("%s over %s: got a reply", c.name, scheme)
				} else if time.Since(start) > timeout/2 {
					t.Errorf("%s over %s: closed after %s, not at once", c.name, scheme, time.Since(start))
				}
			}
		})
	}
}

// TestTLSListenerHandshakeUnderDeadline: the TLS listener's handshake
// happens on the first read, inside the CONNECT deadline and the cap: a
// client that stops halfway through TLS is closed at the deadline, and
// failed handshakes log nothing to the standard log. Not parallel: it
// takes over the standard log.
func TestTLSListenerHandshakeUnderDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	var std testutil.SyncBuffer // written by the log package's goroutines
	prev := log.Writer()
	log.SetOutput(&std)
	defer log.SetOutput(prev)
	_, cert, key := testutil.TLSFiles(t, t.TempDir())
	tc, err := LoadTLS(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(Options{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLSConfig: tc, ConnectTimeout: timeout, MaxUnauthenticated: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tlsAddr := b.TLSAddr()
	settled(t, b, b.Addr(), tlsAddr)

	silent := dialRaw(t, tlsAddr)
	half := dialRaw(t, tlsAddr)
	_, _ = half.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
	testutil.WaitFor(t, "2 TLS connections counted", 2*time.Second, func() bool { return b.guard.pending.Load() == 2 })
	if over := dialRaw(t, tlsAddr); !closedWithin(over, time.Second) {
		t.Error("a TLS connection beyond the cap was held")
	}
	start := time.Now()
	for _, c := range []net.Conn{silent, half} {
		if !closedWithin(c, 5*time.Second) {
			t.Fatalf("held %s, the CONNECT deadline is %s", time.Since(start), timeout)
		}
	}
	for range 10 {
		c := dialRaw(t, tlsAddr)
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		endsWithin(c, 5*time.Second)
		c.Close()
	}
	if s := std.String(); s != "" {
		t.Errorf("the standard log got:\n%s", s)
	}
}
