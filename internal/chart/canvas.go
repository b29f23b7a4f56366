package chart

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

// Point is a position on a canvas, in pixels from the top left.
type Point struct{ X, Y float64 }

// Align says where a text's anchor is: at its start, middle or end.
type Align int

const (
	AlignStart Align = iota
	AlignMiddle
	AlignEnd
)

// canvas is what a figure draws on; an SVG document and a PNG image are
// the two. Colours are not premultiplied (color.RGBA holds them as SVG
// writes them: #rrggbb and an opacity); alpha 0 draws nothing.
type canvas interface {
	polyline(pts []Point, c color.RGBA, width float64)
	// polygons fills (nonzero) and outlines every ring of every polygon.
	polygons(rings [][]Point, fill, stroke color.RGBA, width float64)
	rect(x, y, w, h float64, fill color.RGBA)
	circle(x, y, r float64, fill, stroke color.RGBA)
	// text draws s with its baseline at y.
	text(x, y float64, s string, size float64, c color.RGBA, align Align)
}

// fonts measures text for both canvases with the Go font, which the PNG
// draws with; the SVG names it first (with sans-serif as the fallback),
// so layouts that fit in one fit in the other.
type fonts struct {
	once  sync.Once
	font  *opentype.Font
	mu    sync.Mutex
	faces map[float64]font.Face
}

var goFont fonts // read-only after once; faces guarded by mu

