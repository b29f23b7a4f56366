package geo

import (
	"math"
	"testing"
)

// TestProjectKnownPlaces: the corners of the fitted box land on the
// frame, places keep their compass directions, distances near the middle
// are true, and unprojecting gives the place back.
func TestProjectKnownPlaces(t *testing.T) {
	amsterdam := LatLon{52.3731, 4.8922}
	rotterdam := LatLon{51.9244, 4.4777}
	utrecht := LatLon{52.0907, 5.1214}
	box := Bounds([]LatLon{amsterdam, rotterdam, utrecht}, 0.02)
	if !(box.MinLat < rotterdam.Lat && box.MaxLat > amsterdam.Lat && box.MinLon < rotterdam.Lon && box.MaxLon > utrecht.Lon) {
		t.Fatalf("box %+v does not hold the places", box)
	}
	p := Fit(box, 10, 20, 800, 600)
	ax, ay := p.Project(amsterdam)
	rx, ry := p.Project(rotterdam)
	ux, uy := p.Project(utrecht)
	if !(ry > ay && rx < ax) { // Rotterdam is south-west of Amsterdam
		t.Errorf("Rotterdam at (%.0f,%.0f), Amsterdam at (%.0f,%.0f)", rx, ry, ax, ay)
	}
	if !(ux > ax && uy > ay && uy < ry) {
		t.Errorf("Utrecht at (%.0f,%.0f)", ux, uy)
	}
	for _, pt := range [][2]float64{{ax, ay}, {rx, ry}, {ux, uy}} {
		if pt[0] < 10 || pt[0] > 810 || pt[1] < 20 || pt[1] > 620 {
			t.Errorf("point %v outside the frame", pt)
		}
	}
	// Amsterdam–Rotterdam is 57.2 km great-circle.
	km := math.Hypot(ax-rx, ay-ry) * p.KmPerPixel()
	if math.Abs(km-57.2) > 1.5 {
		t.Errorf("Amsterdam–Rotterdam %.1f km on the map, want 57.2", km)
	}
	back := p.Unproject(ax, ay)
	if math.Abs(back.Lat-amsterdam.Lat) > 1e-9 || math.Abs(back.Lon-amsterdam.Lon) > 1e-9 {
		t.Errorf("unprojected %+v, want %+v", back, amsterdam)
	}
	// Fit centres and keeps the aspect: the box's corners sit on one
	// pair of the frame's sides.
	x0, y0 := p.Project(LatLon{box.MaxLat, box.MinLon})
	x1, y1 := p.Project(LatLon{box.MinLat, box.MaxLon})
	onSides := (math.Abs(x0-10) < 1e-6 && math.Abs(x1-810) < 1e-6) || (math.Abs(y0-20) < 1e-6 && math.Abs(y1-620) < 1e-6)
	if !onSides || math.Abs((x0+x1)/2-410) > 1e-6 || math.Abs((y0+y1)/2-320) > 1e-6 {
		t.Errorf("box drawn at (%.1f,%.1f)-(%.1f,%.1f)", x0, y0, x1, y1)
	}
}

func TestBoundsAndDetail(t *testing.T) {
	one := Bounds([]LatLon{{52.37, 4.89}}, 0.02)
	if s := one.Span(); math.Abs(s-0.02) > 1e-9 || Detail(one) != "" {
		t.Errorf("a single host: span %g, detail %q", s, Detail(one))
	}
	europe := Bounds([]LatLon{{52.37, 4.89}, {40.4, -3.7}, {41.9, 12.5}}, 0.02)
	if Detail(europe) != "50m" {
		t.Errorf("Europe: detail %q", Detail(europe))
	}
	world := Bounds([]LatLon{{52.37, 4.89}, {-33.9, 151.2}, {40.7, -74}}, 0.02)
	if Detail(world) != "110m" || world.MaxLat > 85 || world.MinLon < -180 {
		t.Errorf("world: %+v detail %q", world, Detail(world))
	}
}

// inside reports whether p is inside ring (even-odd).
func inside(ring []LatLon, p LatLon) bool {
	in := false
	for i, j := 0, len(ring)-1; i < len(ring); j, i = i, i+1 {
		a, b := ring[i], ring[j]
		if (a.Lat > p.Lat) != (b.Lat > p.Lat) && p.Lon < (b.Lon-a.Lon)*(p.Lat-a.Lat)/(b.Lat-a.Lat)+a.Lon {
			in = !in
		}
	}
	return in
}

