package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// logGuard keeps what clients can make the broker log small and rare.
// mochi logs some conditions per packet ("client store quota reached",
// "error processing packet") and puts the whole packet in the record, its
// payload as decimal bytes: a 65 KB publish became 236 KB of log. So:
//
//   - a packet is logged as a one-line summary (type, QoS, the start of
//     its topic, its payload size), and any other value is cut to
//     maxLogValue bytes;
//   - each warning or error passes at most once a minute per message and
//     user (the client's user name, or its remote address without users),
//     not per client id, which a client may change at every connection;
//     the next one that passes says how many were held back. A warning
//     about a connection that was never established (mochi's listeners
//     log those with no message, the error naming both ends of the
//     connection) is keyed on the remote address without its port, which
//     changes at every connection; one about a client id that is not
//     connected is keyed on the message alone, the id being the client's
//     choice;
//   - at most maxWarningsPerMinute pass in all, whoever sends them;
//   - every warning has a message: mochi's listeners give none.
type logGuard struct {
	next  slog.Handler
	state *throttleState
}

const (
	maxLogValue          = 200
	maxWarningsPerMinute = 120
)

type throttleState struct {
	// who returns the user (or remote address) of a client id; nil
	// until the broker exists.
	who atomic.Pointer[func(clientID string) string]

	mu   sync.Mutex
	seen map[string]*throttled
	// windowStart and passed count the warnings passed this minute; held
	// those held back since the last one passed.
	windowStart time.Time
	passed      int
	held        int
}

type throttled struct {
	last time.Time
	held int
}

func newLogGuard(next slog.Handler) *logGuard {
	return &logGuard{next: next, state: &throttleState{seen: map[string]*throttled{}}}
}

// identify sets how a client id is turned into who is behind it.
func (h *logGuard) identify(who func(clientID string) string) { h.state.who.Store(&who) }

func (h *logGuard) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *logGuard) Handle(ctx context.Context, r slog.Record) error {
	msg := r.Message
	if msg == "" {
		// mochi's listeners log what EstablishConnection returned with
		// no message: a CONNECT refused, or one that never came.
		msg = msgNotEstablished
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool { out.AddAttrs(boundAttr(a)); return true })
	if r.Level >= slog.LevelWarn && endedConnection(r) {
		out.Level = slog.LevelDebug
	}
	if out.Level < slog.LevelWarn {
		if !h.next.Enabled(ctx, out.Level) {
			return nil
		}
		return h.next.Handle(ctx, out)
	}
	st := h.state
	who := st.who.Load()
	key := msg
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "client":
			id := a.Value.String()
			if who != nil {
				if sender := (*who)(id); sender != id {
					id = sender
				} else {
					// Not connected (yet, or any more): who is behind it is
					// unknown, and a fresh id per connection must not make
					// a fresh key.
					id = "a client not connected"
				}
			}
			key += "|" + id
		case "error":
			key += "|" + errorKey(a.Value)
		}
		return true
	})
	st.mu.Lock()
	t := st.seen[key]
	if t == nil {
		if len(st.seen) > 10000 { // bound memory under a flood of distinct keys
			st.seen = map[string]*throttled{}
		}
		t = &throttled{}
		st.seen[key] = t
	}
	if r.Time.Sub(st.windowStart) >= time.Minute {
		st.windowStart, st.passed = r.Time, 0
	}
	if !t.last.IsZero() && r.Time.Sub(t.last) < time.Minute || st.passed >= maxWarningsPerMinute {
		t.held++
		st.held++
		st.mu.Unlock()
		return nil
	}
	held, allHeld := t.held, st.held
	t.last, t.held = r.Time, 0
	st.passed++
	st.held = 0
	st.mu.Unlock()
	if held > 0 {
		out.AddAttrs(slog.Int("repeated_since_last", held))
	}
	if allHeld > held {
		out.AddAttrs(slog.Int("other_warnings_held_back", allHeld-held))
	}
	return h.next.Handle(ctx, out)
}

// msgNotEstablished is the message of a listener's warning, which mochi
// logs without one.
const msgNotEstablished = "connection not established"

// addrPort matches an IP address with its port, as net.OpError prints
// both ends of a connection.
var addrPort = regexp.MustCompile(`(\d{1,3}(?:\.\d{1,3}){3}|\])\:\d+`)

// errorKey is what of an error value tells warnings apart: its text without
// the ports of the addresses it names (a client's source port is new at
// every connection), and the remote address when the error carries one.
func errorKey(v slog.Value) string {
	key := truncate(addrPort.ReplaceAllString(v.String(), "$1"))
	var op *net.OpError
	if err, ok := v.Any().(error); ok && errors.As(err, &op) && op.Addr != nil {
		host, _, err := net.SplitHostPort(op.Addr.String())
		if err != nil {
			host = op.Addr.String()
		}
		key = "address " + host + "|" + key
	}
	return key
}

// endedConnection reports whether r's error only says the client's
// connection is gone (mochi warns of each write to a closed connection).
func endedConnection(r slog.Record) bool {
	ended := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "error" {
			ended = connectionEnded(err)
			return false
		}
		return true
	})
	return ended
}

// boundAttr summarises packets and cuts long values.
func boundAttr(a slog.Attr) slog.Attr {
	if pk, ok := a.Value.Any().(packets.Packet); ok {
		return slog.String(a.Key, packetSummary(pk))
	}
	if pk, ok := a.Value.Any().(*packets.Packet); ok && pk != nil {
		return slog.String(a.Key, packetSummary(*pk))
	}
	if a.Value.Kind() == slog.KindString || a.Value.Kind() == slog.KindAny {
		if s := a.Value.String(); len(s) > maxLogValue {
			return slog.String(a.Key, truncate(s))
		}
	}
	return a
}

func truncate(s string) string {
	if len(s) <= maxLogValue {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:maxLogValue], len(s))
}

// packetSummary describes a packet in one short line.
func packetSummary(pk packets.Packet) string {
	name := packets.PacketNames[pk.FixedHeader.Type]
	topic := pk.TopicName
	if len(topic) > 64 {
		topic = fmt.Sprintf("%s… (%d bytes)", topic[:64], len(topic))
	}
	return fmt.Sprintf("%s qos=%d id=%d topic=%q payload=%d bytes", name, pk.FixedHeader.Qos, pk.PacketID, topic, len(pk.Payload))
}

func (h *logGuard) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logGuard{next: h.next.WithAttrs(attrs), state: h.state}
}

func (h *logGuard) WithGroup(name string) slog.Handler {
	return &logGuard{next: h.next.WithGroup(name), state: h.state}
}
