// Package store is apd's storage contract: what every storage engine
// keeps and answers, the types it speaks in, and the rules of the seq
// watermark that make acknowledgements safe. The engines live apart —
// internal/store/boltdb, the embedded default, and internal/store/pgstore
// — each passing the conformance suite in internal/store/storetest, and
// internal/store/engine picks one by a store's location.
//
// What an engine promises, whatever it is built on:
//
//   - A reading is identified by (host, sensor, ts at millisecond): a second
//     write of it is a duplicate, counted and left as it was (the first
//     write wins), so redelivery is harmless.
//   - It keeps what was received, byte for byte: value, title, human text,
//     seq and unknown members. Cleaning happens when reading.
//   - A Commit is atomic and durable when it returns nil: the readings, the
//     statuses, the dead letters and the watermarks move together.
//   - Scans return one series after another (by sensor, then host), each in
//     time order, over half-open ranges [Since, Until); a time range is a
//     seek, not a full scan.
//   - Each host's watermark follows the rules of Advance; an
//     acknowledgement never covers a reading that is not stored.
//   - Dead letters are kept within Limits, the oldest dropped and counted.
//   - Readers (scans, hosts) may run while a commit does, and never hold
//     one up while their caller is slow (a stalled network client). A
//     scan sees every reading committed before it began, once, in order;
//     a long scan may read in pages, each a consistent snapshot.
package store

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/apd-telemetry/apd/schema"
)

// Store is a storage engine. Its methods are safe for concurrent use.
type Store interface {
	Reader
	// Commit writes a batch in one transaction: readings not already
	// stored under (host, sensor, ts) are inserted, duplicates are counted
	// and left as they are; status updates and dead letters are recorded;
	// each host's seq watermark advances (see Advance). Either all of it
	// is durable when Commit returns nil, or none of it is.
	Commit(b *Batch) (CommitResult, error)
	// Delete removes the readings q selects (sensor, hosts, time range)
	// and returns how many; a host left without readings is forgotten.
	Delete(q Query) (int, error)
	// SetHostMeta replaces how host is shown (display name, colour, map
	// location); the zero HostMeta clears it. A host not seen yet is
	// remembered with it, so a deployment can be named before it runs.
	SetHostMeta(host string, m HostMeta) error
	// Size is the space the engine takes, in bytes.
	Size() (int64, error)
	Close() error
}

// Reader is the reading half of a Store, which the query tools and the
// HTTP API need.
type Reader interface {
	// Scan calls fn for each reading q selects, series by series (by
	// sensor, then host), each in time order. fn returning ErrStop ends
	// the scan without an error; any other error ends it with that error.
	Scan(q Query, fn func(*schema.Reading) error) error
	// Hosts returns every host seen, sorted by name.
	Hosts() ([]Host, error)
	// DeadLetters returns up to limit dead letters, newest first.
	DeadLetters(limit int) ([]DeadLetter, error)
	// DeadLetterStats returns how many dead letters are kept and dropped.
	DeadLetterStats() (DeadLetterStats, error)
}

// Backuper is an engine that can write a consistent copy of itself while
// it runs (a bbolt file, a pg_dump).
type Backuper interface {
	// WriteBackup writes the copy to w, telling begin (when not nil) its
	// size first, and returns the bytes written.
	WriteBackup(w io.Writer, begin func(size int64)) (int64, error)
}

// WriteReporter is an engine that counts what it makes durable on its own
// disk (the embedded engine; PostgreSQL's writes are its server's).
type WriteReporter interface {
	WriteStats() WriteStats
}

// WriteStats counts an engine's durable writes since it was opened.
type WriteStats struct {
	// Syncs counts the fsyncs (or fdatasyncs) of commits: each is a
	// write the storage device must finish before acknowledging.
	Syncs uint64
	// Deferred counts commits made durable in a write-ahead file and
	// Checkpoints the commits of the database file that took them.
	Deferred, Checkpoints uint64
}

// HostRestorer is an engine that can take a host's record as another
// engine kept it (apd migrate): state, seq watermark, counts and how it
// is shown, replacing its own.
type HostRestorer interface {
	RestoreHost(name string, rec HostRecord) error
}

// Packer is an engine that keeps the days being written in one layout
// and rewrites finished days into a denser one (PostgreSQL: a row per
// reading, then a block per series and hour). Pack rewrites the days
// that ended more than after ago; the server calls it hourly.
type Packer interface {
	Pack(ctx context.Context, after time.Duration) (PackStats, error)
}

