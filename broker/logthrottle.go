package broker

import (
	"context"
	"fmt"
	"log/slog"
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
//     the next one that passes says how many were held back;
//   - at most maxWarningsPerMinute pass in all, whoever sends them.
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
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
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
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "client":
			id := a.Value.String()
			if who != nil {
				id = (*who)(id)
			}
			key += "|" + id
		case "error":
			key += "|" + truncate(a.Value.String())
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
