package geo

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Shape is a line or a polygon of a user's overlay (a building, a park,
// a district), drawn over the map.
type Shape struct {
	Name   string
	Closed bool
	Rings  [][]LatLon
}

// MaxOverlayPoints bounds an overlay: it is drawn into every map.
const MaxOverlayPoints = 1_000_000

// ParseGeoJSON reads the lines and polygons of a GeoJSON document (RFC
// 7946: a FeatureCollection, a Feature or a bare geometry; LineString,
// MultiLineString, Polygon, MultiPolygon, GeometryCollection). Points are
// left out: the hosts are the map's points. A feature's "name" property
// names its shape.
func ParseGeoJSON(b []byte) ([]Shape, error) {
	var doc geoObject
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("GeoJSON: %w", err)
	}
	var out []Shape
	points := 0
	if err := doc.shapes("", &out, &points, 0); err != nil {
		return nil, fmt.Errorf("GeoJSON: %w", err)
	}
	return out, nil
}

type geoObject struct {
	Type        string          `json:"type"`
	Features    []geoObject     `json:"features"`
	Geometry    *geoObject      `json:"geometry"`
	Geometries  []geoObject     `json:"geometries"`
	Coordinates json.RawMessage `json:"coordinates"`
	Properties  struct {
		Name string `json:"name"`
	} `json:"properties"`
}

func (o *geoObject) shapes(name string, out *[]Shape, points *int, depth int) error {
	if depth > 8 {
		return errors.New("nested too deep")
	}
	ring := func(raw [][]float64) ([]LatLon, error) {
		r := make([]LatLon, 0, len(raw))
		for _, c := range raw {
			if len(c) < 2 {
				return nil, errors.New("a position needs longitude and latitude")
			}
			p := LatLon{Lat: c[1], Lon: c[0]}
			if !(p.Lat >= -90 && p.Lat <= 90 && p.Lon >= -180 && p.Lon <= 180) {
				return nil, fmt.Errorf("position %v is not on Earth", c)
			}
			r = append(r, p)
		}
		if *points += len(r); *points > MaxOverlayPoints {
			return nil, fmt.Errorf("more than %d positions", MaxOverlayPoints)
		}
		return r, nil
	}
	add := func(closed bool, rings [][][]float64) error {
		s := Shape{Name: name, Closed: closed}
		for _, raw := range rings {
			r, err := ring(raw)
			if err != nil {
				return err
			}
			s.Rings = append(s.Rings, r)
		}
		*out = append(*out, s)
		return nil
	}
	switch o.Type {
	case "FeatureCollection":
		for i := range o.Features {
			if err := o.Features[i].shapes("", out, points, depth+1); err != nil {
				return err
			}
		}
	case "Feature":
		if o.Geometry != nil {
			return o.Geometry.shapes(o.Properties.Name, out, points, depth+1)
		}
	case "GeometryCollection":
		for i := range o.Geometries {
			if err := o.Geometries[i].shapes(name, out, points, depth+1); err != nil {
				return err
			}
		}
	case "LineString":
		var c [][]float64
		if err := json.Unmarshal(o.Coordinates, &c); err != nil {
			return err
		}
		return add(false, [][][]float64{c})
	case "MultiLineString", "Polygon":
		var c [][][]float64
		if err := json.Unmarshal(o.Coordinates, &c); err != nil {
			return err
		}
		return add(o.Type == "Polygon", c)
	case "MultiPolygon":
		var c [][][][]float64
		if err := json.Unmarshal(o.Coordinates, &c); err != nil {
			return err
		}
		for _, poly := range c {
			if err := add(true, poly); err != nil {
				return err
			}
		}
	case "Point", "MultiPoint":
	default:
		return fmt.Errorf("unknown type %q", o.Type)
	}
	return nil
}
