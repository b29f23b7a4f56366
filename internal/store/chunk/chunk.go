// Package chunk is the storage engine's codec of a series' readings:
// up to MaxReadings readings of one (sensor, host), in columns, DEFLATEd.
// It is pure — bytes in, readings out — so it is tested and fuzzed apart
// from any database.
package chunk

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// MaxReadings is the most readings one chunk holds.
const MaxReadings = 512

// A chunk holds up to MaxReadings readings of one series (sensor, host),
// sorted by time with no two at the same millisecond, encoded in columns
// and compressed with DEFLATE:
//
//	uvarint n; titles (uvarint count, strings); the chunk's unit (string)
//	times: varint first (ms), then zigzag delta-of-deltas
//	seqs: zigzag deltas
//	title indexes, value kinds, human kinds: one uvarint or byte each
//	numbers: for number and quantity kinds, decimals byte + zigzag delta
//	of the decimal mantissa against the previous number
//	raw: other values, error kind and message, explicit human texts and
//	unknown members, as length-prefixed bytes
//
// Sensor values are mostly short decimals (21.3) that change a little from
// one reading to the next: as scaled integers their deltas take a byte or
// less before compression, and runs of equal times, units and titles
// compress to almost nothing. Every value round-trips byte for byte: the
// fast paths apply only when re-encoding gives back the exact bytes.
const chunkFormat = 1

// value kinds
const (
	kindRaw      = 0 // any JSON value, stored as is
	kindNumber   = 1 // a plain decimal number
	kindQuantity = 2 // {"magnitude":<decimal>,"unit":<the chunk's unit>}
	kindError    = 3 // a failed sample
)

// human kinds
const (
	humanNone    = 0
	humanDerived = 1 // written by earlier apds: equal to schema.Format of the value, recomputed on read
	humanText    = 2
	humanFrozen  = 3 // equal to frozenHuman of the value: recomputed on read, never changes
)

type chunkWriter struct{ b []byte }

func (w *chunkWriter) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *chunkWriter) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *chunkWriter) bytes(p []byte)   { w.uvarint(uint64(len(p))); w.b = append(w.b, p...) }
func (w *chunkWriter) str(s string)     { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }

// decimal splits a JSON number's text into a mantissa and a count of
// decimals when the text is a plain decimal that formatDecimal gives back
// exactly ("21.3" → 213, 1).
func decimal(text []byte) (int64, int, bool) {
	if len(text) == 0 || len(text) > 19 {
		return 0, 0, false
	}
	s := string(text)
	intPart, frac, hasPoint := strings.Cut(s, ".")
	digits := strings.TrimPrefix(intPart, "-") + frac
	if hasPoint && frac == "" {
		return 0, 0, false
	}
	m, err := strconv.ParseInt(strings.TrimPrefix(intPart, "-")+frac, 10, 64)
	if err != nil || digits == "" {
		return 0, 0, false
	}
	if strings.HasPrefix(intPart, "-") {
		m = -m
	}
	if formatDecimal(m, len(frac)) != s {
		return 0, 0, false
	}
	return m, len(frac), true
}

// appendDecimal appends mantissa m with decimals digits after the point
// (213, 1 → 21.3; 5, 2 → 0.05) to b.
func appendDecimal(b []byte, m int64, decimals int) []byte {
	u := uint64(m)
	if m < 0 {
		b = append(b, '-')
		u = -u // the magnitude, MinInt64's too
	}
	var buf [24]byte
	d := strconv.AppendUint(buf[:0], u, 10)
	if decimals <= 0 {
		return append(b, d...)
	}
	if len(d) <= decimals {
		b = append(b, '0', '.')
		for range decimals - len(d) {
			b = append(b, '0')
		}
		return append(b, d...)
	}
	b = append(b, d[:len(d)-decimals]...)
	b = append(b, '.')
	return append(b, d[len(d)-decimals:]...)
}

func formatDecimal(m int64, decimals int) string { return string(appendDecimal(nil, m, decimals)) }

func quantityPrefixSuffix(unit string) (string, string) {
	u, _ := json.Marshal(unit)
	return `{"magnitude":`, `,"unit":` + string(u) + `}`
}