func (f *fonts) face(size float64) font.Face {
	f.once.Do(func() {
		fnt, err := opentype.Parse(goregular.TTF)
		if err != nil {
			panic(err) // the embedded font is known good
		}
		f.font, f.faces = fnt, map[float64]font.Face{}
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if face, ok := f.faces[size]; ok {
		return face
	}
	face, err := opentype.NewFace(f.font, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		panic(err)
	}
	f.faces[size] = face
	return face
}

// textWidth is the width of s in pixels at size.
func textWidth(s string, size float64) float64 {
	face := goFont.face(size)
	goFont.mu.Lock()
	defer goFont.mu.Unlock()
	return float64(font.MeasureString(face, s)) / 64
}

// ---- SVG ----

type svgCanvas struct {
	b    strings.Builder
	w, h int
}

func newSVG(w, h int, bg color.RGBA) *svgCanvas {
	s := &svgCanvas{w: w, h: h}
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Go, 'DejaVu Sans', Arial, sans-serif">`+"\n", w, h, w, h)
	s.rect(0, 0, float64(w), float64(h), bg)
	return s
}

func hex(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

func paint(attr string, c color.RGBA) string {
	if c.A == 0 {
		return fmt.Sprintf(` %s="none"`, attr)
	}
	if c.A == 255 {
		return fmt.Sprintf(` %s="%s"`, attr, hex(c))
	}
	return fmt.Sprintf(` %s="%s" %s-opacity="%.3f"`, attr, hex(c), attr, float64(c.A)/255)
}

// num writes a coordinate to a tenth of a pixel.
func num(f float64) string { return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64) }

func appendPath(b *strings.Builder, pts []Point, closed bool) {
	for i, p := range pts {
		if i == 0 {
			b.WriteByte('M')
		} else {
			b.WriteByte('L')
		}
		b.WriteString(num(p.X))
		b.WriteByte(' ')
		b.WriteString(num(p.Y))
	}
	if closed {
		b.WriteByte('Z')
	}
}

func (s *svgCanvas) polyline(pts []Point, c color.RGBA, width float64) {
	if len(pts) < 2 || c.A == 0 {
		return
	}
	s.b.WriteString(`<path d="`)
	appendPath(&s.b, pts, false)
	fmt.Fprintf(&s.b, `" fill="none"%s stroke-width="%s" stroke-linejoin="round" stroke-linecap="round"/>`+"\n", paint("stroke", c), num(width))
}

func (s *svgCanvas) polygons(rings [][]Point, fill, stroke color.RGBA, width float64) {
	if len(rings) == 0 {
		return
	}
	s.b.WriteString(`<path d="`)
	for _, r := range rings {
		appendPath(&s.b, r, true)
	}
	fmt.Fprintf(&s.b, `"%s%s stroke-width="%s" stroke-linejoin="round"/>`+"\n", paint("fill", fill), paint("stroke", stroke), num(width))
}

func (s *svgCanvas) rect(x, y, w, h float64, fill color.RGBA) {
	if fill.A == 0 {
		return
	}
	fmt.Fprintf(&s.b, `<rect x="%s" y="%s" width="%s" height="%s"%s/>`+"\n", num(x), num(y), num(w), num(h), paint("fill", fill))
}

func (s *svgCanvas) circle(x, y, r float64, fill, stroke color.RGBA) {
	fmt.Fprintf(&s.b, `<circle cx="%s" cy="%s" r="%s"%s%s/>`+"\n", num(x), num(y), num(r), paint("fill", fill), paint("stroke", stroke))
}

func (s *svgCanvas) text(x, y float64, str string, size float64, c color.RGBA, align Align) {
	anchor := [...]string{"start", "middle", "end"}[align]
	fmt.Fprintf(&s.b, `<text x="%s" y="%s" font-size="%s" text-anchor="%s"%s>%s</text>`+"\n", num(x), num(y), num(size), anchor, paint("fill", c), escapeXML(str))
}

func escapeXML(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		default:
			if r < 0x20 || r == 0x7f || r == 0xfffe || r == 0xffff {
				b.WriteRune('\uFFFD') // not allowed in XML
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (s *svgCanvas) writeTo(w io.Writer) error {
	s.b.WriteString("</svg>\n")
	_, err := io.WriteString(w, s.b.String())
	return err
}

// ---- PNG ----

type pngCanvas struct {
	img *image.RGBA
	ras vector.Rasterizer
}

func newPNG(w, h int, bg color.RGBA) *pngCanvas {
	p := &pngCanvas{img: image.NewRGBA(image.Rect(0, 0, w, h))}
	draw.Draw(p.img, p.img.Bounds(), image.NewUniform(bg), image.Point{}, draw.Src)
	return p
}

// fill rasterises the closed paths of rings (nonzero winding) in colour c,
// within their bounding box only: the rasteriser's buffer is the box's
// size, so a small shape costs little on a large image.
func (p *pngCanvas) fill(rings [][]Point, c color.RGBA) {
	if c.A == 0 || len(rings) == 0 {
		return
	}
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, r := range rings {
		for _, pt := range r {
			minX, minY = math.Min(minX, pt.X), math.Min(minY, pt.Y)
			maxX, maxY = math.Max(maxX, pt.X), math.Max(maxY, pt.Y)
		}
	}
	box := image.Rect(int(math.Floor(minX)), int(math.Floor(minY)), int(math.Ceil(maxX))+1, int(math.Ceil(maxY))+1).Intersect(p.img.Bounds())
	if box.Empty() {
		return
	}
	ox, oy := float64(box.Min.X), float64(box.Min.Y)
	clampX := func(x float64) float32 { return float32(math.Max(-1, math.Min(float64(box.Dx()+1), x-ox))) }
	clampY := func(y float64) float32 { return float32(math.Max(-1, math.Min(float64(box.Dy()+1), y-oy))) }
	p.ras.Reset(box.Dx(), box.Dy())
	p.ras.DrawOp = draw.Over
	for _, r := range rings {
		if len(r) < 3 {
			continue
		}
		p.ras.MoveTo(clampX(r[0].X), clampY(r[0].Y))
		for _, pt := range r[1:] {
			p.ras.LineTo(clampX(pt.X), clampY(pt.Y))
		}
		p.ras.ClosePath()
	}
	// Colours are given unpremultiplied (as SVG takes them).
	p.ras.Draw(p.img, box, image.NewUniform(color.NRGBA(c)), image.Point{})
}

// strokeRings returns the outline of a polyline of width w as quads, one
// per segment, each lengthened by half the width at both ends so that
// joins are covered; all wind the same way, so overlaps add up rather
// than cancel.
func strokeRings(pts []Point, w float64, closed bool) [][]Point {
	if closed && len(pts) > 2 {
		pts = append(pts[:len(pts):len(pts)], pts[0])
	}
	var rings [][]Point
	h := w / 2
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		dx, dy := b.X-a.X, b.Y-a.Y
		l := math.Hypot(dx, dy)
		if l == 0 {
			continue
		}
		ux, uy := dx/l*h, dy/l*h // along, half a width long
		nx, ny := -uy, ux        // across
		a = Point{a.X - ux, a.Y - uy}
		b = Point{b.X + ux, b.Y + uy}
		rings = append(rings, []Point{{a.X + nx, a.Y + ny}, {b.X + nx, b.Y + ny}, {b.X - nx, b.Y - ny}, {a.X - nx, a.Y - ny}})
	}
	return rings
}

func (p *pngCanvas) polyline(pts []Point, c color.RGBA, width float64) {
	p.fill(strokeRings(pts, width, false), c)
}

func (p *pngCanvas) polygons(rings [][]Point, fill, stroke color.RGBA, width float64) {
	p.fill(rings, fill)
	if stroke.A == 0 {
		return
	}
	var outline [][]Point
	for _, r := range rings {
		outline = append(outline, strokeRings(r, width, true)...)
	}
	p.fill(outline, stroke)
}

func (p *pngCanvas) rect(x, y, w, h float64, fill color.RGBA) {
	p.fill([][]Point{{{x, y}, {x + w, y}, {x + w, y + h}, {x, y + h}}}, fill)
}

func circleRing(x, y, r float64) []Point {
	const n = 28
	ring := make([]Point, n)
	for i := range ring {
		a := 2 * math.Pi * float64(i) / n
		ring[i] = Point{x + r*math.Cos(a), y + r*math.Sin(a)}
	}
	return ring
}

func (p *pngCanvas) circle(x, y, r float64, fill, stroke color.RGBA) {
	ring := circleRing(x, y, r)
	p.fill([][]Point{ring}, fill)
	if stroke.A != 0 {
		p.fill(strokeRings(ring, 1, true), stroke)
	}
}

func (p *pngCanvas) text(x, y float64, s string, size float64, c color.RGBA, align Align) {
	switch align {
	case AlignMiddle:
		x -= textWidth(s, size) / 2
	case AlignEnd:
		x -= textWidth(s, size)
	}
	face := goFont.face(size)
	goFont.mu.Lock()
	defer goFont.mu.Unlock()
	d := font.Drawer{Dst: p.img, Src: image.NewUniform(c), Face: face, Dot: fixed.Point26_6{X: fixed.Int26_6(x * 64), Y: fixed.Int26_6(y * 64)}}
	d.DrawString(s)
}

func (p *pngCanvas) writeTo(w io.Writer) error {
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	return enc.Encode(w, p.img)
}
