package dashboard

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Hub pushes committed readings to the dashboards watching, as
// Server-Sent Events at /api/v1/live. Publish runs on the commit path:
// it never blocks there. What waits to be sent is bounded in bytes, per
// watcher (WatcherBytes) and for all together (TotalBytes); a watcher
// that falls behind loses what was waiting for it and is told to fetch
// again ("resync"), rather than slowing ingestion or growing memory.
// When the total is full, the watcher furthest behind loses its events
// first; when every place is taken, the one furthest behind is let go
// to make room for a new one.
type Hub struct {
	// Keepalive is how often an idle stream gets a comment, so proxies
	// and write deadlines do not cut it.
	Keepalive time.Duration
	// WatcherBytes bounds the events waiting for one watcher, in bytes
	// of their encoding; 0 means DefaultWatcherBytes. TotalBytes bounds
	// them for all watchers together; 0 means DefaultLiveBytes. Set them
	// before the hub is used.
	WatcherBytes int
	TotalBytes   int

	mu      sync.Mutex
	subs    map[*watcher]struct{}
	max     int
	pending int // bytes of events queued or being written, all watchers
	dropped atomic.Uint64
	evicted atomic.Uint64
}

// DefaultWatcherBytes is the events one watcher may have waiting, in
// bytes: about 8,000 readings, minutes of a busy fleet's readings for a
// dashboard that stalls for a moment, while a watcher that does not read
// at all costs no more than this.
const DefaultWatcherBytes = 1 << 20

// DefaultLiveBytes is the events all watchers together may have waiting,
// in bytes. With the watchers a hub admits (64 in apd serve) each at
// DefaultWatcherBytes this would be 64 MiB; the total keeps the live
// stream's memory at 16 MiB however many watchers stall at once (64
// silent watchers during a flood used to take 960 MB).
const DefaultLiveBytes = 16 << 20

// MaxSensors bounds the sensors one watcher may name (repeated sensor
// parameters): its filter is consulted for every reading of every
// commit. The dashboard names the page it charts.
const MaxSensors = 64

type watcher struct {
	sensors map[string]bool // empty: all
	key     string          // the sensors, sorted: watchers alike share an encoding
	joined  time.Time
	wake    chan struct{} // capacity 1: something to send, or evicted
	// cut ends a write in progress (the connection's write deadline set
	// to now), for a watcher let go while it is stuck writing.
	cut func()

	// Guarded by Hub.mu.
	queue     []event
	queued    int       // bytes in queue
	writing   int       // bytes of the event being written
	writingAt time.Time // when that event was published
	behind    bool      // events were dropped: send resync before the next
	evicted   bool      // let go to make room: say so and end
}

type event struct {
	data []byte
	at   time.Time
}

// NewHub returns a hub for at most max watchers at once.
func NewHub(max int) *Hub {
	return &Hub{subs: map[*watcher]struct{}{}, max: max, Keepalive: 15 * time.Second}
}

// MaxPerEvent bounds the readings of one event: a fleet's commit holds
// thousands, a dashboard draws a few per host and sensor.
const MaxPerEvent = 5000

// LiveReading is one reading of a live event.
type LiveReading struct {
	Host   string   `json:"host"`
	Sensor string   `json:"sensor"`
	T      float64  `json:"t"` // unix seconds
	V      *float64 `json:"v"` // null when not a number
	// Unit is a quantity's unit (the chart may show it in another: a
	// ratio as a percentage).
	Unit  string `json:"unit,omitempty"`
	Human string `json:"human,omitempty"`
}

// Watchers returns how many dashboards watch now.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Dropped returns how many events were dropped for watchers behind.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Evicted returns how many watchers were let go to make room for new ones.
func (h *Hub) Evicted() uint64 { return h.evicted.Load() }

// Pending returns the bytes of events waiting to be sent (or being sent)
// to all watchers; it stays within TotalBytes.
func (h *Hub) Pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pending
}

