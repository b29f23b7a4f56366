package chunk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// Summary is the count and sum of a chunk's numeric readings per period:
// what a mean over long windows needs, without decoding the chunk. It is
// kept beside the chunk, never inside it, and names the chunk it was made
// from by a checksum, so a summary that no longer matches its chunk is
// known and not used.
type Summary struct {
	Period      time.Duration
	Unit, Title string
	// First and Last are the times of the chunk's first and last reading
	// (milliseconds since the epoch).
	First, Last int64
	Rows        []SummaryRow
	// Check is the CRC-32C of the encoded chunk the summary describes.
	Check uint32
}

// SummaryRow is one period's count and sum; Start is a multiple of the
// period, in milliseconds since the epoch.
type SummaryRow struct {
	Start int64
	Count uint64
	Sum   float64
}

const summaryFormat = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the checksum a summary names its chunk by.
func Checksum(encoded []byte) uint32 { return crc32.Checksum(encoded, castagnoli) }

// Summarize returns the summary of rs (sorted by time), encoded as
// encoded. It reports false when the readings counted differ in unit or
// title, which a summary cannot say: such a chunk is read reading by
// reading. Readings with an error or a value without a number
// (schema.Numeric) are not counted.
func Summarize(rs []schema.Reading, encoded []byte, period time.Duration) (Summary, bool) {
	if len(rs) == 0 || period <= 0 {
		return Summary{}, false
	}
	p := period.Milliseconds()
	s := Summary{Period: period, First: rs[0].Time.UnixMilli(), Last: rs[len(rs)-1].Time.UnixMilli(), Check: Checksum(encoded)}
	counted := false
	for i := range rs {
		r := &rs[i]
		if r.Error != nil {
			continue
		}
		v, ok := schema.Numeric(r.Value)
		if !ok {
			continue
		}
		unit := ""
		if q, ok := schema.ParseQuantity(r.Value); ok {
			unit = q.Unit
		}
		if !counted {
			s.Unit, s.Title, counted = unit, r.Title, true
		} else if unit != s.Unit || r.Title != s.Title {
			return Summary{}, false
		}
		ms := r.Time.UnixMilli()
		start := ms - ((ms%p)+p)%p
		if n := len(s.Rows); n > 0 && s.Rows[n-1].Start == start {
			s.Rows[n-1].Count++
			s.Rows[n-1].Sum += v
			continue
		}
		s.Rows = append(s.Rows, SummaryRow{Start: start, Count: 1, Sum: v})
	}
	return s, true
}

// Append appends s encoded.
func (s Summary) Append(b []byte) []byte {
	b = append(b, summaryFormat)
	b = binary.AppendUvarint(b, uint64(s.Period.Milliseconds()))
	b = binary.BigEndian.AppendUint32(b, s.Check)
	b = binary.AppendVarint(b, s.First)
	b = binary.AppendUvarint(b, uint64(s.Last-s.First))
	b = binary.AppendUvarint(b, uint64(len(s.Unit)))
	b = append(b, s.Unit...)
	b = binary.AppendUvarint(b, uint64(len(s.Title)))
	b = append(b, s.Title...)
	b = binary.AppendUvarint(b, uint64(len(s.Rows)))
	prev := s.First
	for _, r := range s.Rows {
		b = binary.AppendVarint(b, r.Start-prev)
		prev = r.Start
		b = binary.AppendUvarint(b, r.Count)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(r.Sum))
	}
	return b
}

// DecodeSummary reads a summary written by Append.
func DecodeSummary(b []byte) (Summary, error) {
	var s Summary
	err := s.Decode(b)
	return s, err
}

// Decode reads a summary written by Append into s, reusing its rows and,
// when they are the same, its unit and title: a long scan reads
// thousands of summaries of one series.
func (s *Summary) Decode(b []byte) error {
	r := &chunkReader{b: b}
	if r.byte() != summaryFormat {
		return fmt.Errorf("%w: unknown summary format", ErrCorrupt)
	}
	s.Period = time.Duration(r.uvarint()) * time.Millisecond
	s.Check = r.uint32()
	s.First = r.varint()
	s.Last = s.First + int64(r.uvarint())
	if u := r.bytes(); string(u) != s.Unit {
		s.Unit = string(u)
	}
	if t := r.bytes(); string(t) != s.Title {
		s.Title = string(t)
	}
	n := r.uvarint()
	if n > MaxReadings*4 {
		return fmt.Errorf("%w: %d summary rows", ErrCorrupt, n)
	}
	prev := s.First
	s.Rows = s.Rows[:0]
	for range n {
		row := SummaryRow{Start: prev + r.varint()}
		prev = row.Start
		row.Count = r.uvarint()
		row.Sum = math.Float64frombits(r.uint64())
		s.Rows = append(s.Rows, row)
	}
	return r.err
}
