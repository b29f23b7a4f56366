package procio

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Counters
		written  uint64
		err      error
	}{
		{"kernel format", "rchar: 42355\nwchar: 1441998\nsyscr: 373\nsyscw: 543\nread_bytes: 0\nwrite_bytes: 1331200\ncancelled_write_bytes: 4096\n",
			Counters{1331200, 4096}, 1327104, nil},
		{"more cancelled than written (a file another process dirtied)", "write_bytes: 4096\ncancelled_write_bytes: 8192\n",
			Counters{4096, 8192}, 0, nil},
		{"no write counters", "rchar: 1\nwchar: 2\n", Counters{}, 0, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.in))
			if !errors.Is(err, tc.err) || got != tc.want || got.Written() != tc.written {
				t.Fatalf("Parse = %+v (written %d), %v; want %+v (written %d), %v", got, got.Written(), err, tc.want, tc.written, tc.err)
			}
		})
	}
	if _, err := Parse(strings.NewReader("write_bytes: x\ncancelled_write_bytes: 0\n")); err == nil || errors.Is(err, ErrUnsupported) {
		t.Fatalf("a malformed count: %v", err)
	}
}

// TestSelfCountsAWrite writes and syncs a file and sees the counter move.
func TestSelfCountsAWrite(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-process I/O counters are Linux's")
	}
	before, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	// Beside the source, not in the temporary directory: that may be a
	// tmpfs, whose pages are never written back and never counted.
	dir, err := os.MkdirTemp(".", "procio-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := os.Create(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	after, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if after.WriteBytes-before.WriteBytes < 64<<10 {
		t.Fatalf("64 KiB written and synced, counter moved %d", after.WriteBytes-before.WriteBytes)
	}
}

func TestWrittenSinceAndPerDay(t *testing.T) {
	start, now := Counters{WriteBytes: 8192, CancelledWriteBytes: 4096}, Counters{WriteBytes: 16384, CancelledWriteBytes: 4096}
	if got := now.WrittenSince(start); got != 8192 {
		t.Fatalf("WrittenSince = %d, want 8192", got)
	}
	if got := start.WrittenSince(now); got != 0 {
		t.Fatalf("WrittenSince backwards = %d, want 0", got)
	}
	for _, tc := range []struct {
		n    uint64
		over time.Duration
		want uint64
	}{{3600, time.Hour, 86400}, {10, 0, 864000}, {0, time.Minute, 0}} {
		if got := PerDay(tc.n, tc.over); got != tc.want {
			t.Errorf("PerDay(%d, %s) = %d, want %d", tc.n, tc.over, got, tc.want)
		}
	}
}
