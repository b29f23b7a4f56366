package boltdb

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/chunk"
	"github.com/apd-telemetry/apd/schema"
)

// The write-ahead file (<db>-wal) is what makes a small server kind to an
// SD card. A bbolt commit rewrites every page on the path to each key it
// touches — the log bucket, the host records, the freelist, a meta page —
// and fsyncs: measured, 20–30 KiB per commit for a home fleet, 6.5 GB a
// day. With deferred commits (Options.CheckpointEvery), a commit that
// only appends readings to open heads applies them to a bbolt write
// transaction that stays open, and is made durable by one record
// appended to this file and one fdatasync: one page. The transaction is
// committed — a checkpoint — every CheckpointEvery, when a commit does
// anything readers must see in the file (a seal, a new series, a dead
// letter), and before any other write, backup or close; the file is then
// emptied. Open applies the records a crash left behind.
//
// Readers see deferred commits as they see any other: their readings in
// the head (memory) and their host records through the overlay
// (hosts.go); nothing else a deferred commit changes is read outside the
// writer's own transaction.
//
// This is the shape of Prometheus TSDB's WAL beside its blocks and of
// SQLite's WAL beside its B-tree; the difference is that records are
// logical (the batch's readings, replayed through the same commit code),
// so the file stays a few hundred bytes a tick.
//
// A record starts on a page boundary, and the file is preallocated: each
// commit then dirties one page. Measured on ext4 with /proc/self/io, a
// 1 KB record and an fdatasync cost 4 KiB this way, 5 KiB appended
// after the previous record (its page dirtied again), and 8 KiB written
// past the end of the file.
//
// The body is compressed (DEFLATE, fastest level): a home fleet's tick
// of 130 readings is 12.6 KB of rows, most of it the human texts and
// titles, and 3 pages where 1 will do.
//
//	record: u32 length, u32 CRC-32C of the compressed body, compressed body
//	body:   uvarint generation, varint commit time (ms), aggregator name,
//	        statuses: count, then host and $status JSON each,
//	        then per series: sensor, host, count, rows (chunk.AppendRow)
//
// The generation is the deferred transaction's: a checkpoint stores the
// generation it applied in meta/wal_applied in the same transaction. After
// a checkpoint the file is written again from its start, over the records
// of earlier generations, which are skipped when read: the file keeps
// its blocks, and no record is applied twice.
const walPage = 4096

// walMaxBytes bounds the write-ahead file: past it, a checkpoint.
// walAlloc is the step it is preallocated in.
const (
	walMaxBytes = 8 << 20
	walAlloc    = 1 << 20
)

var keyWALApplied = []byte("wal_applied")

var walCRC = crc32.MakeTable(crc32.Castagnoli)

// errWAL wraps a write-ahead record that does not read.
var errWAL = errors.New("write-ahead file record does not read")

// walFile is the open write-ahead file.
type walFile struct {
	f      *os.File
	path   string
	off    int64 // where the next record goes: a page boundary
	size   int64 // preallocated
	noSync bool  // Options.NoSync: tests only
	zip    *flate.Writer
	zipped bytes.Buffer
}

func walPath(db string) string { return db + "-wal" }

func openWAL(path string) (*walFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open write-ahead file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open write-ahead file: %w", err)
	}
	return &walFile{f: f, path: path, size: fi.Size()}, nil
}

