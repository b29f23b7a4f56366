package testutil

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a program started for a test. Its output, stdout and stderr
// together, collects in Log for as long as it runs.
type Process struct {
	Cmd *exec.Cmd
	Log *SyncBuffer

	exited chan struct{} // closed once the process has exited and Log holds all it wrote
	err    error         // Cmd.Wait's, once exited is closed
}

// StartProcess starts cmd and waits up to timeout for the first line of
// its output that ready matches, and returns the process and that line's
// submatches: a process told to listen on port 0 says there which port it
// bound. The test fails if the process exits first or timeout passes,
// showing what it wrote. A process still running when the test ends is
// killed.
//
// The process is waited for here: call Wait, Exited or Stop, never
// cmd.Wait.
func StartProcess(tb testing.TB, cmd *exec.Cmd, ready *regexp.Regexp, timeout time.Duration) (*Process, []string) {
	tb.Helper()
	p := &Process{Cmd: cmd, Log: &SyncBuffer{}, exited: make(chan struct{})}
	w := &lineWatch{log: p.Log, ready: ready, found: make(chan []string, 1)}
	cmd.Stdout, cmd.Stderr = w, w // one writer: exec copies both through one goroutine
	if cmd.WaitDelay == 0 {
		// A child left holding the output (Chromium's, chromedriver's)
		// must not hold up Wait for long.
		cmd.WaitDelay = 5 * time.Second
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case m := <-w.found:
		return p, m
	case <-p.exited:
		tb.Fatalf("%s exited (%v) before it wrote a line matching %s:\n%s", cmd.Path, p.err, ready, p.Log)
	case <-timer.C:
		tb.Fatalf("%s wrote no line matching %s within %s:\n%s", cmd.Path, ready, timeout, p.Log)
	}
	return nil, nil
}

// LogLine matches a whole line in slog's text format whose message is
// msg, such as apd serve's
//
//	time=… level=INFO msg="apd serve running" mqtt=127.0.0.1:40123 http=http://127.0.0.1:40125 …
//
// for StartProcess; ParseLogLine reads the line's attributes.
func LogLine(msg string) *regexp.Regexp {
	return regexp.MustCompile(`^(?:.* )?msg=(?:` + regexp.QuoteMeta(strconv.Quote(msg)) + `|` + regexp.QuoteMeta(msg) + `)(?: .*)?$`)
}

// WaitLogLine waits up to timeout for a line of the process's output
// that re matches (one it wrote after it was started, LogLine for a log
// message) and returns it; the test fails if none comes.
func (p *Process) WaitLogLine(tb testing.TB, re *regexp.Regexp, timeout time.Duration) string {
	tb.Helper()
	var line string
	WaitFor(tb, "a line matching "+re.String(), timeout, func() bool {
		for _, l := range strings.Split(p.Log.String(), "\n") {
			if re.MatchString(l) {
				line = l
				return true
			}
		}
		return false
	})
	return line
}

// Exited returns a channel closed once the process has exited and Log
// holds all it wrote.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait waits for the process to exit and returns what exec.Cmd.Wait
// returned (nil for a zero exit status).
func (p *Process) Wait() error {
	<-p.exited
	return p.err
}

// Stop sends SIGTERM and waits up to timeout for the process to exit,
// then kills it. It returns the process's exit error, or an error saying
// that it had to be killed; nil if it exited cleanly, also earlier.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return p.err
	case <-timer.C:
		_ = p.Cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not exit within %s of SIGTERM", p.Cmd.Path, timeout)
	}
}

// lineWatch passes a process's output to log and, once, the submatches
// of the first line that ready matches to found.
type lineWatch struct {
	log   *SyncBuffer
	ready *regexp.Regexp
	found chan []string

	mu      sync.Mutex
	partial []byte // the line being written
	done    bool
}

func (w *lineWatch) Write(p []byte) (int, error) {
	n, err := w.log.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return n, err
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		if m := w.ready.FindStringSubmatch(line); m != nil {
			w.found <- m
			w.done, w.partial = true, nil
			break
		}
	}
	return n, err
}

// ParseLogLine returns the attributes of a line in slog's text format
// (key=value, values with spaces or quotes quoted as Go strings) by key,
// msg included. Parsing stops at what is not key=value.
func ParseLogLine(line string) map[string]string {
	attrs := map[string]string{}
	for {
		line = strings.TrimLeft(line, " ")
		key, rest, ok := strings.Cut(line, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \"") {
			return attrs
		}
		var value string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return attrs
			}
			value, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			value, rest, _ = strings.Cut(rest, " ")
		}
		attrs[key] = value
		line = rest
	}
}