// TestCountries: the embedded outlines decode, and known cities fall
// inside their own country's outline, at both details.
func TestCountries(t *testing.T) {
	for _, detail := range []string{"110m", "50m"} {
		cs, err := Countries(detail)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) < 170 {
			t.Fatalf("%s: %d countries", detail, len(cs))
		}
		for _, city := range []struct {
			country string
			at      LatLon
		}{{"France", LatLon{48.85, 2.35}}, {"Germany", LatLon{52.52, 13.4}}, {"Brazil", LatLon{-15.8, -47.9}}, {"Australia", LatLon{-25, 134}}} {
			found := ""
			for _, c := range cs {
				for _, r := range c.Rings {
					if inside(r, city.at) {
						found = c.Name
					}
				}
			}
			if found != city.country {
				t.Errorf("%s: %v is in %q, want %s", detail, city.at, found, city.country)
			}
		}
		if n := len(In(cs, Bounds([]LatLon{{52.37, 4.89}, {50.85, 4.35}}, 0.02))); n < 2 || n > 10 {
			t.Errorf("%s: %d countries around Amsterdam and Brussels", detail, n)
		}
	}
	if _, err := Countries("10m"); err == nil {
		t.Error("an unknown detail gave outlines")
	}
}

func TestIDW(t *testing.T) {
	s := []Sample{{LatLon{52, 4}, 10}, {LatLon{52, 6}, 20}}
	if v := IDW(s, LatLon{52, 4}); v != 10 {
		t.Errorf("at a sample: %g", v)
	}
	if v := IDW(s, LatLon{52, 5}); math.Abs(v-15) > 1e-9 {
		t.Errorf("half way: %g", v)
	}
	if v := IDW(s, LatLon{52, 4.5}); !(v > 10 && v < 15) {
		t.Errorf("near the first: %g", v)
	}
}

func TestScaleBar(t *testing.T) {
	p := Fit(Bounds([]LatLon{{52.37, 4.89}}, 0.1), 0, 0, 1000, 1000)
	km, px := p.ScaleBar(250)
	if px > 250 || px < 100 || km != 2 && km != 1 && km != 5 {
		t.Errorf("scale bar %g km over %.0f px (%.4f km/px)", km, px, p.KmPerPixel())
	}
}

func TestParseGeoJSON(t *testing.T) {
	doc := `{"type":"FeatureCollection","features":[
		{"type":"Feature","properties":{"name":"Vondelpark"},"geometry":{"type":"Polygon","coordinates":[[[4.86,52.357],[4.88,52.357],[4.88,52.36],[4.86,52.357]]]}},
		{"type":"Feature","properties":{},"geometry":{"type":"LineString","coordinates":[[4.89,52.37],[4.90,52.38]]}},
		{"type":"Feature","properties":{"name":"a tree"},"geometry":{"type":"Point","coordinates":[4.9,52.3]}},
		{"type":"Feature","geometry":{"type":"MultiPolygon","coordinates":[[[[1,1],[2,1],[2,2],[1,1]]],[[[3,3],[4,3],[4,4],[3,3]]]]}}]}`
	shapes, err := ParseGeoJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(shapes) != 4 || shapes[0].Name != "Vondelpark" || !shapes[0].Closed || shapes[1].Closed || len(shapes[0].Rings[0]) != 4 {
		t.Fatalf("shapes %+v", shapes)
	}
	if p := shapes[0].Rings[0][1]; p.Lat != 52.357 || p.Lon != 4.88 {
		t.Errorf("GeoJSON is longitude first: %+v", p)
	}
	for _, bad := range []string{`{`, `{"type":"Polygon","coordinates":[[[200,1],[1,1],[1,2]]]}`, `{"type":"Circle"}`, `{"type":"LineString","coordinates":[[1]]}`} {
		if _, err := ParseGeoJSON([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestAround(t *testing.T) {
	b := Around(LatLon{52.37, 4.89}, 2)
	p := Fit(b, 0, 0, 1000, 1000)
	x0, y0 := p.Project(LatLon{b.MaxLat, b.MinLon})
	x1, y1 := p.Project(LatLon{b.MinLat, b.MaxLon})
	if w, h := (x1-x0)*p.KmPerPixel(), (y1-y0)*p.KmPerPixel(); math.Abs(w-4) > 0.05 || math.Abs(h-4) > 0.05 {
		t.Errorf("the box around a place is %.2f × %.2f km, want 4 × 4", w, h)
	}
	if x, y := p.Project(LatLon{52.37, 4.89}); math.Abs(x-500) > 0.5 || math.Abs(y-500) > 0.5 {
		t.Errorf("the place at %.1f,%.1f, want the middle", x, y)
	}
}
