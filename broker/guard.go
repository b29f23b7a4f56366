package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Limits on connections that have not logged in yet. mochi sets no
// deadline before the CONNECT packet and allocates the size a packet
// declares before reading it, so without these an idle or half-sent
// connection costs memory forever.
const (
	// DefaultConnectTimeout is how long a new connection has to send its
	// whole CONNECT packet.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxConnectSize bounds a CONNECT packet (client id, user,
	// password, last will): apd's are a few hundred bytes.
	DefaultMaxConnectSize = 16 << 10
	// DefaultMaxUnauthenticated bounds the connections that have not
	// completed their CONNECT; more are closed at once.
	DefaultMaxUnauthenticated = 1024
)

// guard holds the limits of connections before they log in, shared by
// every listener of a broker.
type guard struct {
	timeout time.Duration
	maxSize int
	max     int64
	pending atomic.Int64
	refused atomic.Uint64
	log     *slog.Logger

	mu    sync.Mutex
	conns map[*guardedConn]struct{} // not logged in yet
}

// closePending closes every connection that has not logged in: at
// shutdown mochi waits for each connection to end, and these would end
// only at their CONNECT deadline.
func (g *guard) closePending() {
	g.mu.Lock()
	conns := make([]*guardedConn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		_ = c.Conn.Close()
	}
}

func newGuard(opts Options, log *slog.Logger) *guard {
	g := &guard{timeout: opts.ConnectTimeout, maxSize: opts.MaxConnectSize, max: int64(opts.MaxUnauthenticated), log: log,
		conns: map[*guardedConn]struct{}{}}
	if g.timeout <= 0 {
		g.timeout = DefaultConnectTimeout
	}
	if g.maxSize <= 0 {
		g.maxSize = DefaultMaxConnectSize
	}
	if g.max <= 0 {
		g.max = DefaultMaxUnauthenticated
	}
	return g
}

// wrap returns l with every connection it establishes guarded.
func (g *guard) wrap(l listeners.Listener) listeners.Listener {
	return &guardedListener{Listener: l, g: g}
}

type guardedListener struct {
	listeners.Listener
	g *guard
}

func (l *guardedListener) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		gc, ok := l.g.admit(c)
		if !ok {
			_ = c.Close()
			return nil
		}
		defer gc.release()
		err := establish(id, gc)
		switch {
		case err != nil && !gc.spoke.Load():
			return nil // a probe or a port scan that sent nothing: not worth a warning
		case connectionEnded(err):
			return nil // the client went, or the broker stops: routine
		}
		return err
	})
}

// connectionEnded reports whether err only says the connection is gone:
// a client that disconnects while the broker writes to it (a device
// powered off mid-acknowledgement) is routine, not worth a warning.
func connectionEnded(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, mqtt.ErrConnectionClosed)
}

// waitAccepting waits until addr accepts TCP connections: mochi starts
// some listeners (WebSocket) in the background. With tc it completes a
// TLS handshake too, so an HTTP server behind it has nothing to complain
// of.
func waitAccepting(addr string, tc *tls.Config, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			if tc != nil {
				tlsc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // a probe of our own listener: no secret crosses it
				_ = tlsc.SetDeadline(time.Now().Add(time.Second))
				_ = tlsc.Handshake()
				return tlsc.Close()
			}
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("listener %s does not accept connections: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// admit counts a new connection as unauthenticated and reports whether
// there is room for it.
func (g *guard) admit(c net.Conn) (*guardedConn, bool) {
	if g.pending.Add(1) > g.max {
		g.pending.Add(-1)
		if g.refused.Add(1)%1000 == 1 {
			g.log.Warn("too many connections that have not logged in; refusing new ones",
				"limit", g.max, "remote", c.RemoteAddr().String(), "refused_total", g.refused.Load())
		}
		return nil, false
	}
	_ = c.SetDeadline(time.Now().Add(g.timeout))
	gc := &guardedConn{Conn: c, g: g}
	g.mu.Lock()
	g.conns[gc] = struct{}{}
	g.mu.Unlock()
	return gc, true
}

// guardedConn is a connection until its CONNECT is accepted: it must send
// a CONNECT packet, no larger than the limit, before the deadline.
type guardedConn struct {
	net.Conn
	g *guard

	once    sync.Once
	spoke   atomic.Bool // sent at least one byte
	checked atomic.Bool // the first packet's header was read and is within limits
	header  []byte      // first bytes, until the fixed header is complete
}

var errConnectTooLarge = errors.New("CONNECT packet too large")

// release ends the connection's unauthenticated time.
func (c *guardedConn) release() {
	c.once.Do(func() {
		c.g.pending.Add(-1)
		c.g.mu.Lock()
		delete(c.g.conns, c)
		c.g.mu.Unlock()
	})
}

func (c *guardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.checked.Load() {
		c.spoke.Store(true)
		if cerr := c.inspect(p[:n]); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
}

// inspect reads the fixed header of the first packet as it passes: it
// must be a CONNECT whose declared length is within the limit.
func (c *guardedConn) inspect(b []byte) error {
	for _, x := range b {
		c.header = append(c.header, x)
		if len(c.header) == 1 {
			if x>>4 != packets.Connect {
				return fmt.Errorf("first packet is not CONNECT")
			}
			continue
		}
		if x&0x80 != 0 {
			if len(c.header) > 4 {
				return errConnectTooLarge
			}
			continue
		}
		size, mul := 0, 1
		for _, d := range c.header[1:] {
			size += int(d&0x7f) * mul
			mul *= 128
		}
		if size > c.g.maxSize {
			return errConnectTooLarge
		}
		c.checked.Store(true)
		c.header = nil
		return nil
	}
	return nil
}

func (c *guardedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// loginHook ends a connection's unauthenticated time once its session is
// established.
type loginHook struct{ mqtt.HookBase }

func (loginHook) ID() string { return "apd-login" }

func (loginHook) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

func (loginHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if gc, ok := cl.Net.Conn.(*guardedConn); ok {
		gc.release()
	}
}
