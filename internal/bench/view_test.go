package bench

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/chart"
	"github.com/apd-telemetry/apd/internal/httpapi"
	"github.com/apd-telemetry/apd/internal/metrics"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

var viewSensors = []string{"temperature", "humidity", "pressure", "cpu_load", "power"}

type localSource struct{ store.Store }

func (l localSource) Query(q store.Query, spec query.Spec, fn func(*schema.Reading) error) error {
	return query.Execute(l.Store, q, spec, fn)
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkChartWeek draws what apd chart --sensor temperature --since 7d
// draws for 10 hosts publishing every 10 s (604,800 readings): read,
// averaged to about a point per pixel, and encoded as a 1200×600 PNG.
func BenchmarkChartWeek(b *testing.B) {
	const hosts, perHost = 10, 7 * 24 * 360
	end := time.Now().Truncate(time.Hour)
	path := filepath.Join(b.TempDir(), "apd.db")
	syntheticSeries(b, path, hosts, []string{"temperature"}, perHost, end.Add(-7*24*time.Hour), 10*time.Second)
	st, err := engine.Open(path, engine.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	req := chart.Request{Sensors: []string{"temperature"}, Since: end.Add(-7 * 24 * time.Hour), Until: end, Width: 1200, Height: 600, Location: time.UTC}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fig, err := chart.Build(localSource{st}, req, end)
		if err != nil {
			b.Fatal(err)
		}
		if len(fig.Panels[0].Series) != hosts {
			b.Fatalf("%d lines", len(fig.Panels[0].Series))
		}
		if err := chart.WritePNG(io.Discard, fig); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/chart")
}

// BenchmarkSeriesThirtyDays is the dashboard's request for a 30-day view
// of 20 hosts × 5 sensors: /api/v1/series with every sensor at 600
// points, answered by the HTTP API from a database of APD_VIEW_READINGS
// readings (default 2,000,000; the target's 50,000,000 takes a few
// minutes to build), one every 10 s per series, the newest 30 days of
// which the view covers.
//
//	APD_VIEW_READINGS=50000000 go test -run '^$' -bench SeriesThirtyDays -benchtime 3x -timeout 60m ./internal/bench/
func BenchmarkSeriesThirtyDays(b *testing.B) {
	const hosts = 20
	total := envInt("APD_VIEW_READINGS", 2_000_000)
	perHost := total / hosts / len(viewSensors)
	end := time.Now().Truncate(time.Hour)
	start := end.Add(-time.Duration(perHost) * 10 * time.Second)
	path := filepath.Join(b.TempDir(), "apd.db")
	syntheticSeries(b, path, hosts, viewSensors, perHost, start, 10*time.Second)
	st, err := engine.Open(path, engine.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	srv := httptest.NewServer((&httpapi.Server{Store: st, Metrics: metrics.NewRegistry()}).Handler())
	defer srv.Close()
	url := srv.URL + "/api/v1/series?points=600&since=" + end.Add(-30*24*time.Hour).UTC().Format(time.RFC3339) + "&until=" + end.UTC().Format(time.RFC3339)
	for _, s := range viewSensors {
		url += "&sensor=" + s
	}
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n < 1000 {
			b.Fatalf("%s, %d bytes", resp.Status, n)
		}
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(hosts*len(viewSensors)*perHost), "readings-in-db")
	b.ReportMetric(float64(hosts*len(viewSensors)*min(perHost, 30*24*360)), "readings-in-view")
}

// BenchmarkDashboardRender loads the dashboard of a real apd serve in
// headless Chromium on a day of 20 hosts × 5 sensors every 10 s (864,000
// readings) and reports the median time from navigation to every chart
// drawn (the page's own Performance API mark). It needs chromium and
// chromedriver.
func BenchmarkDashboardRender(b *testing.B) {
	const hosts, perHost = 20, 24 * 360
	bin := buildApd(b)
	data := b.TempDir()
	end := time.Now()
	syntheticSeries(b, filepath.Join(data, "apd.db"), hosts, viewSensors, perHost, end.Add(-24*time.Hour), 10*time.Second)
	_, _, httpAddr := startServeOn(b, bin, data)
	browser := testutil.StartBrowser(b, 1400, 1000)
	var renders, fetches []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		browser.Open(fmt.Sprintf("http://%s/?run=%d", httpAddr, i))
		browser.WaitTrue("every chart drawn", 30*time.Second, `return window.apd && window.apd.rendered != null && window.apd.plots.size === 5`)
		var ms float64
		if err := browser.Eval(&ms, `return window.apd.rendered`); err != nil {
			b.Fatal(err)
		}
		var lines int
		_ = browser.Eval(&lines, `return [...window.apd.plots.values()].reduce((n, u) => n + u.series.length - 1, 0)`)
		if lines != hosts*len(viewSensors) {
			b.Fatalf("%d lines drawn, want %d", lines, hosts*len(viewSensors))
		}
		var fetch float64
		_ = browser.Eval(&fetch, `const e = performance.getEntriesByType('resource').find(e => e.name.includes('/api/v1/series')); return e ? e.duration : 0`)
		renders, fetches = append(renders, ms), append(fetches, fetch)
	}
	b.StopTimer()
	slices.Sort(renders)
	slices.Sort(fetches)
	b.ReportMetric(renders[len(renders)/2], "median-render-ms")
	b.ReportMetric(fetches[len(fetches)/2], "median-series-fetch-ms")
}