func (h *Hub) watcherBytes() int { return cmp.Or(h.WatcherBytes, DefaultWatcherBytes) }
func (h *Hub) totalBytes() int   { return cmp.Or(h.TotalBytes, DefaultLiveBytes) }

// Publish offers a commit's readings to every watcher.
func (h *Hub) Publish(rs []schema.Reading) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return
	}
	now := time.Now()
	// Watchers of the same sensors get the same bytes, encoded once.
	encoded := map[string][]byte{}
	for w := range h.subs {
		b, seen := encoded[w.key]
		if !seen {
			b = encode(rs, w.sensors)
			encoded[w.key] = b
		}
		if b != nil {
			h.enqueue(w, event{data: b, at: now})
		}
	}
}

// encode returns the readings of rs a watcher of sensors gets (at most
// MaxPerEvent), as JSON, or nil when there are none.
func encode(rs []schema.Reading, sensors map[string]bool) []byte {
	var batch []LiveReading
	for i := range rs {
		r := &rs[i]
		if len(sensors) > 0 && !sensors[r.Sensor] {
			continue
		}
		if len(batch) == MaxPerEvent {
			break // the watcher sees the rest at its next fetch
		}
		lr := LiveReading{Host: r.Host, Sensor: r.Sensor, T: float64(r.Time.UnixMilli()) / 1000, Human: schema.Human(r)}
		if v, ok := schema.Numeric(r.Value); ok && r.Error == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
			lr.V = &v
			if q, ok := schema.ParseQuantity(r.Value); ok {
				lr.Unit = q.Unit
			}
		}
		batch = append(batch, lr)
	}
	if len(batch) == 0 {
		return nil
	}
	b, err := json.Marshal(batch)
	if err != nil {
		return nil
	}
	return b
}

// enqueue adds e to w's queue within the bounds: beyond w's own, w's
// queue is dropped; beyond the total, the queues of the watchers
// furthest behind are dropped until e fits (e itself is dropped when
// nothing else can go). Every watcher that loses events is told to
// resync. h.mu is held.
func (h *Hub) enqueue(w *watcher, e event) {
	size := len(e.data)
	if size > h.watcherBytes() {
		h.drop(w, 1)
		return
	}
	if w.queued+w.writing+size > h.watcherBytes() {
		if w.writing+size > h.watcherBytes() {
			h.drop(w, 1) // even alone it would not fit beside the one being written
			return
		}
		h.drop(w, 0)
	}
	for h.pending+size > h.totalBytes() {
		victim := h.furthestBehind(true)
		if victim == nil {
			h.drop(w, 1)
			return
		}
		h.drop(victim, 0)
	}
	w.queue = append(w.queue, e)
	w.queued += size
	h.pending += size
	w.signal()
}

// drop discards w's queue (plus extra events never queued), counts them
// and marks w to resync. h.mu is held.
func (h *Hub) drop(w *watcher, extra int) {
	h.dropped.Add(uint64(len(w.queue) + extra))
	h.pending -= w.queued
	w.queue, w.queued = nil, 0
	w.behind = true
	w.signal()
}

// furthestBehind returns the watcher whose oldest unsent event is the
// oldest, or with withQueue nil when no watcher has a queue (a watcher
// only writing has nothing to drop). Without withQueue, a watcher with
// nothing unsent is never ahead of one that has some; among those, the
// one watching longest goes first. h.mu is held.
func (h *Hub) furthestBehind(withQueue bool) *watcher {
	var worst *watcher
	var worstAt time.Time
	for w := range h.subs {
		if withQueue && w.queued == 0 {
			continue
		}
		at := w.oldestUnsent()
		switch {
		case worst == nil:
		case at.IsZero() && !worstAt.IsZero():
			continue
		case !at.IsZero() && worstAt.IsZero():
		case at.Equal(worstAt) && w.joined.Before(worst.joined):
		case !at.Before(worstAt):
			continue
		}
		worst, worstAt = w, at
	}
	return worst
}

