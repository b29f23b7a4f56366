package chunk

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Rows are the head's form of a series' readings: appendable, not
// compressed, each row written against the one before it (RowState), so
// adding a reading costs its own few bytes whatever the series already
// holds. A chunk is written once, when a series' head is sealed; rows are
// what the write-ahead log and the in-memory head keep until then.
//
// A row:
//
//	varint   ms since the previous row minus the previous row's (the
//	         first: since the epoch); regular ticks take a byte
//	varint   seq minus the previous row's
//	byte     flags (row* below)
//	value:   rowQuantity: the magnitude — with rowDecimal a decimals byte
//	         and the mantissa's change (21.3 → 213), else its text — and
//	         the unit's JSON text when rowUnit; rowError: kind and
//	         message; else the raw value
//	title    when rowTitle (else the previous row's)
//	human    when rowHumanText (rowHumanFrozen: frozenHuman of the value)
//	extra    when rowExtra: count, then name and value pairs
//
// Every field round-trips byte for byte: a quantity is split where its
// text is {"magnitude":<m>,"unit":<u>} and put back together the same.
const (
	rowError       = 1 << 0
	rowTitle       = 1 << 1
	rowQuantity    = 1 << 2
	rowUnit        = 1 << 3
	rowHumanText   = 1 << 4
	rowHumanFrozen = 1 << 5
	rowExtra       = 1 << 6
	rowDecimal     = 1 << 7
)

// RowState is what a row is written against: the previous row of the
// same run. The zero value starts a run.
type RowState struct {
	t, d  int64 // time and the step to it, ms
	m     int64 // mantissa of the last decimal magnitude
	seq   uint64
	title string
	unit  string // a quantity's unit as JSON text, quotes included
}

var (
	quantityOpen = []byte(`{"magnitude":`)
	quantityUnit = []byte(`,"unit":`)
)

// splitQuantity splits a value of the form {"magnitude":<m>,"unit":<u>}.
func splitQuantity(v []byte) (magnitude, unit []byte, ok bool) {
	if !bytes.HasPrefix(v, quantityOpen) || len(v) < len(quantityOpen)+len(quantityUnit)+2 || v[len(v)-1] != '}' {
		return nil, nil, false
	}
	body := v[len(quantityOpen) : len(v)-1]
	i := bytes.Index(body, quantityUnit)
	if i <= 0 {
		return nil, nil, false
	}
	magnitude, unit = body[:i], body[i+len(quantityUnit):]
	if bytes.ContainsAny(magnitude, `"{}[],`) || len(unit) < 2 || unit[0] != '"' || bytes.IndexByte(unit[1:], '"') != len(unit)-2 {
		return nil, nil, false
	}
	return magnitude, unit, true
}

// AppendRow appends r as a row written against st, and moves st on.
func AppendRow(b []byte, st *RowState, r *schema.Reading) []byte {
	t := r.Time.UnixMilli()
	d := t - st.t
	b = binary.AppendVarint(b, d-st.d)
	b = binary.AppendVarint(b, int64(r.Seq-st.seq))
	st.t, st.d, st.seq = t, d, r.Seq
	var flags byte
	var magnitude, unit []byte
	var mantissa int64
	var decimals int
	switch {
	case r.Error != nil:
		flags |= rowError
	default:
		var ok bool
		if magnitude, unit, ok = splitQuantity(r.Value); ok {
			flags |= rowQuantity
			if m, dec, ok := decimal(magnitude); ok {
				flags |= rowDecimal
				mantissa, decimals = m, dec
			}
			if string(unit) != st.unit {
				flags |= rowUnit
			}
		}
	}
	if r.Title != st.title {
		flags |= rowTitle
	}
	if r.Human != "" {
		flags |= rowHumanText
		if r.Error == nil {
			if implied, ok := frozenHuman(r.Value); ok && implied == r.Human {
				flags ^= rowHumanText | rowHumanFrozen
			}
		}
	}
	if len(r.Extra) > 0 {
		flags |= rowExtra
	}
	b = append(b, flags)
	switch {
	case flags&rowError != 0:
		b = appendString(b, string(r.Error.Kind))
		b = appendString(b, r.Error.Message)
	case flags&rowQuantity != 0:
		if flags&rowDecimal != 0 {
			b = append(b, byte(decimals))
			b = binary.AppendVarint(b, mantissa-st.m)
			st.m = mantissa
		} else {
			b = appendBytes(b, magnitude)
		}
		if flags&rowUnit != 0 {
			b = appendBytes(b, unit)
			st.unit = string(unit)
		}
	default:
		b = appendBytes(b, r.Value)
	}
	if flags&rowTitle != 0 {
		b = appendString(b, r.Title)
		st.title = r.Title
	}
	if flags&rowHumanText != 0 {
		b = appendString(b, r.Human)
	}
	if flags&rowExtra != 0 {
		b = binary.AppendUvarint(b, uint64(len(r.Extra)))
		names := make([]string, 0, len(r.Extra))
		for k := range r.Extra {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			b = appendString(b, k)
			b = appendBytes(b, r.Extra[k])
		}
	}
	return b
}

