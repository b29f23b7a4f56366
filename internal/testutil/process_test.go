package testutil

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseLogLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, line string
		want       map[string]string
	}{
		{"apd serve", `time=2026-11-23T22:53:54.150Z level=INFO msg="apd serve running" mqtt=127.0.0.1:1883 http=http://127.0.0.1:8080 db="/srv/my data/apd.db" version=118e70f`,
			map[string]string{"time": "2026-11-23T22:53:54.150Z", "level": "INFO", "msg": "apd serve running", "mqtt": "127.0.0.1:1883",
				"http": "http://127.0.0.1:8080", "db": "/srv/my data/apd.db", "version": "118e70f"}},
		{"quote inside", `msg=x note="say \"hi\"" n=1`, map[string]string{"msg": "x", "note": `say "hi"`, "n": "1"}},
		{"not key=value", `panic: runtime error`, map[string]string{}},
		{"stops at text", `level=WARN some words=1`, map[string]string{"level": "WARN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseLogLine(tc.line); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLogLine(t *testing.T) {
	t.Parallel()
	re := LogLine("apd serve running")
	for line, want := range map[string]bool{
		`time=x level=INFO msg="apd serve running" mqtt=127.0.0.1:1 http=http://127.0.0.1:2`: true,
		`msg="apd serve running"`: true,
		`time=x level=INFO msg="apd serve running later" mqtt=127.0.0.1:1`: false,
		`time=x level=INFO msg="not apd serve running"`:                    false,
	} {
		if got := re.MatchString(line); got != want {
			t.Errorf("%q matched %v, want %v", line, got, want)
		}
	}
	if !LogLine("ready").MatchString("level=INFO msg=ready port=1") {
		t.Error("an unquoted message did not match")
	}
}

// TestStartProcess: the line is found however the output is cut into
// writes, the output before and after it stays readable, and a process
// that exits first or says nothing in time fails the test with what it
// wrote.
func TestStartProcess(t *testing.T) {
	t.Parallel()
	sh := func(script string) *exec.Cmd { return exec.Command("sh", "-c", script) }
	p, m := StartProcess(t, sh(`echo starting >&2; printf 'level=INFO msg="x running" ' >&2; sleep 0.01; echo 'addr=127.0.0.1:5' >&2; echo after`),
		LogLine("x running"), 10*time.Second)
	if got := ParseLogLine(m[0])["addr"]; got != "127.0.0.1:5" {
		t.Errorf("addr %q, want 127.0.0.1:5 (line %q)", got, m[0])
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if log := p.Log.String(); !strings.HasPrefix(log, "starting\n") || !strings.HasSuffix(log, "after\n") {
		t.Errorf("log %q", log)
	}

	// A listener on port 0 that reports its port, as apd's commands do.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, m = StartProcess(t, sh(fmt.Sprintf(`echo "started on port %d"; exec sleep 30`, l.Addr().(*net.TCPAddr).Port)),
		regexp.MustCompile(`on port (\d+)`), 10*time.Second)
	if c, err := net.Dial("tcp", "127.0.0.1:"+m[1]); err != nil {
		t.Errorf("the reported port: %v", err)
	} else {
		c.Close()
	}
}

func TestProcessStop(t *testing.T) {
	t.Parallel()
	p, _ := StartProcess(t, exec.Command("sh", "-c", `trap 'exit 0' TERM; echo up; while :; do sleep 0.01; done`),
		regexp.MustCompile(`^up$`), 10*time.Second)
	if err := p.Stop(10 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
	select {
	case <-p.Exited():
	default:
		t.Error("not exited after Stop")
	}
	stubborn, _ := StartProcess(t, exec.Command("sh", "-c", `trap '' TERM; echo up; while :; do sleep 0.01; done`),
		regexp.MustCompile(`^up$`), 10*time.Second)
	if err := stubborn.Stop(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not exit") {
		t.Errorf("stop of a process ignoring SIGTERM: %v", err)
	}
}

func TestRefusedAddr(t *testing.T) {
	t.Parallel()
	addr := RefusedAddr(t)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s took a connection", addr)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Errorf("another socket could listen on %s", addr)
	}
}
