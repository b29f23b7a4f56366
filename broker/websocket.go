package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsMaxHeaderBytes bounds the header of a WebSocket upgrade request
// (net/http's default is 1 MiB); a browser's is well under 2 KiB.
const wsMaxHeaderBytes = 8 << 10

// errNotBinary is a WebSocket message that is not binary: MQTT over
// WebSocket is carried in binary frames only [MQTT-6.0.0-1].
var errNotBinary = errors.New("WebSocket message not binary")

// wsListener is MQTT over WebSocket (over TLS with a TLS config), under
// the broker's guard from the moment a connection is accepted: it counts
// toward the connections not logged in (beyond the cap it is closed at
// once), and its CONNECT deadline covers the TLS handshake, the HTTP
// upgrade and the CONNECT packet. Inside the WebSocket the first packet
// is checked as on TCP (a CONNECT within the size limit). The HTTP
// server's error log (TLS handshake and accept errors) goes to the
// broker's throttled logger.
//
// It replaces mochi's WebSocket listener, whose HTTP server allowed 60 s
// per phase and 1 MiB of header, logged to the standard library's log,
// and handed a connection to the guard only once upgraded.
type wsListener struct {
	id      string
	address string
	tls     *tls.Config
	g       *guard

	ln        net.Listener // the TCP listener, bound by Init
	srv       *http.Server
	log       *slog.Logger
	establish listeners.EstablishFn
	upgrader  websocket.Upgrader
	closed    atomic.Bool
}

var _ listeners.Listener = (*wsListener)(nil)

// newWSListener returns a WebSocket listener on cfg.Address guarded by g,
// over TLS when cfg.TLSConfig is set.
func newWSListener(cfg listeners.Config, g *guard) *wsListener {
	return &wsListener{id: cfg.ID, address: cfg.Address, tls: cfg.TLSConfig, g: g,
		upgrader: websocket.Upgrader{
			Subprotocols: []string{"mqtt"},
			// Any origin: a page from elsewhere still has to log in.
			CheckOrigin: func(*http.Request) bool { return true },
		}}
}

// ID returns the listener's id.
func (l *wsListener) ID() string { return l.id }

// Address returns the address listened on, with its real port once Init
// has bound it.
func (l *wsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Protocol returns "wss" over TLS, else "ws".
func (l *wsListener) Protocol() string {
	if l.tls != nil {
		return "wss"
	}
	return "ws"
}

// Init binds the address (so that the broker's New reports one in use)
// and prepares the HTTP server.
func (l *wsListener) Init(logger *slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	l.ln, l.log = ln, logger
	l.srv = &http.Server{
		Handler: http.HandlerFunc(l.upgrade),
		// The guard's deadline bounds the phases before login together;
		// these keep net/http from granting any one of them more.
		ReadHeaderTimeout: l.g.timeout,
		ReadTimeout:       l.g.timeout,
		WriteTimeout:      l.g.timeout,
		MaxHeaderBytes:    wsMaxHeaderBytes,
		ErrorLog:          log.New(httpErrorLog{logger}, "", 0),
		// No HTTP/2: the upgrade is HTTP/1.1's.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	l.srv.SetKeepAlivesEnabled(false) // one upgrade per connection
	return nil
}

// Serve serves connections until Close.
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	var served net.Listener = &wsAdmission{Listener: l.ln, g: l.g}
	if l.tls != nil {
		tc := l.tls.Clone()
		tc.NextProtos = []string{"http/1.1"}
		served = tls.NewListener(served, tc)
	}
	err := l.srv.Serve(served)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !l.closed.Load() {
		l.log.Error("WebSocket listener stopped", "error", err)
	}
}

// Close closes the listener and every connection not yet upgraded, then
// has the broker close its clients of this listener.
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	if l.closed.CompareAndSwap(false, true) {
		// Nothing here is worth waiting for: a connection not upgraded
		// has not logged in.
		_ = l.srv.Close()
		_ = l.ln.Close() // in case Serve never ran
	}
	closeClients(l.id)
}