func appendBytes(b, p []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(p))), p...)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// RowTime returns the time of the row at the start of b, written against
// st, without decoding the rest of it.
func RowTime(b []byte, st *RowState) (time.Time, bool) {
	dd, n := binary.Varint(b)
	if n <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(st.t + st.d + dd).UTC(), true
}

// ReadRow decodes the row at the start of b into r (whose Host and Sensor
// are left as they are), moves st on, and returns the rest of b.
func ReadRow(b []byte, st *RowState, r *schema.Reading) ([]byte, error) {
	rd := &chunkReader{b: b}
	d := st.d + rd.varint()
	t := st.t + d
	seq := st.seq + uint64(rd.varint())
	flags := rd.byte()
	if rd.err != nil {
		return nil, fmt.Errorf("%w: row", ErrCorrupt)
	}
	st.t, st.d, st.seq = t, d, seq
	r.Time, r.Seq = time.UnixMilli(t).UTC(), seq
	r.Value, r.Error, r.Human, r.Extra = nil, nil, "", nil
	switch {
	case flags&rowError != 0:
		r.Error = &schema.SampleError{Kind: schema.ErrorKind(rd.str()), Message: rd.str()}
	case flags&rowQuantity != 0:
		var magnitude []byte
		if flags&rowDecimal != 0 {
			dec := int(rd.byte())
			st.m += rd.varint()
			if dec > 19 {
				return nil, fmt.Errorf("%w: row with %d decimals", ErrCorrupt, dec)
			}
			magnitude = []byte(formatDecimal(st.m, dec))
		} else {
			magnitude = rd.bytes()
		}
		if flags&rowUnit != 0 {
			st.unit = rd.str()
		}
		v := make(json.RawMessage, 0, len(quantityOpen)+len(magnitude)+len(quantityUnit)+len(st.unit)+1)
		v = append(append(append(append(append(v, quantityOpen...), magnitude...), quantityUnit...), st.unit...), '}')
		r.Value = v
	default:
		r.Value = json.RawMessage(bytes.Clone(rd.bytes()))
	}
	if flags&rowTitle != 0 {
		st.title = rd.str()
	}
	r.Title = st.title
	switch {
	case flags&rowHumanText != 0:
		r.Human = rd.str()
	case flags&rowHumanFrozen != 0:
		r.Human, _ = frozenHuman(r.Value)
	}
	if flags&rowExtra != 0 {
		members := rd.uvarint()
		if members >= 1<<16 {
			return nil, fmt.Errorf("%w: row with %d members", ErrCorrupt, members)
		}
		r.Extra = make(map[string]json.RawMessage, members)
		for ; members > 0 && rd.err == nil; members-- {
			k := rd.str()
			r.Extra[k] = json.RawMessage(bytes.Clone(rd.bytes()))
		}
	}
	if rd.err != nil {
		return nil, fmt.Errorf("%w: row", ErrCorrupt)
	}
	return rd.b, nil
}

