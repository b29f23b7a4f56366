package chart

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/chart/geo"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/internal/query/clean"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// Source is where a chart's readings come from: a store in this process
// or a running aggregator, which answer the same calls.
type Source interface {
	Hosts() ([]store.Host, error)
	// Query runs spec's processing where the data is.
	Query(q store.Query, spec query.Spec, fn func(*schema.Reading) error) error
}

// Request is what to draw, as apd chart's flags and the chart URL's
// parameters give it.
type Request struct {
	Sensors []string
	Hosts   []string
	// Since and Until bound the range; zero Until means now.
	Since, Until time.Time
	Clean        string
	Unit         string
	Location     *time.Location
	// Map adds a map of the hosts coloured by their latest value of the
	// first sensor; MapOnly draws only the map.
	Map, MapOnly bool
	Interpolate  bool
	// Overlay is drawn over the map (parsed GeoJSON).
	Overlay []geo.Shape
	Width   int
	Height  int
	Theme   Theme
	// Points is about how many points each series is reduced to (by
	// averaging windows on the server); 0 means one per pixel of width.
	Points int
}

// Style is how a host is drawn.
type Style struct {
	Label  string
	Colour color.RGBA
}

// Styles gives each host its display name (or its own name) and colour:
// its own, or the next colour of the palette (PaletteColour, which does
// not run out) not already taken by a host that set it, in the order of
// the hosts' names, so a host keeps its colour from chart to chart while
// the set of hosts stays the same.
func Styles(hosts []store.Host) map[string]Style {
	sorted := make([]store.Host, len(hosts))
	copy(sorted, hosts)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	taken := map[color.RGBA]bool{}
	out := make(map[string]Style, len(hosts))
	for _, h := range sorted {
		st := Style{Label: h.Name}
		if h.Display != "" {
			st.Label = h.Display
		}
		if c, err := store.ParseColour(h.Colour); err == nil && h.Colour != "" {
			st.Colour = c
			taken[c] = true
		}
		out[h.Name] = st
	}
	next := 0
	for _, h := range sorted {
		st := out[h.Name]
		if st.Colour.A != 0 {
			continue
		}
		for taken[PaletteColour(next)] {
			next++
		}
		st.Colour = PaletteColour(next)
		next++
		out[h.Name] = st
	}
	return out
}

// Hex writes a colour as #rrggbb.
func Hex(c color.RGBA) string { return hex(c) }

