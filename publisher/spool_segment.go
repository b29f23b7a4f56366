package publisher

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strconv"
	"strings"
)

// The spool's segments. A segment is a file <first seq, 20 digits>.seg in
// the spool directory:
//
//	header (64 bytes): magic "APDSPOOL", u32 version (1), u64 first seq,
//	                   u8 length and the spool id (up to 32 bytes), zeros,
//	                   u32 CRC-32C of the 60 bytes before it
//	records, back to back, from offset 64:
//	  u32 length of the body, u32 CRC-32C of the body, body
//	  body: u64 first seq, u32 count, then count readings:
//	        u16 length and the sensor name, u32 length and the JSON payload
//
// Integers are little-endian. One record holds one Append (a tick's
// readings), so one write and at most one sync per tick.
//
// A segment is preallocated (zeros) when it is made, so the reader stops
// at the first record whose length is zero or whose checksum fails: a
// torn write. Nothing after such a record can have been synced, because a
// sync covers everything written before it; and nothing is ever written
// after it either (see scanSegment's clean tail).
//
// The header's first seq is the seq counter when the segment was made, so
// a segment without records still carries the counter: the spool always
// keeps one segment for that reason. Its spool id is that of the spool
// that made it, for whoever examines the files; the state file holds the
// spool's current one.
const (
	segmentMagic      = "APDSPOOL"
	segmentVersion    = 1
	segmentHeaderSize = 64
	segmentExt        = ".seg"
	maxSpoolIDLen     = 32
	frameHeaderSize   = 8
	recordFixedSize   = 12 // first seq, count
	readingOverhead   = 6  // the lengths of sensor and payload
)

var spoolCRC = crc32.MakeTable(crc32.Castagnoli)

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentExt) }

// parseSegmentName returns the first seq a segment's name says.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

func encodeSegmentHeader(first uint64, id string) []byte {
	b := make([]byte, segmentHeaderSize)
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint32(b[8:], segmentVersion)
	binary.LittleEndian.PutUint64(b[12:], first)
	b[20] = byte(len(id))
	copy(b[21:21+maxSpoolIDLen], id)
	binary.LittleEndian.PutUint32(b[60:], crc32.Checksum(b[:60], spoolCRC))
	return b
}

var errBadSegmentHeader = errors.New("bad segment header")

