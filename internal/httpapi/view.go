package httpapi

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
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

// MaxChartSensors bounds the sensors one chart, series or live request
// names: each is a scan and a panel (or a filter entry), and a URL naming
// thousands of them is a URL of tens of kilobytes. The dashboard asks for
// a page of DashboardPageSize at a time.
const MaxChartSensors = 64

// chartRequest reads a chart's parameters: sensor (repeatable, at most
// MaxChartSensors), host (repeatable), since (default 24h), until, clean,
// unit, tz, width and height (at most MaxChartPixels together), map (1:
// below the charts, only: the map alone), interpolate, theme (light,
// dark) and points.
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
	if len(req.Sensors) > MaxChartSensors {
		return bad("%d sensors named, at most %d at once (the dashboard pages them: /api/v1/dashboard/sensors)", len(req.Sensors), MaxChartSensors)
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
	// chart.Build's defaults stand for what is not given.
	if w, h := cmp.Or(req.Width, 1200), cmp.Or(req.Height, 700); w*h > MaxChartPixels {
		return bad("width × height is %d × %d = %d pixels, at most %d", w, h, w*h, MaxChartPixels)
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
		// Drawing takes memory in proportion to the area and a core:
		// only so many at once, the rest wait briefly, then are told to
		// come back.
		if !s.charts.acquire(r.Context(), cmp.Or(s.ChartWait, ChartQueueWait)) {
			busy(w, 5*time.Second, fmt.Sprintf("too many charts being drawn (at most %d at once): try again shortly", cap(s.charts)))
			return
		}
		defer s.charts.release()
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
// knows, with the label and colour every chart gives it, and how many
// sensors it has instead of a list of them (a host may have a thousand:
// the dashboard pages sensors through /api/v1/dashboard/sensors).
type DashboardHost struct {
	store.Host
	// Sensors hides the embedded list (nil: left out of the JSON).
	Sensors     *struct{} `json:"sensors,omitempty"`
	SensorCount int       `json:"sensor_count"`
	Label       string    `json:"label"`
	ChartColour string    `json:"chart_colour"`
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
		n := len(h.Sensors)
		h.Sensors = nil
		out = append(out, DashboardHost{Host: h, SensorCount: n, Label: st.Label, ChartColour: chart.Hex(st.Colour)})
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// DashboardPageSize is how many sensors the dashboard charts at once
// (/api/v1/dashboard/sensors' default limit): each is a chart in the
// page, a scan on the server and a filter entry of the live stream.
const DashboardPageSize = 24

// DashboardSensor is a sensor as the dashboard pages them: its name, how
// many hosts have it, and the title its latest reading carries (empty
// when that reading has none): a sensor without numbers in the range
// has no chart to take its title from, yet is listed by it.
type DashboardSensor struct {
	Sensor string `json:"sensor"`
	Hosts  int    `json:"hosts"`
	Title  string `json:"title,omitempty"`
}

// DashboardSensors is a page of the sensors to chart.
type DashboardSensors struct {
	Total   int               `json:"total"`
	Offset  int               `json:"offset"`
	Limit   int               `json:"limit"`
	Sensors []DashboardSensor `json:"sensors"`
}

// dashboardSensors answers /api/v1/dashboard/sensors: every sensor of
// every host, those most hosts have first (then by name), a page of them
// from offset (default 0) of at most limit (default DashboardPageSize,
// at most MaxChartSensors). The server picks the order, so a host with a
// thousand sensors of its own puts them after the ones the fleet
// shares: the first page charts what most hosts have.
func (s *Server) dashboardSensors(w http.ResponseWriter, r *http.Request) {
	page := DashboardSensors{Limit: DashboardPageSize, Sensors: []DashboardSensor{}}
	for _, p := range []struct {
		name     string
		dst      *int
		min, max int
	}{{"offset", &page.Offset, 0, math.MaxInt32}, {"limit", &page.Limit, 1, MaxChartSensors}} {
		if v := r.URL.Query().Get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < p.min || n > p.max {
				s.writeError(w, fmt.Errorf("%w: %s %q: want a whole number from %d to %d", errBadRequest, p.name, v, p.min, p.max))
				return
			}
			*p.dst = n
		}
	}
	hosts, err := s.Store.Hosts()
	if err != nil {
		s.writeError(w, err)
		return
	}
	count := map[string]int{}
	newest := map[string]string{} // sensor → the host that sent it last
	last := map[string]time.Time{}
	for _, h := range hosts {
		for name, st := range h.Sensors {
			count[name]++
			if st != nil && (newest[name] == "" || st.Last.After(last[name])) {
				newest[name], last[name] = h.Name, st.Last
			}
		}
	}
	all := make([]DashboardSensor, 0, len(count))
	for name, n := range count {
		all = append(all, DashboardSensor{Sensor: name, Hosts: n})
	}
	slices.SortFunc(all, func(a, b DashboardSensor) int {
		return cmp.Or(cmp.Compare(b.Hosts, a.Hosts), strings.Compare(a.Sensor, b.Sensor))
	})
	page.Total = len(all)
	if page.Offset < len(all) {
		page.Sensors = all[page.Offset:min(len(all), page.Offset+page.Limit)]
	}
	// One reading per sensor of the page, read where the host's
	// statistics say it is.
	for i := range page.Sensors {
		d := &page.Sensors[i]
		at, host := last[d.Sensor], newest[d.Sensor]
		if host == "" || at.IsZero() {
			continue
		}
		q := store.Query{Sensor: d.Sensor, Hosts: []string{host}, Since: at, Until: at.Add(time.Millisecond), Limit: 1}
		if err := s.Store.Scan(q, func(r *schema.Reading) error {
			d.Title = r.Title
			return store.ErrStop
		}); err != nil {
			s.writeError(w, err)
			return
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, page)
}