// Build reads what req asks for from src and lays out the figure.
func Build(src Source, req Request, now time.Time) (*Figure, error) {
	if len(req.Sensors) == 0 {
		return nil, errors.New("no sensor to chart")
	}
	if req.Until.IsZero() {
		req.Until = now
	}
	if !req.Since.Before(req.Until) {
		return nil, fmt.Errorf("empty range: since %s is not before until %s", req.Since.Format(time.RFC3339), req.Until.Format(time.RFC3339))
	}
	if req.Width <= 0 {
		req.Width = 1200
	}
	if req.Height <= 0 {
		req.Height = 700
	}
	if req.Theme == (Theme{}) {
		req.Theme = Light
	}
	loc := req.Location
	if loc == nil {
		loc = time.Local
	}
	hosts, err := src.Hosts()
	if err != nil {
		return nil, err
	}
	styles := Styles(hosts)
	f := &Figure{Width: req.Width, Height: req.Height, From: req.Since, To: req.Until, Location: loc, Theme: req.Theme}
	var kind clean.Kind
	if req.Clean != "" {
		if kind, err = clean.Lookup(req.Clean); err != nil {
			return nil, err
		}
	}
	if !req.MapOnly {
		cols := int(math.Ceil(math.Sqrt(float64(len(req.Sensors)))))
		points := req.Points
		if points <= 0 {
			points = max(50, req.Width/cols-80)
		}
		// Each sensor is its own scan: on a machine with more than one
		// core they read at once.
		panels := make([]*Panel, len(req.Sensors))
		errs := make([]error, len(req.Sensors))
		slots := make(chan struct{}, runtime.GOMAXPROCS(0))
		var wg sync.WaitGroup
		for i, sensor := range req.Sensors {
			wg.Add(1)
			slots <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				panels[i], errs[i] = buildPanel(src, req, kind, sensor, styles, points)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		for _, p := range panels {
			f.Panels = append(f.Panels, *p)
		}
	}
	if req.Map || req.MapOnly {
		m, err := buildMap(src, req, hosts, styles)
		if err != nil {
			return nil, err
		}
		f.Map = m
	}
	return f, nil
}

func (req Request) spec(kind clean.Kind) query.Spec {
	spec := query.Spec{Clean: req.Clean, Unit: req.Unit}
	if req.Location != nil && req.Clean != "" {
		spec.TZ = req.Location.String()
	}
	return spec
}

func buildPanel(src Source, req Request, kind clean.Kind, sensor string, styles map[string]Style, points int) (*Panel, error) {
	spec := req.spec(kind)
	p := &Panel{Title: titleOf(sensor), Unit: kind.Unit, Bars: kind.Bars}
	if p.Bars {
		p.Period = day
	} else if every := req.Until.Sub(req.Since) / time.Duration(points); every >= time.Second {
		// About a point per pixel: the server averages windows, so a
		// month of 10-second readings crosses the wire as a thousand.
		// Windows of whole summary periods are answered from the store's
		// sums instead of its readings (store.Summarizer).
		if p := store.SummaryPeriod; every >= p {
			every = (every + p - 1) / p * p
		}
		spec.Agg, spec.Every = "avg", formatSeconds(every)
	}
	if req.Unit != "" && kind.Unit == "" {
		p.Unit, _ = schema.CanonicalUnit(req.Unit)
	}
	byHost := map[string]*Series{}
	var order []string
	q := store.Query{Sensor: sensor, Hosts: req.Hosts, Since: req.Since, Until: req.Until}
	err := src.Query(q, spec, func(r *schema.Reading) error {
		if r.Error != nil {
			return nil
		}
		v, ok := schema.Numeric(r.Value)
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		s := byHost[r.Host]
		if s == nil {
			st, ok := styles[r.Host]
			if !ok {
				st = Style{Label: r.Host, Colour: PaletteColour(len(byHost))}
			}
			s = &Series{Host: r.Host, Label: st.Label, Colour: st.Colour}
			byHost[r.Host] = s
			order = append(order, r.Host)
		}
		if p.Title == titleOf(sensor) && r.Title != "" {
			p.Title = r.Title
		}
		if p.Unit == "" {
			if qty, ok := schema.ParseQuantity(r.Value); ok {
				p.Unit = qty.Unit
			}
		}
		s.Points = append(s.Points, XY{r.Time, v})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", sensor, err)
	}
	for _, h := range order {
		p.Series = append(p.Series, *byHost[h])
	}
	if unit, factor := displayValues(p.Unit); factor != 1 {
		for i := range p.Series {
			for j := range p.Series[i].Points {
				p.Series[i].Points[j].V *= factor
			}
		}
		p.Unit = unit
	}
	return p, nil
}

// formatSeconds writes a window as query's --every takes it.
func formatSeconds(d time.Duration) string {
	return fmt.Sprintf("%ds", int64(math.Ceil(d.Seconds())))
}

func buildMap(src Source, req Request, hosts []store.Host, styles map[string]Style) (*Map, error) {
	sensor := req.Sensors[0]
	kind, _ := clean.Lookup(req.Clean)
	spec := req.spec(kind)
	spec.Agg = "last"
	m := &Map{Title: titleOf(sensor) + ", latest", Unit: kind.Unit, Interpolate: req.Interpolate, Overlay: req.Overlay}
	if req.Unit != "" && kind.Unit == "" {
		m.Unit, _ = schema.CanonicalUnit(req.Unit)
	}
	where := map[string]*store.Location{}
	var located []string
	for _, h := range hosts {
		if h.Location != nil && (len(req.Hosts) == 0 || slices.Contains(req.Hosts, h.Name)) {
			where[h.Name] = h.Location
			located = append(located, h.Name)
		}
	}
	if len(located) == 0 {
		return m, nil
	}
	q := store.Query{Sensor: sensor, Hosts: located, Since: req.Since, Until: req.Until}
	err := src.Query(q, spec, func(r *schema.Reading) error {
		v, ok := schema.Numeric(r.Value)
		loc := where[r.Host]
		if !ok || loc == nil || r.Error != nil {
			return nil
		}
		if m.Unit == "" {
			if qty, ok := schema.ParseQuantity(r.Value); ok {
				m.Unit = qty.Unit
			}
		}
		if r.Title != "" {
			m.Title = r.Title + ", latest"
		}
		st := styles[r.Host]
		m.Hosts = append(m.Hosts, MapHost{Label: st.Label, At: geo.LatLon{Lat: loc.Lat, Lon: loc.Lon}, Value: v, Colour: st.Colour})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("map of %s: %w", sensor, err)
	}
	// In the unit of the chart beside it: a cpu_load of 27%, not 0.27.
	if unit, factor := displayValues(m.Unit); factor != 1 {
		for i := range m.Hosts {
			m.Hosts[i].Value *= factor
		}
		m.Unit = unit
	}
	return m, nil
}

// titleOf makes a sensor's name a title: cpu_load → Cpu load, for
// readings that carry no title of their own.
func titleOf(sensor string) string {
	s := strings.ReplaceAll(sensor, "_", " ")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
