// Package procio reads what this process has caused to be written to
// storage, from the kernel's per-process I/O accounting (/proc/self/io on
// Linux): the figure that wears out a Raspberry Pi's SD card.
//
// The kernel counts a page when it is dirtied (write_bytes) and takes it
// back when the page is dropped before it was written, because its file
// was truncated or deleted first (cancelled_write_bytes); the difference
// is what reaches the storage device.
package procio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Counters are a process's storage write counters.
type Counters struct {
	WriteBytes          uint64 // pages dirtied, in bytes
	CancelledWriteBytes uint64 // of those, dropped before write-back
}

// Written returns the bytes that reach (or will reach) the storage device.
func (c Counters) Written() uint64 {
	if c.CancelledWriteBytes > c.WriteBytes {
		return 0
	}
	return c.WriteBytes - c.CancelledWriteBytes
}

// WrittenSince returns the bytes written between start and c, two
// readings of the same process.
func (c Counters) WrittenSince(start Counters) uint64 {
	return c.Written() - min(c.Written(), start.Written())
}

// PerDay scales n, counted over a span of time, to a day (a span under a
// second counts as one).
func PerDay(n uint64, over time.Duration) uint64 {
	return uint64(float64(n) * float64(24*time.Hour) / float64(max(over, time.Second)))
}

// ErrUnsupported means the system keeps no such counters (not Linux, or
// a kernel without task I/O accounting).
var ErrUnsupported = errors.New("per-process I/O counters are not available here")

// Self returns this process's counters.
func Self() (Counters, error) { return Of("self") }

// Of returns the counters of the process pid ("self" for this one).
func Of(pid string) (Counters, error) {
	f, err := os.Open("/proc/" + pid + "/io")
	if errors.Is(err, os.ErrNotExist) {
		return Counters{}, ErrUnsupported
	}
	if err != nil {
		return Counters{}, fmt.Errorf("read I/O counters: %w", err)
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads counters in the format of /proc/<pid>/io.
func Parse(r io.Reader) (Counters, error) {
	var c Counters
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var field *uint64
		switch name {
		case "write_bytes":
			field = &c.WriteBytes
		case "cancelled_write_bytes":
			field = &c.CancelledWriteBytes
		default:
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return Counters{}, fmt.Errorf("read I/O counters: %s: %w", name, err)
		}
		*field = n
		found++
	}
	if err := sc.Err(); err != nil {
		return Counters{}, fmt.Errorf("read I/O counters: %w", err)
	}
	if found < 2 {
		return Counters{}, ErrUnsupported
	}
	return c, nil
}