// DefaultPackAfter leaves a day in its write layout for six hours after
// it ends: spools replaying after a short outage still land there.
const DefaultPackAfter = 6 * time.Hour

// PackStats is what one Pack did.
type PackStats struct {
	Days     int // days rewritten
	Readings int // readings moved into the dense layout
}

// Sealer is an engine that holds recent readings in a write-ahead form
// (heads and a log) and can write them all out in their compact form at
// once: a bulk import ends with it.
type Sealer interface {
	SealAll() error
}

// Claimer is an engine on which several aggregators can divide numbered
// partitions of work (a NATS source's stream partitions): PostgreSQL,
// which they all write to. Claims registers this aggregator under name,
// which no running aggregator on the same database may hold.
type Claimer interface {
	Claims(ctx context.Context, name string) (Claims, error)
}

// Claims is one aggregator's share of the partitions, held while it runs.
type Claims interface {
	// Live counts the aggregators running on the database.
	Live(ctx context.Context) (int, error)
	// TryClaim takes partition p if no other aggregator holds it.
	TryClaim(ctx context.Context, p int) (bool, error)
	// Release gives partition p up.
	Release(ctx context.Context, p int) error
	// Alone runs fn while no other aggregator runs an Alone.
	Alone(ctx context.Context, fn func() error) error
	// Close releases every claim and the name.
	Close() error
}

// ErrLocked means another process (a running aggregator) holds the store
// for writing.
var ErrLocked = errors.New("database is in use by another process")

// ErrUnreachable means an engine could not reach where its store is kept
// (a database server down, a wrong address or password). Open returns
// errors wrapping it; the message is the engine's own.
var ErrUnreachable = errors.New("storage unreachable")

// Limits bound what a store keeps beyond readings. The zero value means
// the defaults.
type Limits struct {
	// MaxDeadLetters and MaxDeadBytes bound the dead letters kept: past
	// either, the oldest are dropped (and counted). 0 means
	// DefaultMaxDeadLetters and DefaultMaxDeadBytes.
	MaxDeadLetters int
	MaxDeadBytes   int64
}

// WithDefaults returns l with zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxDeadLetters <= 0 {
		l.MaxDeadLetters = DefaultMaxDeadLetters
	}
	if l.MaxDeadBytes <= 0 {
		l.MaxDeadBytes = DefaultMaxDeadBytes
	}
	return l
}

// Defaults of Limits. Dead letters are for finding out what a device
// sends wrong; the newest few thousand say it, and a device flooding junk
// must not fill the disk.
const (
	DefaultMaxDeadLetters = 10000
	DefaultMaxDeadBytes   = 8 << 20
)

// SensorStats summarises one sensor of one host.
type SensorStats struct {
	Count uint64    `json:"count"`
	Last  time.Time `json:"last"`
}

