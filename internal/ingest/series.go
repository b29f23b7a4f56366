package ingest

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/store"
)

// ReasonSeriesLimit is the rejection reason of a reading that would start
// a series beyond Options.MaxSeriesPerHost or Options.MaxSeries.
const ReasonSeriesLimit = "series_limit"

// Defaults of Options.MaxSeriesPerHost and Options.MaxSeries.
//
// A series costs the embedded engine about 4.3 KB of apd.db from its
// first reading on (its buckets and head; measured: 10,000 and 50,000
// series of one reading each grew the file by 4,361 and 4,322 bytes a
// series), and the bound 61 bytes of memory to know it (112 with names
// of 64 characters, the most). So a device (one host) can make the
// store grow by at most 1,024 × 4.3 KB ≈ 4.4 MB with names of its
// choosing, and all devices together by 131,072 × 4.3 KB ≈ 560 MB, with
// 8–15 MB of memory here. 131,072 is the fleet of the spec's scale
// target (10,000 devices × 10 sensors) with 30 % to spare; larger
// fleets raise it.
const (
	DefaultMaxSeriesPerHost = 1024
	DefaultMaxSeries        = 1 << 17
)

// seriesBound decides whether a reading may start a new series (host,
// sensor). It knows the series stored when the ingester was made and
// those it admitted since, so its memory is bounded by the global bound.
// Known series are always admitted: the bound stops growth, it never
// drops what is stored.
//
// Readings of a series deleted since the start still count until the
// next start, when the store is read again: deleting a host's data frees
// its budget at the next restart.
type seriesBound struct {
	perHost, total int

	mu    sync.RWMutex
	hosts map[string]*hostSeries
	n     int // series known, over all hosts
	// Gauge, when set, follows n (apd_series).
	gauge *metrics.Gauge
	// warnedAll is when the last warning about the global bound was
	// logged.
	warnedAll time.Time
}

type hostSeries struct {
	sensors map[string]struct{}
	warned  bool // the host's bound was reached and said so
}

// newSeriesBound returns a bound of perHost series per host and total in
// all (0 or less: the defaults) that knows the series of hosts.
func newSeriesBound(perHost, total int, hosts []store.Host, gauge *metrics.Gauge) *seriesBound {
	if perHost <= 0 {
		perHost = DefaultMaxSeriesPerHost
	}
	if total <= 0 {
		total = DefaultMaxSeries
	}
	b := &seriesBound{perHost: perHost, total: total, hosts: map[string]*hostSeries{}, gauge: gauge}
	for _, h := range hosts {
		if len(h.Sensors) == 0 {
			continue
		}
		hs := &hostSeries{sensors: make(map[string]struct{}, len(h.Sensors))}
		for sensor := range h.Sensors {
			hs.sensors[sensor] = struct{}{}
		}
		b.hosts[h.Name] = hs
		b.n += len(hs.sensors)
	}
	b.setGauge()
	return b
}

func (b *seriesBound) setGauge() {
	if b.gauge != nil {
		b.gauge.Set(int64(b.n))
	}
}

// seriesRefusal says why a new series was refused, and whether this is
// the first refusal worth logging.
type seriesRefusal struct {
	err error
	// log is set the first time a host reaches its bound, and at most
	// once a minute for the global bound.
	log bool
}

// admit reports whether a reading of (host, sensor) may be stored: its
// series is known, or new and within both bounds (and then known from
// now on). now is the time of the reading's arrival.
func (b *seriesBound) admit(host, sensor string, now time.Time) *seriesRefusal {
	b.mu.RLock()
	known := b.hosts[host].has(sensor)
	b.mu.RUnlock()
	if known {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	hs := b.hosts[host]
	if hs.has(sensor) {
		return nil // admitted meanwhile by another client's reading
	}
	if have := hs.count(); have >= b.perHost {
		r := &seriesRefusal{err: fmt.Errorf("host %s has %d series, at most %d (max_series_per_host): new sensor %s refused",
			host, have, b.perHost, sensor)}
		if !hs.warned {
			hs.warned, r.log = true, true
		}
		return r
	}
	if b.n >= b.total {
		r := &seriesRefusal{err: fmt.Errorf("%d series in all, at most %d (max_series): new series %s of host %s refused",
			b.n, b.total, sensor, host)}
		if now.Sub(b.warnedAll) >= time.Minute {
			b.warnedAll, r.log = now, true
		}
		return r
	}
	if hs == nil {
		// Cloned: the names are cut from the message's topic, which
		// would otherwise be kept alive whole.
		hs = &hostSeries{sensors: map[string]struct{}{}}
		b.hosts[strings.Clone(host)] = hs
	}
	hs.sensors[strings.Clone(sensor)] = struct{}{}
	b.n++
	b.setGauge()
	return nil
}

// has reports whether the host (nil: one without series) has sensor.
func (hs *hostSeries) has(sensor string) bool {
	if hs == nil {
		return false
	}
	_, ok := hs.sensors[sensor]
	return ok
}

func (hs *hostSeries) count() int {
	if hs == nil {
		return 0
	}
	return len(hs.sensors)
}

// knownSeries reads the series st holds for the bound. A store it cannot
// read is logged and taken as empty: stored series are then counted
// again as they arrive, up to the bounds, rather than refused.
func knownSeries(st store.Store, log *slog.Logger) []store.Host {
	hosts, err := st.Hosts()
	if err != nil {
		log.Error("read the stored series for the series bounds; counting from none", "err", err)
		return nil
	}
	return hosts
}

// admitSeries applies the series bounds to a reading of (host, sensor)
// and returns why it is refused, or nil.
func (in *Ingester) admitSeries(host, sensor string, now time.Time) error {
	r := in.series.admit(host, sensor, now)
	if r == nil {
		return nil
	}
	if r.log {
		in.log.Warn("new series refused (to dead letters): series bound reached", "host", host, "sensor", sensor, "why", r.err)
	}
	return r.err
}

// Series returns how many series the ingester knows: those stored when
// it was made and those it admitted since.
func (in *Ingester) Series() int {
	in.series.mu.RLock()
	defer in.series.mu.RUnlock()
	return in.series.n
}
