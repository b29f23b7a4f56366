// Package testutil holds helpers shared by apd's tests: free loopback
// ports, building the binaries, a buffer safe to read while a process
// writes to it, and polling for a condition.
package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreeAddr returns a loopback address with a port free at the time of the
// call.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// RunWithBinaries is a TestMain body: it builds apd and apd-publish into a
// temporary directory, stores its path in *dir, runs the tests, removes the
// directory and returns the exit code.
func RunWithBinaries(m *testing.M, dir *string) int {
	d, err := buildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(d)
	*dir = d
	return m.Run()
}

func buildBinaries() (string, error) {
	dir, err := os.MkdirTemp("", "apd-bin")
	if err != nil {
		return "", err
	}
	build := exec.Command("go", "build", "-o", dir+"/",
		"github.com/apd-telemetry/apd/cmd/apd", "github.com/apd-telemetry/apd/cmd/apd-publish")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build binaries: %w", err)
	}
	return dir, nil
}

// SyncBuffer collects a process's output and may be read while it runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond every 10 ms until it holds, failing the test after
// timeout.
func WaitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