// Host is what the store knows about one host.
type Host struct {
	Name string `json:"host"`
	// State is the last $status state (online, offline, lost), or empty if
	// the host never published one.
	State     string    `json:"state,omitempty"`
	StateTime time.Time `json:"state_time,omitzero"`
	Version   string    `json:"version,omitempty"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	// Watermark is the seq up to which every reading of the host is
	// committed (or declared lost by the device); MaxSeq the highest seq
	// committed. Readings between them are still awaited.
	Watermark uint64 `json:"watermark"`
	MaxSeq    uint64 `json:"max_seq"`
	// Awaited counts seqs below MaxSeq not committed yet: gaps that a
	// resend may still fill.
	Awaited uint64 `json:"awaited"`
	// Lost counts seqs the device declared dropped from its full spool
	// before they reached the store.
	Lost uint64 `json:"lost"`
	// Spool is the id of the device's current spool (see schema.Status).
	Spool string `json:"spool,omitempty"`
	// HasMark says a floor the device declared took effect.
	HasMark bool `json:"has_mark,omitempty"`
	// PendingFloor is the floor (first_seq − 1) the host's latest $status
	// declared above every seq it had committed: it takes effect once a
	// reading at or above it is committed (see SeqState.PendingFloor).
	// 0 when none waits.
	PendingFloor uint64                  `json:"pending_floor,omitempty"`
	Sensors      map[string]*SensorStats `json:"sensors"`
	// Aggregator is the one that last committed the host's readings, when
	// several share a database and name themselves.
	Aggregator string `json:"aggregator,omitempty"`
	HostMeta
}

// Record is what an engine keeps of the host (for copying it to another).
func (h Host) Record() HostRecord {
	sensors := make(map[string]*SensorStats, len(h.Sensors))
	for k, v := range h.Sensors {
		c := *v
		sensors[k] = &c
	}
	return HostRecord{State: h.State, StateTime: h.StateTime, Version: h.Version, LastSeen: h.LastSeen,
		SeqState: SeqState{Watermark: h.Watermark, HasMark: h.HasMark, MaxSeq: h.MaxSeq, Lost: h.Lost, Spool: h.Spool,
			PendingFloor: h.PendingFloor},
		Sensors: sensors, Meta: h.HostMeta, Aggregator: h.Aggregator}
}

// Host is what the record says of the host called name (without
// Awaited, which the engine counts from its pending seqs).
func (h *HostRecord) Host(name string) Host {
	return Host{Name: name, State: h.State, StateTime: h.StateTime, Version: h.Version, LastSeen: h.LastSeen,
		Watermark: h.Watermark, MaxSeq: h.MaxSeq, Lost: h.Lost, Spool: h.Spool, HasMark: h.HasMark, PendingFloor: h.PendingFloor,
		Sensors: h.Sensors, HostMeta: h.Meta, Aggregator: h.Aggregator}
}

// HostMeta is how a host is shown, set by apd hosts set: every chart and
// the dashboard use the display name and colour, the map the location.
// Empty fields mean the defaults (the host's name, a colour of the
// palette, no place on the map).
type HostMeta struct {
	Display  string    `json:"name,omitempty"`
	Colour   string    `json:"colour,omitempty"`
	Location *Location `json:"location,omitempty"`
}

// IsZero reports whether m sets nothing.
func (m HostMeta) IsZero() bool { return m.Display == "" && m.Colour == "" && m.Location == nil }

// Location is a place on Earth in degrees (WGS 84).
type Location struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Validate checks that l is a place on Earth.
func (l Location) Validate() error {
	if !(l.Lat >= -90 && l.Lat <= 90) || !(l.Lon >= -180 && l.Lon <= 180) {
		return fmt.Errorf("location %g,%g: latitude must be within ±90 and longitude within ±180", l.Lat, l.Lon)
	}
	return nil
}

// Validate checks a display name (printable, at most 64 characters), a
// colour (#rgb or #rrggbb) and the location.
func (m HostMeta) Validate() error {
	if utf8.RuneCountInString(m.Display) > 64 || !utf8.ValidString(m.Display) || strings.ContainsFunc(m.Display, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return fmt.Errorf("name %q: want at most 64 printable characters", m.Display)
	}
	if m.Colour != "" {
		if _, err := ParseColour(m.Colour); err != nil {
			return err
		}
	}
	if m.Location != nil {
		return m.Location.Validate()
	}
	return nil
}

// ParseColour reads a colour written #rgb or #rrggbb.
func ParseColour(s string) (color.RGBA, error) {
	bad := fmt.Errorf("colour %q: want #rgb or #rrggbb, e.g. #cc3300", s)
	if !strings.HasPrefix(s, "#") || (len(s) != 4 && len(s) != 7) {
		return color.RGBA{}, bad
	}
	v, err := strconv.ParseUint(s[1:], 16, 32)
	if err != nil {
		return color.RGBA{}, bad
	}
	if len(s) == 4 {
		r, g, b := uint8(v>>8&0xf), uint8(v>>4&0xf), uint8(v&0xf)
		return color.RGBA{r * 17, g * 17, b * 17, 255}, nil
	}
	return color.RGBA{uint8(v >> 16), uint8(v >> 8), uint8(v), 255}, nil
}

// DeadLetter is an input the aggregator could not store as a reading.
type DeadLetter struct {
	Received time.Time `json:"received"`
	Topic    string    `json:"topic"`
	Reason   string    `json:"reason"`
	// Payload is kept up to a bounded size (see Commit).
	Payload []byte `json:"payload"`
}

// MaxDeadPayload bounds how much of a rejected payload is kept.
const MaxDeadPayload = 1024

// StatusUpdate is a host's $status payload as received.
type StatusUpdate struct {
	Host   string
	Status schema.Status
}

// Batch is what one Commit writes in one transaction.
type Batch struct {
	Readings    []schema.Reading
	Statuses    []StatusUpdate
	DeadLetters []DeadLetter
	// Imported marks readings loaded from an export: they are stored but
	// take no part in seq watermarks, which track live delivery.
	Imported bool
	// Topics names the topics of dead letters made by the commit itself.
	Topics schema.Topics
	// Aggregator names the aggregator committing (see NoteAggregator).
	Aggregator string
}

// Len returns the number of items in the batch.
func (b *Batch) Len() int { return len(b.Readings) + len(b.Statuses) + len(b.DeadLetters) }

// Reset empties the batch, keeping its capacity.
func (b *Batch) Reset() {
	b.Readings, b.Statuses, b.DeadLetters = b.Readings[:0], b.Statuses[:0], b.DeadLetters[:0]
}

// CommitResult says what a Commit did.
type CommitResult struct {
	Stored     int
	Duplicates int
	// Lost counts seqs that status updates declared dropped by devices.
	Lost uint64
	// Refused holds the indexes in Batch.Readings of readings not stored
	// because their seq is more than MaxSeqJump above their host's
	// watermark; each became a dead letter.
	Refused []int
	// RefusedStatuses counts statuses not applied because their first_seq
	// cannot be real for their host (SeqState.FloorTooFarAhead); each
	// became a dead letter.
	RefusedStatuses int
	// Quarantined describes the stored data a commit found unreadable (a
	// corrupt chunk) and set aside instead of failing: the readings went
	// on being written without it.
	Quarantined []string
	// Acks maps each host whose contiguous seq watermark advanced (or
	// whose spool changed) to its acknowledgement: every reading of that
	// host's spool with seq ≤ Seq is committed.
	Acks map[string]HostAck
}

// HostAck is the acknowledgement of one host's readings.
type HostAck struct {
	Seq   uint64
	Spool string
}

// MaxSeqJump bounds how far above its host's watermark a reading's seq
// may be: more readings than any spool holds (a 64 MiB spool holds about
// 450,000). A seq beyond it cannot be real; kept pending, a device could
// make the store remember any number of gaps.
const MaxSeqJump = 1 << 22

// DeadLetterStats says how many dead letters are kept, their bytes, and
// how many were dropped to stay within the bounds.
type DeadLetterStats struct {
	Count   uint64 `json:"count"`
	Bytes   uint64 `json:"bytes"`
	Dropped uint64 `json:"dropped"`
}

// WithoutRefused returns readings without those at the ascending indexes
// of refused (CommitResult.Refused): what a commit stored. It returns
// readings itself when nothing was refused.
func WithoutRefused(readings []schema.Reading, refused []int) []schema.Reading {
	if len(refused) == 0 {
		return readings
	}
	out := make([]schema.Reading, 0, len(readings)-len(refused))
	for i := range readings {
		if len(refused) > 0 && refused[0] == i {
			refused = refused[1:]
			continue
		}
		out = append(out, readings[i])
	}
	return out
}

// ReasonSeqOutOfRange is the dead-letter reason of a reading whose seq,
// or a status whose first_seq, cannot be real.
const ReasonSeqOutOfRange = "seq_out_of_range"

// Query selects readings. The zero value selects everything.
type Query struct {
	// Sensor selects one sensor; empty means all.
	Sensor string
	// Hosts selects these hosts; empty means all.
	Hosts []string
	// Since and Until bound the time range, half-open: Since ≤ ts < Until.
	// A zero time leaves that side open.
	Since, Until time.Time
	// Limit stops the scan after this many readings; 0 means no limit.
	Limit int
}

// ErrStop may be returned by a Scan callback to end the scan early without
// an error.
var ErrStop = errors.New("stop scan")

// SummaryPeriod is the period of the sums an engine that implements
// Summarizer keeps: windows of aggregates that are whole multiples of it
// can be answered from the sums.
const SummaryPeriod = 15 * time.Minute

// Summarizer is an engine that keeps, beside its readings, the count and
// sum of each series' numeric readings per SummaryPeriod, so a mean over
// a month need not decode every reading: a 30-day chart of a fleet reads
// a few thousand sums instead of millions of readings.
type Summarizer interface {
	// ScanSummarized calls fn for what q selects, series by series (by
	// sensor, then host), each in time order, as Scan does — except that
	// where the engine holds the sums of whole periods inside [Since,
	// Until) it gives those (Part.Sum) instead of the readings. Only
	// readings without an error and with a numeric value (schema.Numeric)
	// are in the sums; the readings given one by one are all of them.
	ScanSummarized(q Query, fn func(*Part) error) error
}

// Part is one step of ScanSummarized: a reading, or the sum of a period.
type Part struct {
	Reading *schema.Reading
	Sum     *PeriodSum
}

// PeriodSum is the count and sum of the numeric readings of one series in
// [Start, Start+SummaryPeriod), or part of that period (a period split
// between two of the engine's blocks comes as two sums, one after the
// other). Unit and Title are those of every reading counted: readings
// with different ones are given one by one instead.
type PeriodSum struct {
	Host, Sensor string
	Start        time.Time
	Count        uint64
	Sum          float64
	Unit, Title  string
}
