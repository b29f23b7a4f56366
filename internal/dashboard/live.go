package dashboard

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Hub pushes committed readings to the dashboards watching, as
// Server-Sent Events at /api/v1/live. Publish runs on the commit path:
// it never blocks there. A watcher that falls behind loses events and is
// told to fetch again ("resync"), rather than slowing ingestion.
type Hub struct {
	mu      sync.Mutex
	subs    map[*watcher]struct{}
	max     int
	dropped atomic.Uint64
	// Keepalive is how often an idle stream gets a comment, so proxies
	// and write deadlines do not cut it.
	Keepalive time.Duration
}

type watcher struct {
	sensors map[string]bool // empty: all
	events  chan []byte
	behind  atomic.Bool
}

// MaxPerEvent bounds the readings of one event: a fleet's commit holds
// thousands, a dashboard draws a few per host and sensor.
const MaxPerEvent = 5000

// NewHub returns a hub for at most max watchers at once.
func NewHub(max int) *Hub {
	return &Hub{subs: map[*watcher]struct{}{}, max: max, Keepalive: 15 * time.Second}
}

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

// Publish offers a commit's readings to every watcher.
func (h *Hub) Publish(rs []schema.Reading) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return
	}
	for w := range h.subs {
		var batch []LiveReading
		for i := range rs {
			r := &rs[i]
			if len(w.sensors) > 0 && !w.sensors[r.Sensor] {
				continue
			}
			if len(batch) == MaxPerEvent {
				w.behind.Store(true)
				break
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
			continue
		}
		b, err := json.Marshal(batch)
		if err != nil {
			continue
		}
		select {
		case w.events <- b:
		default:
			w.behind.Store(true)
			h.dropped.Add(1)
		}
	}
}

// ServeHTTP streams events: "readings" with a JSON array of LiveReading,
// and "resync" when the watcher missed some. sensor (repeatable) narrows
// what is sent.
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
	wt := &watcher{sensors: sensors, events: make(chan []byte, 64)}
	h.mu.Lock()
	if len(h.subs) >= h.max {
		h.mu.Unlock()
		w.Header().Set("Retry-After", "30")
		http.Error(w, fmt.Sprintf("too many live dashboards (at most %d)", h.max), http.StatusServiceUnavailable)
		return
	}
	h.subs[wt] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.subs, wt)
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
		var err error
		select {
		case <-r.Context().Done():
			return
		case b := <-wt.events:
			id++
			if wt.behind.Swap(false) {
				_, err = fmt.Fprint(w, "event: resync\ndata: {}\n\n")
			}
			if err == nil {
				_, err = fmt.Fprintf(w, "id: %s\nevent: readings\ndata: %s\n\n", strconv.Itoa(id), b)
			}
		case <-tick.C:
			_, err = fmt.Fprint(w, ": keepalive\n\n")
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}
