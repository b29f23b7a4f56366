// Package dashboard is the web dashboard that apd serve and apd aggregate
// serve at /: hosts with their state, a chart per sensor with a line per
// host, quick ranges and a from–to picker, drag to zoom, a cursor synced
// across charts, live readings pushed by Server-Sent Events, a map, CSV
// and PNG downloads, and a dark mode.
//
// Every asset is embedded (go:embed), so the dashboard works with no
// network and a plain go install carries it; a Content-Security-Policy
// forbids the page anything from elsewhere. The charts draw with uPlot,
// vendored under assets/vendor with its licence and pinned in
// package.json (make vendor-check compares the files with the pinned
// release). The data comes from the HTTP API (/api/v1/series, downsampled
// on the server to about a point per pixel, and /api/v1/dashboard/hosts);
// the map is the server's own drawing (/api/v1/chart.svg?map=only), the
// same as apd chart --map.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed assets
var assets embed.FS

// CSP is the dashboard's Content-Security-Policy: scripts, styles,
// images and connections from the server only; no frames, plugins or
// forms elsewhere.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; " +
	"font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the page at / and its assets under /ui/.
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", CSP)
		switch {
		case r.URL.Path == "/":
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, sub, "index.html")
		case strings.HasPrefix(r.URL.Path, "/ui/"):
			if strings.HasSuffix(r.URL.Path, "/") {
				http.NotFound(w, r) // no directory listings
				return
			}
			// The assets change only with the binary; revalidating each
			// load costs a round trip of a few bytes.
			w.Header().Set("Cache-Control", "no-cache")
			r2 := *r
			u := *r.URL
			u.Path = strings.TrimPrefix(r.URL.Path, "/ui")
			r2.URL = &u
			files.ServeHTTP(w, &r2)
		default:
			http.NotFound(w, r)
		}
	})
}
