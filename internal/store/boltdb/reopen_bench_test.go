package boltdb

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
)

// BenchmarkReopenFullHead is the restart after a kill with the heads full:
// 10,000 devices × 10 sensors, each head holding APD_HEAD_TICKS ticks of
// 10 s (default 60: ten minutes, the longest a head waits before it is
// sealed), all in the write-ahead log. It reports how long Open takes to
// replay it.
//
//	go test -run '^$' -bench ReopenFullHead -benchtime 3x ./internal/store/boltdb/
func BenchmarkReopenFullHead(b *testing.B) {
	hosts, ticks := 10_000, 60
	if n, err := strconv.Atoi(os.Getenv("APD_HEAD_TICKS")); err == nil && n > 0 {
		ticks = n
	}
	path := filepath.Join(b.TempDir(), "apd.db")
	opts := Options{NoSync: true, HeadAge: 24 * time.Hour}
	s, err := Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	for tick := range ticks {
		if _, err := s.Commit(&store.Batch{Readings: fleetTick(hosts, 10, tick)}); err != nil {
			b.Fatal(err)
		}
	}
	series := len(s.head.series)
	s.Close() // no seal: what a killed process leaves
	b.ResetTimer()
	for range b.N {
		s, err := Open(path, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if len(s.head.series) != series {
			b.Fatalf("%d heads replayed, want %d", len(s.head.series), series)
		}
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(series*ticks), "readings-in-log")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/open")
}
