package main_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// readmeSkip, on the line before a README code block, keeps the test from
// running its commands; it must say why.
const readmeSkip = "<!-- not run by TestReadme:"

// readmeCommand is one `$ command` of the README and the output shown
// under it.
type readmeCommand struct {
	line    int // of the command's last line
	command string
	output  []string
}

// readmeCommands reads the commands of the README's code blocks, but
// those of blocks marked readmeSkip.
func readmeCommands(t *testing.T, path string) []readmeCommand {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out               []readmeCommand
		inBlock, skipping bool
		prev              string
		cur               *readmeCommand
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			if !inBlock {
				skipping = strings.HasPrefix(prev, readmeSkip)
			}
			inBlock = !inBlock
			cur = nil
		case !inBlock || skipping:
		case strings.HasPrefix(line, "$ "):
			out = append(out, readmeCommand{line: n, command: strings.TrimPrefix(line, "$ ")})
			cur = &out[len(out)-1]
		case cur != nil && strings.HasSuffix(cur.command, "\\") && len(cur.output) == 0:
			cur.command = strings.TrimSuffix(cur.command, "\\") + " " + strings.TrimSpace(line)
			cur.line = n
		case cur != nil && line == "":
			cur = nil
		case cur != nil:
			cur.output = append(cur.output, line)
		}
		prev = line
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// splitCommand splits a shell command line into words: single and
// double quotes, backslash escapes in double quotes, and a comment from
// an unquoted # on.
func splitCommand(s string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for i := 0; i < len(s); i++ {
		c := rune(s[i])
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				w.WriteRune(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s):
				i++
				w.WriteByte(s[i])
			default:
				w.WriteRune(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words
		default:
			w.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

var (
	shapeTime   = regexp.MustCompile(`\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?)?`)
	shapeNumber = regexp.MustCompile(`\d+([.,]\d+)*`)
	shapeSpace  = regexp.MustCompile(`\s+`)
)

// shape is what of an output must not change from run to run: its
// lines, words and units, with times and numbers as placeholders and
// column padding as one space.
func shape(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		l = shapeTime.ReplaceAllString(l, "<time>")
		l = shapeNumber.ReplaceAllString(l, "0")
		l = strings.TrimSpace(shapeSpace.ReplaceAllString(l, " "))
		out = append(out, l)
	}
	return out
}

// TestReadme runs the README's commands against apd demo, in README
// order, and compares the shape of each output with the output the
// README shows: the README's examples are this test's golden files. The
// defaults the README relies on (127.0.0.1:8080, 127.0.0.1:1883) are
// replaced by the demo's addresses.
func TestReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("runs apd demo")
	}
	t.Parallel()
	mosquittoPub, _ := mosquitto(t)
	commands := readmeCommands(t, filepath.Join("..", "..", "README.md"))
	if len(commands) < 10 {
		t.Fatalf("%d commands in the README: the parser lost them", len(commands))
	}
	d := startDemo(t)
	httpAddr := strings.TrimPrefix(d.http, "http://")
	// The README shows the fleet live: its devices connect at their first
	// tick, up to 10 s after the demo is ready.
	testutil.WaitFor(t, "the demo's devices online", 30*time.Second, func() bool {
		r := run(t, nil, "apd", "hosts", "--server", d.http, "--json")
		return strings.Count(r.stdout, `"state": "online"`) >= 11
	})
	// Commands run where bin/ and the repository's files are at hand.
	dir := t.TempDir()
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range [][2]string{{binDir, "bin"}, {filepath.Join(repo, "cmd"), "cmd"}, {filepath.Join(repo, "docs"), "docs"}} {
		if err := os.Symlink(link[0], filepath.Join(dir, link[1])); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "APD_SERVER=" + d.http, "TZ=UTC"}
	outputs := make([][]string, len(commands))
	for i, c := range commands {
		words := splitCommand(strings.NewReplacer("127.0.0.1:8080", httpAddr, "tcp://127.0.0.1:1883", "tcp://"+d.mqtt).Replace(c.command))
		if len(words) == 0 {
			continue
		}
		switch words[0] {
		case "mosquitto_pub", "mosquitto_sub":
			host, port, _ := strings.Cut(d.mqtt, ":")
			words = append(words, "-h", host, "-p", port)
			if words[0] == "mosquitto_pub" {
				words[0] = mosquittoPub
			} else {
				words[0] = filepath.Join(filepath.Dir(mosquittoPub), "mosquitto_sub")
			}
		case "bin/apd-publish":
			words = append(words, "--broker", "tcp://"+d.mqtt)
		}
		cmd := exec.Command(words[0], words[1:]...)
		cmd.Dir, cmd.Env = dir, env
		// Every command of the README ends by itself; the bound only
		// ends a test that hangs.
		timer := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
		out, err := cmd.CombinedOutput()
		timer.Stop()
		if err != nil {
			t.Errorf("README.md:%d: %s: %v\n%s", c.line, c.command, err, out)
			outputs[i] = c.output
			continue
		}
		// Paths of files a command writes are the reader's own.
		out = []byte(strings.ReplaceAll(string(out), dir+string(filepath.Separator), ""))
		got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if len(out) == 0 {
			got = nil
		}
		outputs[i] = got
		if *update {
			continue
		}
		if want, have := shape(c.output), shape(got); strings.Join(want, "\n") != strings.Join(have, "\n") {
			t.Errorf("README.md:%d: %s: the output's shape differs from the README's\nREADME:\n%s\nrun:\n%s",
				c.line, c.command, strings.Join(c.output, "\n"), out)
		}
	}
	if *update {
		rewriteReadme(t, filepath.Join(repo, "README.md"), commands, outputs)
	}
	// The README's chart is the one its apd chart command drew.
	if shots := os.Getenv("APD_SCREENSHOTS"); shots != "" {
		b, err := os.ReadFile(filepath.Join(dir, "week.png"))
		if err == nil {
			err = os.WriteFile(filepath.Join(shots, "chart.png"), b, 0o644)
		}
		if err != nil {
			t.Errorf("the README's chart: %v", err)
		}
	}
}

// rewriteReadme puts each command's new output in place of the one the
// README shows (go test -run TestReadme -update), for a person to review
// in the diff before committing.
func rewriteReadme(t *testing.T, path string, commands []readmeCommand, outputs [][]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	// From the end, so earlier line numbers stay right.
	for i := len(commands) - 1; i >= 0; i-- {
		c := commands[i]
		start := c.line // the line after the command, 0-based
		end := start + len(c.output)
		lines = append(lines[:start], append(append([]string{}, outputs[i]...), lines[end:]...)...)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadmeParsing pins the reading of commands and the shape.
func TestReadmeParsing(t *testing.T) {
	words := splitCommand(`bin/apd query --where 'value < 5 or value > 30' --tz "Europe/Amsterdam" -m "{\"v\":1}"   # a comment`)
	want := []string{"bin/apd", "query", "--where", "value < 5 or value > 30", "--tz", "Europe/Amsterdam", "-m", `{"v":1}`}
	if strings.Join(words, "|") != strings.Join(want, "|") {
		t.Errorf("split: %q", words)
	}
	a := shape([]string{"kitchen  temperature  2026-12-03T19:15:00.000Z  12.9 °C (55.2 °F)"})
	b := shape([]string{"kitchen     temperature  2026-11-01T01:00:00.000Z  7.0 °C (44.6 °F)"})
	if a[0] != b[0] || a[0] != "kitchen temperature <time> 0 °C (0 °F)" {
		t.Errorf("shapes %q and %q", a, b)
	}
}
