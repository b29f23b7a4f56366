package ingest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/store"
)

func TestSeriesBound(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	stored := func(host string, sensors ...string) store.Host {
		h := store.Host{Name: host, Sensors: map[string]*store.SensorStats{}}
		for _, s := range sensors {
			h.Sensors[s] = &store.SensorStats{Count: 1}
		}
		return h
	}
	type step struct {
		host, sensor string
		want         string // "" admitted, else a word of the refusal
		log          bool   // the refusal is one to log
	}
	for _, tc := range []struct {
		name           string
		perHost, total int
		stored         []store.Host
		steps          []step
		wantSeries     int
	}{
		{
			name: "within both bounds", perHost: 2, total: 10,
			steps:      []step{{"a", "t", "", false}, {"a", "h", "", false}, {"b", "t", "", false}},
			wantSeries: 3,
		},
		{
			name: "a host's third series refused, its known ones and other hosts not", perHost: 2, total: 10,
			steps: []step{{"a", "t", "", false}, {"a", "h", "", false},
				{"a", "x", "max_series_per_host", true}, {"a", "y", "max_series_per_host", false},
				{"a", "t", "", false}, {"b", "x", "", false}},
			wantSeries: 3,
		},
		{
			name: "the global bound refuses new series of every host, known ones pass", perHost: 5, total: 3,
			steps: []step{{"a", "t", "", false}, {"b", "t", "", false}, {"c", "t", "", false},
				{"d", "t", "max_series)", true}, {"a", "h", "max_series)", false},
				{"a", "t", "", false}, {"c", "t", "", false}},
			wantSeries: 3,
		},
		{
			name: "stored series are known and count", perHost: 2, total: 4,
			stored: []store.Host{stored("a", "t", "h"), stored("b", "t"), stored("gone")},
			steps: []step{{"a", "t", "", false}, {"a", "h", "", false}, {"a", "x", "max_series_per_host", true},
				{"b", "h", "", false}, {"c", "t", "max_series)", true}},
			wantSeries: 4,
		},
		{
			name: "stored beyond a lowered bound: kept, nothing new", perHost: 1, total: 100,
			stored: []store.Host{stored("a", "t", "h", "p")},
			steps: []step{{"a", "p", "", false}, {"a", "t", "", false}, {"a", "x", "has 3 series, at most 1", true},
				{"b", "t", "", false}, {"b", "h", "has 1 series, at most 1", true}},
			wantSeries: 4,
		},
		{
			name: "zero bounds mean the defaults", perHost: 0, total: 0,
			stored:     []store.Host{stored("a", "t")},
			steps:      []step{{"a", "h", "", false}},
			wantSeries: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gauge metrics.Gauge
			b := newSeriesBound(tc.perHost, tc.total, tc.stored, &gauge)
			for i, s := range tc.steps {
				r := b.admit(s.host, s.sensor, t0)
				switch {
				case s.want == "" && r != nil:
					t.Errorf("step %d %s/%s: refused (%v), want admitted", i, s.host, s.sensor, r.err)
				case s.want != "" && r == nil:
					t.Errorf("step %d %s/%s: admitted, want refused (%s)", i, s.host, s.sensor, s.want)
				case r != nil && (!strings.Contains(r.err.Error(), s.want) || r.log != s.log):
					t.Errorf("step %d %s/%s: refused %q, log %v; want %q, log %v", i, s.host, s.sensor, r.err, r.log, s.want, s.log)
				}
			}
			if b.n != tc.wantSeries || gauge.Value() != int64(tc.wantSeries) {
				t.Errorf("series %d (gauge %d), want %d", b.n, gauge.Value(), tc.wantSeries)
			}
		})
	}
}

// TestSeriesBoundConcurrent: clients racing to start series never take
// the bound past its limit, and each series is counted once.
func TestSeriesBoundConcurrent(t *testing.T) {
	t.Parallel()
	b := newSeriesBound(50, 120, nil, nil)
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			for i := range 200 {
				host := []string{"a", "b", "c"}[(c+i)%3]
				b.admit(host, "s"+strings.Repeat("x", i%70), time.Time{})
			}
		})
	}
	wg.Wait()
	total := 0
	for name, hs := range b.hosts {
		if len(hs.sensors) > 50 {
			t.Errorf("host %s has %d series, bound 50", name, len(hs.sensors))
		}
		total += len(hs.sensors)
	}
	if total != b.n || b.n > 120 {
		t.Errorf("%d series counted, %d held; bound 120", b.n, total)
	}
}
