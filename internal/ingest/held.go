package ingest

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Held is what one of several aggregators sharing the work holds: the
// hosts whose readings it committed, with how many and when it last did.
type Held struct {
	Aggregator string     `json:"aggregator"`
	Hosts      []HeldHost `json:"hosts"`
	// Partitions are the stream partitions it reads (a NATS source).
	Partitions []int `json:"partitions,omitempty"`
}

// HeldHost is one host an aggregator committed readings of.
type HeldHost struct {
	Host     string    `json:"host"`
	Readings uint64    `json:"readings"`
	Last     time.Time `json:"last"`
}

// holdings counts, per host, the readings this aggregator committed;
// only a named aggregator (Options.Name) keeps them.
type holdings struct {
	mu    sync.Mutex
	hosts map[string]*HeldHost
}

func (h *holdings) note(rs []schema.Reading, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var cur *HeldHost
	for i := range rs {
		if cur == nil || cur.Host != rs[i].Host {
			cur = h.hosts[rs[i].Host]
			if cur == nil {
				cur = &HeldHost{Host: rs[i].Host}
				h.hosts[cur.Host] = cur
			}
			cur.Last = now
		}
		cur.Readings++
	}
}

func (h *holdings) snapshot() []HeldHost {
	h.mu.Lock()
	out := make([]HeldHost, 0, len(h.hosts))
	for _, v := range h.hosts {
		out = append(out, *v)
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b HeldHost) int { return strings.Compare(a.Host, b.Host) })
	return out
}

// recent counts the hosts committed since t.
func (h *holdings) recent(t time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.hosts {
		if !v.Last.Before(t) {
			n++
		}
	}
	return n
}

// Held reports what this aggregator holds (nothing unless it is named).
func (in *Ingester) Held() Held {
	return Held{Aggregator: in.opts.Name, Hosts: in.held.snapshot()}
}

// HostsHeld counts the hosts this aggregator committed readings of within
// the last d.
func (in *Ingester) HostsHeld(d time.Duration) int { return in.held.recent(in.opts.Now().Add(-d)) }
