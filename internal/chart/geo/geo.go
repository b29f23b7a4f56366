// Package geo places hosts on a map: a projection fitted to the hosts'
// bounding box, Natural Earth country outlines (from the world-atlas
// TopoJSON files, embedded) at a detail chosen by that box, a graticule
// and scale bar below country scale, and inverse-distance weighting for
// an interpolated layer. apd chart --map and the dashboard's map (which
// the server draws) both use it.
package geo

import (
	"embed"
	"encoding/json"
	"fmt"
	"math"
	"sync"
)

// LatLon is a position in degrees.
type LatLon struct{ Lat, Lon float64 }

// BBox is a box of latitudes and longitudes.
type BBox struct{ MinLat, MinLon, MaxLat, MaxLon float64 }

// Bounds returns the box around points, padded by a fifth of its size on
// each side and at least minSpan degrees tall and wide, within the
// world's limits.
func Bounds(points []LatLon, minSpan float64) BBox {
	b := BBox{MinLat: 90, MinLon: 180, MaxLat: -90, MaxLon: -180}
	for _, p := range points {
		b.MinLat, b.MaxLat = math.Min(b.MinLat, p.Lat), math.Max(b.MaxLat, p.Lat)
		b.MinLon, b.MaxLon = math.Min(b.MinLon, p.Lon), math.Max(b.MaxLon, p.Lon)
	}
	if len(points) == 0 {
		return BBox{-60, -180, 85, 180}
	}
	grow := func(lo, hi float64) (float64, float64) {
		pad := math.Max((hi-lo)*0.2, (minSpan-(hi-lo))/2)
		return lo - pad, hi + pad
	}
	b.MinLat, b.MaxLat = grow(b.MinLat, b.MaxLat)
	b.MinLon, b.MaxLon = grow(b.MinLon, b.MaxLon)
	b.MinLat, b.MaxLat = math.Max(b.MinLat, -85), math.Min(b.MaxLat, 85)
	b.MinLon, b.MaxLon = math.Max(b.MinLon, -180), math.Min(b.MaxLon, 180)
	return b
}

// Around returns the box of radius km around p (within the world's
// limits): the frame of a single place, which has no extent of its own
// to fit.
func Around(p LatLon, km float64) BBox {
	dLat := km / earthKmPerDegree
	dLon := dLat / math.Max(math.Cos(p.Lat*math.Pi/180), 0.01)
	return BBox{
		MinLat: math.Max(p.Lat-dLat, -85), MaxLat: math.Min(p.Lat+dLat, 85),
		MinLon: math.Max(p.Lon-dLon, -180), MaxLon: math.Min(p.Lon+dLon, 180),
	}
}

// Span is the larger of the box's height and width in degrees.
func (b BBox) Span() float64 { return math.Max(b.MaxLat-b.MinLat, b.MaxLon-b.MinLon) }

// Projection maps positions into a rectangle of pixels: equirectangular,
// with longitudes shrunk by the cosine of the middle latitude so that
// distances are true in every direction near the middle — at the scale of
// a house, a city or a country, which is where sensors are.
type Projection struct {
	box        BBox
	kx, ky     float64 // pixels per degree
	W, H       float64 // the rectangle fitted in
	offX, offY float64 // the pixel of (box.MinLon, box.MaxLat)
}

// Fit returns the projection that shows all of b, centred, in a w×h
// rectangle at (x, y).
func Fit(b BBox, x, y, w, h float64) Projection {
	cos := math.Cos((b.MinLat + b.MaxLat) / 2 * math.Pi / 180)
	dw := math.Max((b.MaxLon-b.MinLon)*cos, 1e-9)
	dh := math.Max(b.MaxLat-b.MinLat, 1e-9)
	k := math.Min(w/dw, h/dh)
	p := Projection{box: b, kx: k * cos, ky: k, W: w, H: h}
	p.offX = x + (w-dw*k)/2
	p.offY = y + (h-dh*k)/2
	return p
}

// Project returns the pixel of ll.
func (p Projection) Project(ll LatLon) (x, y float64) {
	return p.offX + (ll.Lon-p.box.MinLon)*p.kx, p.offY + (p.box.MaxLat-ll.Lat)*p.ky
}

// Unproject returns the position at pixel (x, y).
func (p Projection) Unproject(x, y float64) LatLon {
	return LatLon{Lat: p.box.MaxLat - (y-p.offY)/p.ky, Lon: p.box.MinLon + (x-p.offX)/p.kx}
}

// Box is the box the projection was fitted to.
func (p Projection) Box() BBox { return p.box }

// KmPerPixel is the ground distance of a pixel at the middle latitude.
func (p Projection) KmPerPixel() float64 { return earthKmPerDegree / p.ky }

const earthKmPerDegree = 111.32

// ScaleBar returns a round distance (1, 2 or 5 × 10ⁿ, in km) and its
// length in pixels, at most maxPx long.
func (p Projection) ScaleBar(maxPx float64) (km, px float64) {
	limit := maxPx * p.KmPerPixel()
	mag := math.Pow(10, math.Floor(math.Log10(limit)))
	km = mag
	for _, m := range []float64{2, 5, 10} {
		if m*mag <= limit {
			km = m * mag
		}
	}
	return km, km / p.KmPerPixel()
}

