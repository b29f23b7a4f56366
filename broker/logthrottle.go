package broker

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// oncePerMinute passes each warning or error at most once a minute per
// message and client, and counts what it held back in the next one it
// passes. mochi logs some conditions per packet ("client store quota
// reached"), which would flood the log exactly when things go wrong.
type oncePerMinute struct {
	next  slog.Handler
	state *throttleState
}

type throttleState struct {
	mu   sync.Mutex
	seen map[string]*throttled
}

type throttled struct {
	last time.Time
	held int
}

func newOncePerMinute(next slog.Handler) *oncePerMinute {
	return &oncePerMinute{next: next, state: &throttleState{seen: map[string]*throttled{}}}
}

func (h *oncePerMinute) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *oncePerMinute) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "client" || a.Key == "error" {
			key += "|" + a.Value.String()
		}
		return true
	})
	h.state.mu.Lock()
	t := h.state.seen[key]
	if t == nil {
		if len(h.state.seen) > 10000 { // bound memory under a flood of distinct keys
			h.state.seen = map[string]*throttled{}
		}
		t = &throttled{}
		h.state.seen[key] = t
	}
	if !t.last.IsZero() && r.Time.Sub(t.last) < time.Minute {
		t.held++
		h.state.mu.Unlock()
		return nil
	}
	held := t.held
	t.last, t.held = r.Time, 0
	h.state.mu.Unlock()
	if held > 0 {
		r.AddAttrs(slog.Int("repeated_since_last", held))
	}
	return h.next.Handle(ctx, r)
}

func (h *oncePerMinute) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &oncePerMinute{next: h.next.WithAttrs(attrs), state: h.state}
}

func (h *oncePerMinute) WithGroup(name string) slog.Handler {
	return &oncePerMinute{next: h.next.WithGroup(name), state: h.state}
}