// ReadRows decodes n rows of one series from b, written as one run.
func ReadRows(host, sensor string, b []byte, n int) ([]schema.Reading, []byte, error) {
	out := make([]schema.Reading, n)
	var st RowState
	for i := range out {
		out[i].Host, out[i].Sensor = host, sensor
		var err error
		if b, err = ReadRow(b, &st, &out[i]); err != nil {
			return nil, nil, err
		}
	}
	return out, b, nil
}

// AppendRun appends the n rows at the start of src — one run, written from
// a zero RowState — to dst, written against st, and moves st on: what
// decoding each row and appending it again would give, without building
// the readings (replaying a write-ahead log is mostly this). It returns
// the rest of src, the times (ms) of the first and last rows, and whether
// the times strictly increase.
func AppendRun(dst []byte, st *RowState, src []byte, n int) (out, rest []byte, first, last int64, increasing bool, err error) {
	rd := &chunkReader{b: src}
	var s RowState
	increasing = true
	for i := 0; i < n; i++ {
		d := s.d + rd.varint()
		t := s.t + d
		seq := s.seq + uint64(rd.varint())
		flags := rd.byte()
		if rd.err != nil {
			return nil, nil, 0, 0, false, fmt.Errorf("%w: row", ErrCorrupt)
		}
		if i == 0 {
			first = t
		} else if t <= last {
			increasing = false
		}
		last = t
		s.t, s.d, s.seq = t, d, seq

		nd := t - st.t
		dst = binary.AppendVarint(dst, nd-st.d)
		dst = binary.AppendVarint(dst, int64(seq-st.seq))
		st.t, st.d, st.seq = t, nd, seq
		at := len(dst)
		outFlags := flags &^ (rowTitle | rowUnit)
		dst = append(dst, 0) // the flags, once known
		switch {
		case flags&rowError != 0:
			dst = appendBytes(dst, rd.bytes())
			dst = appendBytes(dst, rd.bytes())
		case flags&rowQuantity != 0:
			if flags&rowDecimal != 0 {
				dec := rd.byte()
				s.m += rd.varint()
				if dec > 19 {
					return nil, nil, 0, 0, false, fmt.Errorf("%w: row with %d decimals", ErrCorrupt, dec)
				}
				dst = append(dst, dec)
				dst = binary.AppendVarint(dst, s.m-st.m)
				st.m = s.m
			} else {
				dst = appendBytes(dst, rd.bytes())
			}
			if flags&rowUnit != 0 {
				if u := rd.bytes(); string(u) != s.unit {
					s.unit = string(u)
				}
			}
			if s.unit != st.unit {
				outFlags |= rowUnit
				dst = appendString(dst, s.unit)
				st.unit = s.unit
			}
		default:
			dst = appendBytes(dst, rd.bytes())
		}
		if flags&rowTitle != 0 {
			if title := rd.bytes(); string(title) != s.title {
				s.title = string(title)
			}
		}
		if s.title != st.title {
			outFlags |= rowTitle
			dst = appendString(dst, s.title)
			st.title = s.title
		}
		if flags&rowHumanText != 0 {
			dst = appendBytes(dst, rd.bytes())
		}
		if flags&rowExtra != 0 {
			members := rd.uvarint()
			if members >= 1<<16 {
				return nil, nil, 0, 0, false, fmt.Errorf("%w: row with %d members", ErrCorrupt, members)
			}
			dst = binary.AppendUvarint(dst, members)
			for ; members > 0 && rd.err == nil; members-- {
				dst = appendBytes(dst, rd.bytes())
				dst = appendBytes(dst, rd.bytes())
			}
		}
		if rd.err != nil {
			return nil, nil, 0, 0, false, fmt.Errorf("%w: row", ErrCorrupt)
		}
		dst[at] = outFlags
	}
	return dst, rd.b, first, last, increasing, nil
}
