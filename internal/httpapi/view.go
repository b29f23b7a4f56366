package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/apd-telemetry/apd/internal/chart"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// storeSource runs queries on the server's store, for charts.
type storeSource struct{ store.Reader }

func (s storeSource) Query(q store.Query, spec query.Spec, fn func(*schema.Reading) error) error {
	return query.Execute(s.Reader, q, spec, fn)
}

// chartRequest reads a chart's parameters: sensor (repeatable), host
// (repeatable), since (default 24h), until, clean, unit, tz, width,
// height, map (1: below the charts, only: the map alone), interpolate,
// theme (light, dark) and points.
func chartRequest(v url.Values, now time.Time) (chart.Request, error) {
	if v.Get("since") == "" {
		v = cloneValues(v)
		v.Set("since", "24h")
	}
	q, err := ParseQuery(v, now)
	if err != nil {
		return chart.Request{}, err
	}
	req := chart.Request{Sensors: v["sensor"], Hosts: q.Hosts, Since: q.Since, Until: q.Until,
		Clean: v.Get("clean"), Unit: v.Get("unit"), Location: time.Local, Interpolate: v.Get("interpolate") == "1"}
	bad := func(format string, args ...any) (chart.Request, error) {
		return chart.Request{}, fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
	}
	if len(req.Sensors) == 0 {
		return bad("sensor is required (repeatable)")
	}
	for _, s := range req.Sensors {
		if err := schema.ValidateName(s); err != nil {
			return bad("sensor: %v", err)
		}
	}
	if tz := v.Get("tz"); tz != "" {
		if req.Location, err = time.LoadLocation(tz); err != nil {
			return bad("tz %q: want a zone name like Europe/Amsterdam or UTC", tz)
		}
	}
	for _, p := range []struct {
		name     string
		dst      *int
		min, max int
	}{{"width", &req.Width, 100, 4000}, {"height", &req.Height, 100, 4000}, {"points", &req.Points, 10, 10000}} {
		if s := v.Get(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < p.min || n > p.max {
				return bad("%s %q: want a whole number from %d to %d", p.name, s, p.min, p.max)
			}
			*p.dst = n
		}
	}
	switch v.Get("map") {
	case "", "0":
	case "1":
		req.Map = true
	case "only":
		req.MapOnly = true
	default:
		return bad("map %q: want 1 or only", v.Get("map"))
	}
	switch v.Get("theme") {
	case "", "light":
	case "dark":
		req.Theme = chart.Dark
	default:
		return bad("theme %q: want light or dark", v.Get("theme"))
	}
	if _, err := (query.Spec{Clean: req.Clean, Unit: req.Unit}).Compile(req.Since); err != nil {
		return bad("%v", err)
	}
	return req, nil
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// chartImage answers /api/v1/chart.png and .svg.
func (s *Server) chartImage(format string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := chartRequest(r.URL.Query(), s.now())
		if err != nil {
			s.writeError(w, err)
			return
		}
		req.Overlay = s.MapOverlay
		fig, err := chart.Build(storeSource{s.Store}, req, s.now())
		if err != nil {
			s.writeError(w, err)
			return
		}
		if format == "svg" {
			w.Header().Set("Content-Type", "image/svg+xml")
			// An SVG opened on its own is a document: it may run nothing.
			w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		} else {
			w.Header().Set("Content-Type", "image/png")
		}
		w.Header().Set("Cache-Control", "no-store")
		if err := chart.Write(w, fig, format); err != nil {
			s.log().Error("chart failed mid-stream", "err", err)
		}
	}
}

// SeriesJSON is one sensor's chart as the dashboard draws it: the
// points of every host on one time axis (unix seconds), a column per
// host, null where a host has no point at that time.
type SeriesJSON struct {
	Sensor string         `json:"sensor"`
	Title  string         `json:"title"`
	Unit   string         `json:"unit"`
	Bars   bool           `json:"bars,omitempty"`
	Hosts  []SeriesHost   `json:"hosts"`
	T      []float64      `json:"t"`
	V      [][]*float64   `json:"v"`
	From   float64        `json:"from"`
	To     float64        `json:"to"`
	Every  string         `json:"every,omitempty"`
	Stats  map[string]int `json:"stats"`
}

// SeriesHost is one column of a SeriesJSON.
type SeriesHost struct {
	Host   string `json:"host"`
	Label  string `json:"label"`
	Colour string `json:"colour"`
}

// series answers /api/v1/series: the chart of each sensor asked for, in
// the parameters of /api/v1/chart.png, downsampled to about points per
// host.
func (s *Server) series(w http.ResponseWriter, r *http.Request) {
	req, err := chartRequest(r.URL.Query(), s.now())
	if err != nil {
		s.writeError(w, err)
		return
	}
	req.Map, req.MapOnly = false, false
	fig, err := chart.Build(storeSource{s.Store}, req, s.now())
	if err != nil {
		s.writeError(w, err)
		return
	}
	out := make([]SeriesJSON, 0, len(fig.Panels))
	for i, p := range fig.Panels {
		out = append(out, alignSeries(req.Sensors[i], p, fig))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

func alignSeries(sensor string, p chart.Panel, fig *chart.Figure) SeriesJSON {
	sj := SeriesJSON{Sensor: sensor, Title: p.Title, Unit: chart.DisplayUnit(p.Unit), Bars: p.Bars,
		From: float64(fig.From.UnixMilli()) / 1000, To: float64(fig.To.UnixMilli()) / 1000, Hosts: []SeriesHost{}, T: []float64{}, V: [][]*float64{},
		Stats: map[string]int{}}
	index := map[int64]int{}
	var times []int64
	points := 0
	for _, s := range p.Series {
		sj.Hosts = append(sj.Hosts, SeriesHost{Host: s.Host, Label: s.Label, Colour: chart.Hex(s.Colour)})
		for _, pt := range s.Points {
			ms := pt.T.UnixMilli()
			if _, ok := index[ms]; !ok {
				index[ms] = 0
				times = append(times, ms)
			}
			points++
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	for i, ms := range times {
		index[ms] = i
		sj.T = append(sj.T, float64(ms)/1000)
	}
	for _, s := range p.Series {
		col := make([]*float64, len(times))
		for _, pt := range s.Points {
			v := pt.V
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			col[index[pt.T.UnixMilli()]] = &v
		}
		sj.V = append(sj.V, col)
	}
	sj.Stats["points"] = points
	return sj
}

// DashboardHost is a host as the dashboard lists it: what apd hosts
// knows, with the label and colour every chart gives it.
type DashboardHost struct {
	store.Host
	Label       string `json:"label"`
	ChartColour string `json:"chart_colour"`
}

// dashboardHosts answers /api/v1/dashboard/hosts.
func (s *Server) dashboardHosts(w http.ResponseWriter, _ *http.Request) {
	hosts, err := s.Store.Hosts()
	if err != nil {
		s.writeError(w, err)
		return
	}
	styles := chart.Styles(hosts)
	out := make([]DashboardHost, 0, len(hosts))
	for _, h := range hosts {
		st := styles[h.Name]
		out = append(out, DashboardHost{Host: h, Label: st.Label, ChartColour: chart.Hex(st.Colour)})
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}
