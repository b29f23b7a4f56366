package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// MaxHeaderBytes bounds a request's line and headers together, which
// net/http reads into memory before any handler runs (its default is
// 1 MiB: ten parallel requests of a megabyte-long URL took 1.8 GB to
// parse). Beyond it net/http answers 431.
const MaxHeaderBytes = 64 << 10

// MaxURLBytes bounds a request's URL (path and query). Every API call
// and the dashboard name a bounded set of things in their URLs, a few
// kilobytes at most; a longer URL is answered 414 with a message saying
// the bound, before any parameter is parsed.
const MaxURLBytes = 16 << 10

// ReadHeaderTimeout is how long a client may take to send its request
// line and headers.
const ReadHeaderTimeout = 10 * time.Second

// HTTPServer returns an http.Server for the API with its limits: request
// line and headers within MaxHeaderBytes, sent within ReadHeaderTimeout.
// The caller sets the address or serves a listener.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{Handler: s.Handler(), ReadHeaderTimeout: ReadHeaderTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// limitURL answers 414 to a request whose URL is longer than MaxURLBytes.
func limitURL(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := len(r.RequestURI); n > MaxURLBytes {
			writeJSON(w, http.StatusRequestURITooLong, map[string]string{"error": fmt.Sprintf(
				"request URL is %d bytes, at most %d allowed: name fewer sensors or hosts, or page", n, MaxURLBytes)})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// MaxConcurrentCharts bounds the chart images (chart.png, chart.svg)
// drawn at once. A 2000×2000 PNG takes about 20 MB and a core for a
// second or two; unbounded, 20 parallel 4000×4000 PNGs took 1.7 GB and
// 24 s of CPU. Two at a time keeps a 2-core machine answering everything
// else.
const MaxConcurrentCharts = 2

// ChartQueueWait is how long a chart waits for one of the
// MaxConcurrentCharts slots before it is answered 503 with Retry-After:
// long enough for a dashboard's map and a download to take turns.
const ChartQueueWait = 2 * time.Second

// MaxChartPixels bounds a chart's area, width × height (each is also
// 100–4000): the image is drawn in memory at 4 bytes a pixel and then
// encoded, about 5 bytes a pixel in all, so 4,000,000 pixels (2000×2000,
// or 4000×1000) cost about 20 MB. A larger area is answered 400.
const MaxChartPixels = 4_000_000

// chartSlots is a counting semaphore of chart renders.
type chartSlots chan struct{}

// acquire takes a slot, waiting at most wait; it reports whether it got
// one. The caller releases it with release.
func (c chartSlots) acquire(ctx context.Context, wait time.Duration) bool {
	select {
	case c <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case c <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (c chartSlots) release() { <-c }

// busy answers 503 with Retry-After for a request refused for lack of
// capacity.
func busy(w http.ResponseWriter, retryAfter time.Duration, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": msg})
}