// GraticuleStep returns the spacing in degrees of a graticule with about
// n lines across the box.
func GraticuleStep(b BBox, n int) float64 {
	raw := b.Span() / float64(max(n, 1))
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// Detail says which outlines suit a box: "110m" for continents and the
// world, "50m" at country scale, "" below it (a city, a house), where
// outlines say nothing and a graticule with a scale bar is drawn instead.
func Detail(b BBox) string {
	switch s := b.Span(); {
	case s >= 25:
		return "110m"
	case s >= 2:
		return "50m"
	}
	return ""
}

// Country is one country's outline: rings of positions (outer rings and
// holes; filled nonzero, they draw right).
type Country struct {
	Name  string
	Rings [][]LatLon
}

//go:embed worldatlas/countries-110m.json worldatlas/countries-50m.json
var atlas embed.FS

// countries decodes each detail once; the result is shared and read-only.
var countries = map[string]func() ([]Country, error){
	"110m": sync.OnceValues(func() ([]Country, error) { return decodeAtlas("worldatlas/countries-110m.json") }),
	"50m":  sync.OnceValues(func() ([]Country, error) { return decodeAtlas("worldatlas/countries-50m.json") }),
}

// Countries returns the outlines at detail ("110m" or "50m"), to be
// treated as read-only.
func Countries(detail string) ([]Country, error) {
	f, ok := countries[detail]
	if !ok {
		return nil, fmt.Errorf("no outlines at detail %q (want 110m or 50m)", detail)
	}
	return f()
}

// In returns the countries with a point in b (and those that span it).
func In(cs []Country, b BBox) []Country {
	var out []Country
	for _, c := range cs {
		cb := BBox{MinLat: 90, MinLon: 180, MaxLat: -90, MaxLon: -180}
		for _, r := range c.Rings {
			for _, p := range r {
				cb.MinLat, cb.MaxLat = math.Min(cb.MinLat, p.Lat), math.Max(cb.MaxLat, p.Lat)
				cb.MinLon, cb.MaxLon = math.Min(cb.MinLon, p.Lon), math.Max(cb.MaxLon, p.Lon)
			}
		}
		if cb.MinLat <= b.MaxLat && cb.MaxLat >= b.MinLat && cb.MinLon <= b.MaxLon && cb.MaxLon >= b.MinLon {
			out = append(out, c)
		}
	}
	return out
}

// topology is the part of TopoJSON that world-atlas uses: quantized,
// delta-encoded arcs shared between neighbouring countries.
type topology struct {
	Transform struct {
		Scale     [2]float64 `json:"scale"`
		Translate [2]float64 `json:"translate"`
	} `json:"transform"`
	Arcs    [][][2]int `json:"arcs"`
	Objects struct {
		Countries struct {
			Geometries []struct {
				Type       string          `json:"type"`
				Arcs       json.RawMessage `json:"arcs"`
				Properties struct {
					Name string `json:"name"`
				} `json:"properties"`
			} `json:"geometries"`
		} `json:"countries"`
	} `json:"objects"`
}

func decodeAtlas(name string) ([]Country, error) {
	b, err := atlas.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var t topology
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return decodeTopology(&t)
}

func decodeTopology(t *topology) ([]Country, error) {
	arcs := make([][]LatLon, len(t.Arcs))
	for i, a := range t.Arcs {
		x, y := 0, 0
		pts := make([]LatLon, len(a))
		for j, d := range a {
			x, y = x+d[0], y+d[1]
			pts[j] = LatLon{Lon: float64(x)*t.Transform.Scale[0] + t.Transform.Translate[0], Lat: float64(y)*t.Transform.Scale[1] + t.Transform.Translate[1]}
		}
		arcs[i] = pts
	}
	ring := func(idx []int) ([]LatLon, error) {
		var r []LatLon
		for k, i := range idx {
			rev := i < 0
			if rev {
				i = ^i
			}
			if i >= len(arcs) {
				return nil, fmt.Errorf("arc %d of %d", i, len(arcs))
			}
			a := arcs[i]
			start := 0
			if k > 0 {
				start = 1 // shared with the end of the previous arc
			}
			for j := start; j < len(a); j++ {
				if rev {
					r = append(r, a[len(a)-1-j])
				} else {
					r = append(r, a[j])
				}
			}
		}
		return r, nil
	}
	var out []Country
	for _, g := range t.Objects.Countries.Geometries {
		var polys [][][]int
		switch g.Type {
		case "Polygon":
			var p [][]int
			if err := json.Unmarshal(g.Arcs, &p); err != nil {
				return nil, err
			}
			polys = [][][]int{p}
		case "MultiPolygon":
			if err := json.Unmarshal(g.Arcs, &polys); err != nil {
				return nil, err
			}
		default:
			continue
		}
		c := Country{Name: g.Properties.Name}
		for _, p := range polys {
			for _, idx := range p {
				r, err := ring(idx)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", c.Name, err)
				}
				c.Rings = append(c.Rings, r)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// Sample is a value at a position.
type Sample struct {
	At    LatLon
	Value float64
}

// IDW interpolates the samples' values at at by inverse-distance
// weighting (power 2, distances on the plane of the projection's
// degrees); at a sample it is that sample's value.
func IDW(samples []Sample, at LatLon) float64 {
	cos := math.Cos(at.Lat * math.Pi / 180)
	var num, den float64
	for _, s := range samples {
		dx, dy := (s.At.Lon-at.Lon)*cos, s.At.Lat-at.Lat
		d2 := dx*dx + dy*dy
		if d2 < 1e-18 {
			return s.Value
		}
		w := 1 / d2
		num += w * s.Value
		den += w
	}
	return num / den
}