func decodeSegmentHeader(b []byte) (first uint64, id string, err error) {
	if len(b) < segmentHeaderSize || string(b[:8]) != segmentMagic ||
		binary.LittleEndian.Uint32(b[60:]) != crc32.Checksum(b[:60], spoolCRC) {
		return 0, "", errBadSegmentHeader
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != segmentVersion {
		return 0, "", fmt.Errorf("segment version %d, this build reads %d", v, segmentVersion)
	}
	n := int(b[20])
	if n > maxSpoolIDLen {
		return 0, "", errBadSegmentHeader
	}
	return binary.LittleEndian.Uint64(b[12:]), string(b[21 : 21+n]), nil
}

// recordIndex is what the spool keeps in memory of one record: 12 bytes,
// so that a full 64 MiB spool of one-reading ticks (about 300,000
// records) costs a few MiB. The record's length follows from the next
// record's offset (or the segment's end), its count of content bytes
// from its length and count (contentBytes).
type recordIndex struct {
	off   uint32 // of the frame in the segment
	seq   uint32 // first seq, relative to the segment's first
	count uint32
}

// contentBytes is what a record of frame length n and count readings
// holds by the spool's measure of its size: per reading, the sensor's
// name, one byte and the payload (the measure of the bbolt spool before
// it, so spool_max_bytes bounds the same thing).
func contentBytes(n int64, count uint32) int64 {
	return n - frameHeaderSize - recordFixedSize - int64(count)*(readingOverhead-1)
}

// recordBuilder encodes one record in a fresh buffer.
type recordBuilder struct {
	buf      []byte
	count    uint32
	payloads [][2]int // offsets of each payload in buf
}

func newRecordBuilder(first uint64, sizeHint int) *recordBuilder {
	b := &recordBuilder{buf: make([]byte, frameHeaderSize+recordFixedSize, frameHeaderSize+recordFixedSize+sizeHint)}
	binary.LittleEndian.PutUint64(b.buf[frameHeaderSize:], first)
	return b
}

// add appends a reading whose payload appendPayload writes.
func (b *recordBuilder) add(sensor string, appendPayload func([]byte) []byte) error {
	if len(sensor) > math.MaxUint16 {
		return fmt.Errorf("sensor name of %d bytes", len(sensor))
	}
	b.buf = binary.LittleEndian.AppendUint16(b.buf, uint16(len(sensor)))
	b.buf = append(b.buf, sensor...)
	at := len(b.buf)
	b.buf = append(b.buf, 0, 0, 0, 0)
	b.buf = appendPayload(b.buf)
	binary.LittleEndian.PutUint32(b.buf[at:], uint32(len(b.buf)-at-4))
	b.payloads = append(b.payloads, [2]int{at + 4, len(b.buf)})
	b.count++
	return nil
}

// frame finishes the record: count, length and checksum.
func (b *recordBuilder) frame() ([]byte, error) {
	body := b.buf[frameHeaderSize:]
	if len(body) > math.MaxInt32 {
		return nil, fmt.Errorf("record of %d bytes", len(body))
	}
	binary.LittleEndian.PutUint32(body[8:], b.count)
	binary.LittleEndian.PutUint32(b.buf, uint32(len(body)))
	binary.LittleEndian.PutUint32(b.buf[4:], crc32.Checksum(body, spoolCRC))
	return b.buf, nil
}

// payload returns the i-th reading's payload, within the frame.
func (b *recordBuilder) payload(i int) []byte {
	return b.buf[b.payloads[i][0]:b.payloads[i][1]:b.payloads[i][1]]
}

var errBadRecord = errors.New("spool record does not read")

// checkFrame verifies a whole frame (header and body) and returns its body.
func checkFrame(frame []byte) ([]byte, error) {
	if len(frame) < frameHeaderSize {
		return nil, errBadRecord
	}
	n := binary.LittleEndian.Uint32(frame)
	body := frame[frameHeaderSize:]
	if n == 0 || int64(n) != int64(len(body)) || binary.LittleEndian.Uint32(frame[4:]) != crc32.Checksum(body, spoolCRC) {
		return nil, errBadRecord
	}
	return body, nil
}

// decodeRecord calls fn with each reading of a record's body, its
// sensor and payload aliasing body. It returns the first seq and the
// count, and errBadRecord when the body's structure is wrong.
func decodeRecord(body []byte, fn func(seq uint64, sensor, payload []byte)) (first uint64, count uint32, err error) {
	if len(body) < recordFixedSize {
		return 0, 0, errBadRecord
	}
	first, count = binary.LittleEndian.Uint64(body), binary.LittleEndian.Uint32(body[8:])
	if count == 0 || first == 0 || first > math.MaxUint64-uint64(count) {
		return 0, 0, errBadRecord
	}
	rest := body[recordFixedSize:]
	for i := range uint64(count) {
		if len(rest) < 2 {
			return 0, 0, errBadRecord
		}
		n := int(binary.LittleEndian.Uint16(rest))
		if len(rest) < 2+n+4 {
			return 0, 0, errBadRecord
		}
		sensor := rest[2 : 2+n]
		rest = rest[2+n:]
		m := binary.LittleEndian.Uint32(rest)
		if uint64(len(rest)-4) < uint64(m) {
			return 0, 0, errBadRecord
		}
		payload := rest[4 : 4+m]
		rest = rest[4+m:]
		if fn != nil {
			fn(first+i, sensor, payload)
		}
	}
	if len(rest) != 0 {
		return 0, 0, errBadRecord
	}
	return first, count, nil
}

// segmentScan is what reading a segment file found.
type segmentScan struct {
	first uint64
	id    string
	recs  []recordIndex
	end   int64  // offset just past the last valid record
	next  uint64 // one past the last valid record's last seq (first when none)
	// cleanTail: everything from end to the end of the file is zero, so
	// the segment may be appended to. A torn record, or a record that
	// reached the disk while one before it did not, leaves bytes there
	// that a later append must never make part of the log again (one
	// shorter record written over a torn one could expose an old record
	// behind it as valid).
	cleanTail bool
}

// scanSegment reads a segment's header and records up to the first that
// does not read (a torn write ends the log), and with checkTail whether
// the rest of the file is clean. It returns errBadSegmentHeader (or a
// version error) when the header does not read.
func scanSegment(f SpoolFile, checkTail bool) (segmentScan, error) {
	size, err := f.Size()
	if err != nil {
		return segmentScan{}, err
	}
	header := make([]byte, segmentHeaderSize)
	if size < segmentHeaderSize {
		return segmentScan{}, errBadSegmentHeader
	}
	if _, err := f.ReadAt(header, 0); err != nil {
		return segmentScan{}, err
	}
	first, id, err := decodeSegmentHeader(header)
	if err != nil {
		return segmentScan{}, err
	}
	sc := segmentScan{first: first, id: id, end: segmentHeaderSize, next: first}
	r := bufio.NewReaderSize(io.NewSectionReader(f, segmentHeaderSize, size-segmentHeaderSize), 64<<10)
	frame := make([]byte, 0, 4096)
	for sc.end+frameHeaderSize <= size && sc.end <= math.MaxUint32 {
		frame = frame[:frameHeaderSize]
		if _, err := io.ReadFull(r, frame); err != nil {
			return sc, err
		}
		n := int64(binary.LittleEndian.Uint32(frame))
		if n == 0 || sc.end+frameHeaderSize+n > size {
			break
		}
		if int64(cap(frame)) < frameHeaderSize+n {
			frame = append(make([]byte, 0, frameHeaderSize+n), frame...)
		}
		frame = frame[:frameHeaderSize+n]
		if _, err := io.ReadFull(r, frame[frameHeaderSize:]); err != nil {
			return sc, err
		}
		body, err := checkFrame(frame)
		if err != nil {
			break
		}
		seq, count, err := decodeRecord(body, nil)
		// Seqs rise from record to record; one that does not is not ours.
		if err != nil || seq < sc.next || seq-first > math.MaxUint32 {
			break
		}
		sc.recs = append(sc.recs, recordIndex{off: uint32(sc.end), seq: uint32(seq - first), count: count})
		sc.end += frameHeaderSize + n
		sc.next = seq + uint64(count)
	}
	if checkTail {
		sc.cleanTail, err = zeroFrom(f, sc.end, size)
		if err != nil {
			return sc, err
		}
	}
	return sc, nil
}

// zeroFrom reports whether f holds only zeros from off to size.
func zeroFrom(f SpoolFile, off, size int64) (bool, error) {
	buf, zeros := make([]byte, 32<<10), make([]byte, 32<<10)
	for off < size {
		n := int(min(int64(len(buf)), size-off))
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return false, err
		}
		if !bytes.Equal(buf[:n], zeros[:n]) {
			return false, nil
		}
		off += int64(n)
	}
	return true, nil
}
