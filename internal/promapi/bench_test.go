package promapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/schema"
)

// BenchmarkPromQL measures what a Grafana panel costs through the
// Prometheus engine: 100 hosts × 10,000 readings (28 hours at 10 s) of
// one sensor, sealed as an import leaves them, queried over the whole
// span. It reports readings read per second and the heap the query
// holds at its peak (sampled), beside the bytes it allocates.
func BenchmarkPromQL(b *testing.B) {
	const hosts, perHost = 100, 10000
	st, err := engine.Open(filepath.Join(b.TempDir(), "apd.db"), engine.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := t0
	for h := 0; h < hosts; h++ {
		var batch store.Batch
		for i := 0; i < perHost; i++ {
			batch.Readings = append(batch.Readings, schema.Reading{Host: fmt.Sprintf("host%03d", h), Sensor: "temperature",
				Time: start.Add(time.Duration(i) * 10 * time.Second), Value: schema.Quantity{Magnitude: 15 + float64((i+h)%97)/8, Unit: "degC"}.Raw()})
		}
		if _, err := st.Commit(&batch); err != nil {
			b.Fatal(err)
		}
	}
	if s, ok := st.(store.Sealer); ok {
		if err := s.SealAll(); err != nil {
			b.Fatal(err)
		}
	}
	end := start.Add(perHost * 10 * time.Second)
	api := New(st, Options{MaxSamples: 2 * hosts * perHost})
	defer api.Close()
	srv := httptest.NewServer(api)
	defer srv.Close()
	for _, bc := range []struct {
		name, query, step string
		readings          int
	}{
		// Every reading, through avg_over_time over 5-minute windows.
		{"avg_over_time-5m-step1m", "avg by (host) (avg_over_time(temperature[5m]))", "60", hosts * perHost},
		// A plain selector at a 15-minute step: the stored sums.
		{"selector-step15m-sums", "temperature", "900", hosts * perHost},
	} {
		b.Run(bc.name, func(b *testing.B) {
			form := url.Values{"query": {bc.query}, "start": {strconv.FormatInt(start.Unix(), 10)},
				"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {bc.step}}
			var peak uint64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				done := make(chan struct{})
				go func() { peak = max(peak, sampleHeap(done)) }()
				resp, err := http.PostForm(srv.URL+"/prometheus/api/v1/query_range", form)
				if err != nil {
					b.Fatal(err)
				}
				var pr promResponse
				err = json.NewDecoder(resp.Body).Decode(&pr)
				resp.Body.Close()
				close(done)
				if err != nil || pr.Status != "success" {
					b.Fatalf("%v %+v", err, pr)
				}
			}
			b.ReportMetric(float64(bc.readings)*float64(b.N)/b.Elapsed().Seconds(), "readings/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

// sampleHeap reports the largest live heap seen every 5 ms until done.
func sampleHeap(done <-chan struct{}) uint64 {
	var peak uint64
	var ms runtime.MemStats
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
		select {
		case <-done:
			return peak
		case <-tick.C:
		}
	}
}