// upgrade upgrades a request to a WebSocket and hands the MQTT stream in
// it to the broker, still guarded until its login.
func (l *wsListener) upgrade(w http.ResponseWriter, r *http.Request) {
	ws, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered with an HTTP error
	}
	defer ws.Close()
	under := ws.UnderlyingConn()
	raw := under
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	ac, ok := raw.(*admittedConn)
	if !ok {
		return // not accepted through wsAdmission: cannot happen
	}
	// The field auth reaches through is the *tls.Conn over WSS, so a
	// client certificate names the user as over TLS.
	gc, ok := ac.handOver(&wsConn{Conn: under, ws: ws})
	if !ok {
		return // closed meanwhile (the broker stops)
	}
	defer gc.release()
	err = l.establish(l.id, gc)
	switch {
	case err == nil:
	case !gc.spoke.Load():
		// upgraded, then nothing: not worth a warning
	case connectionEnded(err):
		// the client went, or the broker stops: routine
	default:
		l.log.Warn(msgNotEstablished, "error", err)
	}
}

// wsAdmission admits each accepted connection through the guard: counted
// as not logged in, under the CONNECT deadline, or closed at once beyond
// the cap.
type wsAdmission struct {
	net.Listener
	g *guard
}

func (a *wsAdmission) Accept() (net.Conn, error) {
	for {
		c, err := a.Listener.Accept()
		if err != nil {
			return nil, err
		}
		deadline := time.Now().Add(a.g.timeout)
		slot, ok := a.g.admit(c)
		if !ok {
			_ = c.Close()
			continue
		}
		return &admittedConn{Conn: c, slot: slot, deadline: deadline}, nil
	}
}

// admittedConn is an accepted TCP connection of the WebSocket listener.
// Until it is upgraded no deadline set on it (by net/http, crypto/tls or
// the upgrader, which clear theirs) reaches past the CONNECT deadline.
type admittedConn struct {
	net.Conn
	slot     *guardedConn // its place among the connections not logged in
	deadline time.Time
	upgraded atomic.Bool
}

func (c *admittedConn) bound(t time.Time) time.Time {
	if !c.upgraded.Load() && (t.IsZero() || t.After(c.deadline)) {
		return c.deadline
	}
	return t
}

func (c *admittedConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.bound(t)) }

func (c *admittedConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.bound(t)) }

func (c *admittedConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.bound(t))
}

// Close closes the connection and frees its place if it still holds it.
func (c *admittedConn) Close() error { return c.slot.Close() }

// handOver moves the connection's place among those not logged in to
// stream, the MQTT stream inside its WebSocket, which is guarded from now
// on as a TCP connection is (first packet, CONNECT size, login). The
// deadline already set stays until mochi sets its own after the CONNECT.
// It reports false if the connection was closed meanwhile.
func (c *admittedConn) handOver(stream net.Conn) (*guardedConn, bool) {
	g := c.slot.g
	gc := &guardedConn{Conn: stream, g: g}
	owned := false
	c.slot.once.Do(func() { owned = true }) // the slot's count is gc's now
	if !owned {
		return nil, false
	}
	g.mu.Lock()
	delete(g.conns, c.slot)
	g.conns[gc] = struct{}{}
	g.mu.Unlock()
	c.upgraded.Store(true)
	return gc, true
}

// wsConn is the MQTT byte stream of a WebSocket connection.
type wsConn struct {
	// Conn is the connection under the WebSocket (a *tls.Conn over WSS),
	// for its addresses and deadlines, and for certificateName, which
	// reaches it by this field's name.
	net.Conn
	ws *websocket.Conn
	r  io.Reader // the message being read, or nil
}

// Read reads the stream across binary messages.
func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			op, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			err = nil
			if n == 0 {
				continue // an empty message, or the end of one
			}
		}
		return n, err
	}
}

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// httpErrorLog takes the lines net/http logs (TLS handshake errors, accept
// errors) into the broker's logger, whose throttle keys them on their text
// without ports: a stranger's failed handshakes are a line a minute per
// address at most.
type httpErrorLog struct{ log *slog.Logger }

func (h httpErrorLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.HasSuffix(line, ": EOF") {
		level = slog.LevelDebug // a probe that closed without a word
	}
	h.log.Log(context.Background(), level, "WebSocket listener: HTTP server error", "error", line)
	return len(p), nil
}