// append writes a record at the next page boundary and syncs its data.
func (w *walFile) append(raw []byte) error {
	w.zipped.Reset()
	w.zipped.Write(make([]byte, 8))
	if w.zip == nil {
		w.zip, _ = flate.NewWriter(&w.zipped, flate.BestSpeed) // the level is valid
	} else {
		w.zip.Reset(&w.zipped)
	}
	if _, err := w.zip.Write(raw); err != nil {
		return fmt.Errorf("write-ahead file: %w", err)
	}
	if err := w.zip.Close(); err != nil {
		return fmt.Errorf("write-ahead file: %w", err)
	}
	rec := w.zipped.Bytes()
	body := rec[8:]
	binary.LittleEndian.PutUint32(rec[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(body, walCRC))
	if need := w.off + roundPage(int64(len(rec))); need > w.size {
		size := (need + walAlloc - 1) / walAlloc * walAlloc
		if err := preallocate(w.f, size); err != nil {
			return fmt.Errorf("write-ahead file: preallocate: %w", err)
		}
		w.size = size
	}
	if _, err := w.f.WriteAt(rec, w.off); err != nil {
		return fmt.Errorf("write-ahead file: %w", err)
	}
	if w.noSync {
		w.off += roundPage(int64(len(rec)))
		return nil
	}
	if err := fdatasync(w.f); err != nil {
		return fmt.Errorf("write-ahead file: sync: %w", err)
	}
	w.off += roundPage(int64(len(rec)))
	return nil
}

// reset starts writing at the beginning again, after a checkpoint. The
// next record's header must not be read as a stale one's: it is written
// now, empty, so that a reader stops there until the next record.
func (w *walFile) reset() error {
	if w.off == 0 {
		return nil
	}
	w.off = 0
	if _, err := w.f.WriteAt(make([]byte, 8), 0); err != nil {
		return fmt.Errorf("empty write-ahead file: %w", err)
	}
	return nil
}

func (w *walFile) close() error { return w.f.Close() }

func roundPage(n int64) int64 { return (n + walPage - 1) / walPage * walPage }

// walRecord is one deferred commit, as read back.
type walRecord struct {
	gen        uint64
	now        time.Time
	aggregator string
	statuses   []store.StatusUpdate
	readings   []schema.Reading
}

// encodeWALRecord encodes a deferred commit's batch: its statuses, and
// its readings grouped by series, as head rows.
func encodeWALRecord(gen uint64, now time.Time, b *store.Batch) ([]byte, error) {
	body := binary.AppendUvarint(nil, gen)
	body = binary.AppendVarint(body, now.UnixMilli())
	body = appendLogString(body, b.Aggregator)
	body = binary.AppendUvarint(body, uint64(len(b.Statuses)))
	for _, st := range b.Statuses {
		j, err := json.Marshal(st.Status)
		if err != nil {
			return nil, fmt.Errorf("status of %s: %w", st.Host, err)
		}
		body = appendLogString(body, st.Host)
		body = appendLogString(body, string(j))
	}
	idx := make([]int, len(b.Readings))
	for i := range idx {
		idx[i] = i
	}
	rs := b.Readings
	sort.SliceStable(idx, func(i, j int) bool {
		a, c := &rs[idx[i]], &rs[idx[j]]
		if a.Sensor != c.Sensor {
			return a.Sensor < c.Sensor
		}
		return a.Host < c.Host
	})
	for start := 0; start < len(idx); {
		end := start + 1
		first := &rs[idx[start]]
		for end < len(idx) && rs[idx[end]].Sensor == first.Sensor && rs[idx[end]].Host == first.Host {
			end++
		}
		body = appendLogString(body, first.Sensor)
		body = appendLogString(body, first.Host)
		body = binary.AppendUvarint(body, uint64(end-start))
		var st chunk.RowState
		for _, i := range idx[start:end] {
			body = chunk.AppendRow(body, &st, &rs[i])
		}
		start = end
	}
	return body, nil
}

func decodeWALRecord(body []byte) (walRecord, error) {
	rd := &logReader{b: body}
	rec := walRecord{gen: rd.uvarint()}
	rec.now = time.UnixMilli(rd.varint()).UTC()
	rec.aggregator = string(rd.bytes())
	n := rd.uvarint()
	for i := uint64(0); i < n && rd.err == nil; i++ {
		st := store.StatusUpdate{Host: string(rd.bytes())}
		if err := json.Unmarshal(rd.bytes(), &st.Status); rd.err == nil && err != nil {
			return walRecord{}, fmt.Errorf("%w: status of %s: %v", errWAL, st.Host, err)
		}
		rec.statuses = append(rec.statuses, st)
	}
	for rd.err == nil && len(rd.b) > 0 {
		sensor := string(rd.bytes())
		host := string(rd.bytes())
		n := rd.uvarint()
		if rd.err != nil || n > uint64(len(rd.b)) {
			return walRecord{}, errWAL
		}
		rs, rest, err := chunk.ReadRows(host, sensor, rd.b, int(n))
		if err != nil {
			return walRecord{}, fmt.Errorf("%w: %v", errWAL, err)
		}
		rd.b = rest
		rec.readings = append(rec.readings, rs...)
	}
	if rd.err != nil {
		return walRecord{}, errWAL
	}
	return rec, nil
}

// readWAL returns the records of the write-ahead file at path with a
// generation above applied, in order. It stops at the first record that
// is not whole (a write a crash cut short): nothing after it was synced,
// since every record is synced before the next is written.
func readWAL(path string, applied uint64) ([]walRecord, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read write-ahead file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read write-ahead file: %w", err)
	}
	var out []walRecord
	for off := int64(0); off+8 <= int64(len(data)); {
		n := int64(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n == 0 || off+8+n > int64(len(data)) {
			break
		}
		body := data[off+8 : off+8+n]
		if crc32.Checksum(body, walCRC) != sum {
			break
		}
		raw, err := io.ReadAll(flate.NewReader(bytes.NewReader(body)))
		if err != nil {
			return nil, fmt.Errorf("read write-ahead file at %d: %w: %v", off, errWAL, err)
		}
		rec, err := decodeWALRecord(raw)
		if err != nil {
			return nil, fmt.Errorf("read write-ahead file at %d: %w", off, err)
		}
		if rec.gen > applied {
			out = append(out, rec)
		}
		off += roundPage(8 + n)
	}
	return out, nil
}