// oldestUnsent is when the oldest event not yet sent to w was published,
// zero when w has nothing unsent. h.mu is held.
func (w *watcher) oldestUnsent() time.Time {
	if w.writing > 0 {
		return w.writingAt
	}
	if len(w.queue) > 0 {
		return w.queue[0].at
	}
	return time.Time{}
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// admit adds w, letting the watcher furthest behind go when every place
// is taken: a new dashboard is never refused for watchers that stalled.
// h.mu is held.
func (h *Hub) admit(w *watcher) {
	if len(h.subs) >= h.max {
		if victim := h.furthestBehind(false); victim != nil {
			delete(h.subs, victim)
			h.pending -= victim.queued
			victim.queue, victim.queued = nil, 0
			victim.evicted = true
			if victim.writing > 0 {
				victim.cut()
			}
			victim.signal()
			h.evicted.Add(1)
		}
	}
	h.subs[w] = struct{}{}
}

// ServeHTTP streams events: "readings" with a JSON array of LiveReading,
// and "resync" when the watcher missed some. sensor (repeatable, at most
// MaxSensors) narrows what is sent.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	sensors := map[string]bool{}
	for _, s := range r.URL.Query()["sensor"] {
		if err := schema.ValidateName(s); err != nil {
			http.Error(w, "sensor: "+err.Error(), http.StatusBadRequest)
			return
		}
		sensors[s] = true
	}
	if len(sensors) > MaxSensors {
		http.Error(w, fmt.Sprintf("%d sensors named, at most %d: watch a page of them, or all (no sensor)", len(sensors), MaxSensors), http.StatusBadRequest)
		return
	}
	names := make([]string, 0, len(sensors))
	for s := range sensors {
		names = append(names, s)
	}
	slices.Sort(names)
	wt := &watcher{sensors: sensors, key: strings.Join(names, ","), joined: time.Now(), wake: make(chan struct{}, 1),
		cut: func() { _ = rc.SetWriteDeadline(time.Now()) }}
	h.mu.Lock()
	h.admit(wt)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if !wt.evicted {
			delete(h.subs, wt)
		}
		h.pending -= wt.queued + wt.writing
		wt.queue, wt.queued, wt.writing = nil, 0, 0
		h.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A reconnecting EventSource waits this long (ms).
	fmt.Fprint(w, "retry: 3000\n: apd live\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	tick := time.NewTicker(h.Keepalive)
	defer tick.Stop()
	id := 0
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			continue
		case <-wt.wake:
		}
		// Send what is queued, one event at a time, so that only one is
		// out of the queue (and beyond dropping) at once.
		for {
			h.mu.Lock()
			if wt.evicted {
				h.mu.Unlock()
				// Let go for a new dashboard: this one fetches again and
				// comes back later rather than at once, which would let
				// another go.
				fmt.Fprint(w, "retry: 30000\nevent: resync\ndata: {}\n\n")
				_ = rc.SetWriteDeadline(time.Now().Add(time.Second))
				_ = rc.Flush()
				return
			}
			resync := wt.behind
			wt.behind = false
			var e event
			if len(wt.queue) > 0 {
				e = wt.queue[0]
				wt.queue[0] = event{}
				wt.queue = wt.queue[1:]
				wt.queued -= len(e.data)
				wt.writing, wt.writingAt = len(e.data), e.at
			}
			h.mu.Unlock()
			if !resync && e.data == nil {
				break
			}
			var err error
			if resync {
				_, err = fmt.Fprint(w, "event: resync\ndata: {}\n\n")
			}
			if err == nil && e.data != nil {
				id++
				_, err = fmt.Fprintf(w, "id: %s\nevent: readings\ndata: %s\n\n", strconv.Itoa(id), e.data)
			}
			if err == nil {
				err = rc.Flush()
			}
			h.mu.Lock()
			h.pending -= wt.writing
			wt.writing = 0
			h.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}