// Encode encodes readings of one series, sorted by time with unique
// times.
func Encode(sensor string, rs []schema.Reading) []byte {
	var titles []string
	titleIdx := map[string]int{}
	unit := ""
	for _, r := range rs {
		if _, ok := titleIdx[r.Title]; !ok {
			titleIdx[r.Title] = len(titles)
			titles = append(titles, r.Title)
		}
		if unit == "" && r.Error == nil {
			if q, ok := schema.ParseQuantity(r.Value); ok {
				unit = q.Unit
			}
		}
	}
	qPrefix, qSuffix := quantityPrefixSuffix(unit)
	var head, times, seqs, idx, kinds, humans, nums, raw chunkWriter
	head.b = append(head.b, chunkFormat)
	head.uvarint(uint64(len(rs)))
	head.uvarint(uint64(len(titles)))
	for _, t := range titles {
		head.str(t)
	}
	head.str(unit)
	var prevT, prevD int64
	var prevSeq, prevM int64
	for i, r := range rs {
		t := r.Time.UnixMilli()
		if i == 0 {
			times.varint(t)
		} else {
			d := t - prevT
			times.varint(d - prevD)
			prevD = d
		}
		prevT = t
		seqs.varint(int64(r.Seq) - prevSeq)
		prevSeq = int64(r.Seq)
		idx.uvarint(uint64(titleIdx[r.Title]))

		kind := byte(kindRaw)
		var m int64
		var dec int
		switch {
		case r.Error != nil:
			kind = kindError
		case len(r.Value) > 0 && (r.Value[0] == '-' || r.Value[0] >= '0' && r.Value[0] <= '9'):
			if mm, d, ok := decimal(r.Value); ok {
				kind, m, dec = kindNumber, mm, d
			}
		case unit != "" && bytes.HasPrefix(r.Value, []byte(qPrefix)) && bytes.HasSuffix(r.Value, []byte(qSuffix)):
			if mm, d, ok := decimal(r.Value[len(qPrefix) : len(r.Value)-len(qSuffix)]); ok {
				kind, m, dec = kindQuantity, mm, d
			}
		}
		kinds.b = append(kinds.b, kind)
		switch kind {
		case kindNumber, kindQuantity:
			nums.b = append(nums.b, byte(dec))
			nums.varint(m - prevM)
			prevM = m
		case kindError:
			raw.str(string(r.Error.Kind))
			raw.str(r.Error.Message)
		default:
			raw.bytes(r.Value)
		}
		implied, derivable := "", false
		if r.Error == nil && r.Human != "" {
			implied, derivable = frozenHuman(r.Value)
		}
		switch {
		case r.Human == "":
			humans.b = append(humans.b, humanNone)
		case derivable && r.Human == implied:
			humans.b = append(humans.b, humanFrozen)
		default:
			humans.b = append(humans.b, humanText)
			raw.str(r.Human)
		}
		// Unknown members, as count and name/value pairs: their bytes are
		// kept exactly (json.Marshal would escape <, > and &).
		raw.uvarint(uint64(len(r.Extra)))
		names := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			raw.str(k)
			raw.bytes(r.Extra[k])
		}
	}
	var plain bytes.Buffer
	for _, col := range []*chunkWriter{&head, &times, &seqs, &idx, &kinds, &humans, &nums, &raw} {
		plain.Write(col.b)
	}
	var out bytes.Buffer
	zw := flateWriters.Get().(*flate.Writer)
	zw.Reset(&out)
	_, _ = zw.Write(plain.Bytes())
	_ = zw.Close()
	flateWriters.Put(zw)
	return out.Bytes()
}

// flateWriters and flateReaders keep DEFLATE state between chunks: a new
// compressor allocates and clears about a megabyte, which per chunk was
// more than a third of a fleet's ingestion cost.
var (
	flateWriters = sync.Pool{New: func() any {
		zw, _ := flate.NewWriter(nil, flate.BestSpeed)
		return zw
	}}
	flateReaders = sync.Pool{New: func() any { return flate.NewReader(nil) }}
)

type chunkReader struct {
	b   []byte
	err error
}

// ErrCorrupt is returned (wrapped) by Decode for bytes that are not a chunk.
var ErrCorrupt = errors.New("corrupt chunk")

func (r *chunkReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *chunkReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *chunkReader) byte() byte {
	if len(r.b) == 0 {
		r.err = ErrCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *chunkReader) bytes() []byte {
	n := r.uvarint()
	if uint64(len(r.b)) < n {
		r.err = ErrCorrupt
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *chunkReader) str() string { return string(r.bytes()) }

func (r *chunkReader) uint32() uint32 {
	if len(r.b) < 4 {
		r.err = ErrCorrupt
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *chunkReader) uint64() uint64 {
	if len(r.b) < 8 {
		r.err = ErrCorrupt
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// Decode rebuilds the readings of a chunk.
func Decode(host, sensor string, data []byte) ([]schema.Reading, error) {
	zr := flateReaders.Get().(io.ReadCloser)
	_ = zr.(flate.Resetter).Reset(bytes.NewReader(data), nil)
	plain, err := io.ReadAll(zr)
	flateReaders.Put(zr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	r := &chunkReader{b: plain}
	if r.byte() != chunkFormat {
		return nil, fmt.Errorf("%w: unknown format", ErrCorrupt)
	}
	n := int(r.uvarint())
	if n > MaxReadings*4 {
		return nil, fmt.Errorf("%w: %d readings", ErrCorrupt, n)
	}
	titles := make([]string, r.uvarint())
	for i := range titles {
		titles[i] = r.str()
	}
	unit := r.str()
	qPrefix, qSuffix := quantityPrefixSuffix(unit)
	out := make([]schema.Reading, n)
	var t, d int64
	for i := range out {
		out[i].Host, out[i].Sensor = host, sensor
		if i == 0 {
			t = r.varint()
		} else {
			d += r.varint()
			t += d
		}
		out[i].Time = time.UnixMilli(t).UTC()
	}
	var seq int64
	for i := range out {
		seq += r.varint()
		out[i].Seq = uint64(seq)
	}
	for i := range out {
		if ti := r.uvarint(); ti < uint64(len(titles)) {
			out[i].Title = titles[ti]
		}
	}
	kinds := make([]byte, n)
	for i := range kinds {
		kinds[i] = r.byte()
	}
	humans := make([]byte, n)
	for i := range humans {
		humans[i] = r.byte()
	}
	// The numbers' texts share one buffer: a value each would be two or
	// three allocations a reading, most of a scan's time.
	var m int64
	arena := make([]byte, 0, n*(len(qPrefix)+len(qSuffix)+8))
	for i := range out {
		if kinds[i] != kindNumber && kinds[i] != kindQuantity {
			continue
		}
		dec := int(r.byte())
		m += r.varint()
		start := len(arena)
		if kinds[i] == kindQuantity {
			arena = append(arena, qPrefix...)
		}
		arena = appendDecimal(arena, m, dec)
		if kinds[i] == kindQuantity {
			arena = append(arena, qSuffix...)
		}
		out[i].Value = json.RawMessage(arena[start:len(arena):len(arena)])
	}
	for i := range out {
		switch kinds[i] {
		case kindError:
			out[i].Error = &schema.SampleError{Kind: schema.ErrorKind(r.str()), Message: r.str()}
		case kindRaw:
			out[i].Value = json.RawMessage(r.bytes())
		}
		switch humans[i] {
		case humanFrozen:
			out[i].Human, _ = frozenHuman(out[i].Value)
		case humanDerived:
			out[i].Human = schema.Format(sensor, out[i].Value)
		case humanText:
			out[i].Human = r.str()
		}
		if members := r.uvarint(); members > 0 && members < 1<<16 {
			out[i].Extra = make(map[string]json.RawMessage, members)
			for ; members > 0; members-- {
				k := r.str()
				out[i].Extra[k] = json.RawMessage(r.bytes())
			}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// Merge merges sorted new readings into sorted old ones; a new
// reading at the time of an existing one is a duplicate and left out. It
// returns the merged list and, per new reading, whether it was inserted.
func Merge(old, add []schema.Reading) ([]schema.Reading, []bool) {
	out := make([]schema.Reading, 0, len(old)+len(add))
	inserted := make([]bool, len(add))
	i, j := 0, 0
	for i < len(old) || j < len(add) {
		switch {
		case j >= len(add) || i < len(old) && old[i].Time.Before(add[j].Time):
			out = append(out, old[i])
			i++
		case i < len(old) && old[i].Time.Equal(add[j].Time):
			j++ // duplicate: the first write wins
		default:
			if len(out) > 0 && out[len(out)-1].Time.Equal(add[j].Time) {
				j++ // duplicate within the batch
				continue
			}
			out = append(out, add[j])
			inserted[j] = true
			j++
		}
	}
	return out, inserted
}

// SortByTime sorts readings by time, keeping batch order among equal times
// so that the first of duplicates wins.
func SortByTime(rs []schema.Reading) {
	sort.SliceStable(rs, func(a, b int) bool { return rs[a].Time.Before(rs[b].Time) })
}
