package main_test

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// The golden tests run the built apd on fixed data and compare what it
// prints with files under testdata, in the layout of litestream's
// cmd/litestream/testdata: testdata/<command>/<case>/ holds
//
//	args           the command's arguments, one per line (no quoting);
//	               a line {db}, {server} or {source} stands for the data
//	               source: --db FILE, --server URL, or each of them in
//	               turn, both expected to print the same
//	stdout         what it must print on standard output
//	stderr, code   what it must print on standard error and its exit
//	               code, where they are not empty and 0
//
// and the input, each file taken from the case directory or, when it has
// none, from the nearest directory above it within testdata, so that cases
// of one command share it:
//
//	import.ndjson  readings imported with apd import into a fresh database
//	apd.toml       configuration of the apd serve the case runs
//	publish        MQTT messages sent to that apd serve at QoS 1, one a
//	               line: [-r] TOPIC PAYLOAD (-r: retained); # comments
//	ready          conditions to wait for before the command runs, one a
//	               line: PATH TEXT, met once GET PATH on the server's HTTP
//	               API returns a body holding TEXT (not followed by a
//	               digit or '.', so that "in":5 is not "in":50); #
//	               comments
//
// A case runs an apd serve (listening on port 0) when its args name
// {server} or {source} or it has something to publish; the database is
// then the one that apd serve wrote, read with --db after it stopped.
//
// go test ./cmd/apd -run Golden -update rewrites stdout, stderr and code.

var update = flag.Bool("update", false, "rewrite the golden files under testdata with what apd prints now")

func TestGolden(t *testing.T) {
	var cases []string
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "args" {
			cases = append(cases, filepath.Dir(path))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no golden cases under testdata")
	}
	for _, dir := range cases {
		name, _ := filepath.Rel("testdata", dir)
		t.Run(filepath.ToSlash(name), func(t *testing.T) {
			t.Parallel()
			runGoldenCase(t, dir)
		})
	}
}

// result is what one run printed, after normalisation.
func runGoldenCase(t *testing.T, dir string) {
	args := readArgs(t, filepath.Join(dir, "args"))
	var sources []string // "db", "server"
	for _, a := range args {
		switch a {
		case "{db}":
			sources = append(sources, "db")
		case "{server}":
			sources = append(sources, "server")
		case "{source}":
			sources = append(sources, "server", "db")
		}
	}
	started := time.Now()
	data := t.TempDir()
	db := filepath.Join(data, "apd.db")
	if in := caseFile(dir, "import.ndjson"); in != "" {
		if r := run(t, nil, "apd", "import", "--db", db, in); r.code != 0 {
			t.Fatalf("apd import %s: exit %d: %s", in, r.code, r.stderr)
		}
	}

	var results []result
	runWith := func(sourceFlag, value string) {
		var expanded []string
		for _, a := range args {
			if a == "{db}" || a == "{server}" || a == "{source}" {
				expanded = append(expanded, sourceFlag, value)
			} else {
				expanded = append(expanded, a)
			}
		}
		r := run(t, nil, "apd", expanded...)
		results = append(results, normalise(args, r, started))
	}

	publish := caseFile(dir, "publish")
	if slices.Contains(sources, "server") || publish != "" {
		var config []string
		if c := caseFile(dir, "apd.toml"); c != "" {
			config = []string{"--config", c}
		}
		s := startServeIn(t, data, config...)
		if publish != "" {
			publishFile(t, s.mqtt, publish)
		}
		if ready := caseFile(dir, "ready"); ready != "" {
			waitReady(t, "http://"+s.http, ready)
		}
		if slices.Contains(sources, "server") {
			runWith("--server", "http://"+s.http)
		}
		s.stop(t)
	}
	if slices.Contains(sources, "db") {
		runWith("--db", db)
	}
	if len(sources) == 0 {
		runWith("", "")
	}

	want, ok := readGolden(t, dir)
	if *update {
		writeGolden(t, dir, results[0])
		want, ok = results[0], true
	}
	if !ok {
		t.Fatalf("%s has no stdout file: run go test -run Golden -update and read what it wrote", dir)
	}
	for i, got := range results {
		via := ""
		if len(sources) > 0 {
			via = " with --" + sources[i]
		}
		if got.code != want.code {
			t.Errorf("apd %s%s: exit code %d, want %d\nstderr:\n%s", strings.Join(args, " "), via, got.code, want.code, got.stderr)
		}
		if got.stdout != want.stdout {
			t.Errorf("apd %s%s: stdout differs from %s (-want +got):\n%s", strings.Join(args, " "), via,
				filepath.Join(dir, "stdout"), lineDiff(want.stdout, got.stdout))
		}
		if got.stderr != want.stderr {
			t.Errorf("apd %s%s: stderr differs from %s (-want +got):\n%s", strings.Join(args, " "), via,
				filepath.Join(dir, "stderr"), lineDiff(want.stderr, got.stderr))
		}
	}
}

// readArgs reads one argument per line; the last line may lack its
// newline.
func readArgs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// caseFile returns the path of the input file name for the case in dir:
// dir's own, or the nearest one above it within testdata; "" if none.
func caseFile(dir, name string) string {
	for d := dir; d != "." && d != string(filepath.Separator); d = filepath.Dir(d) {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			abs, _ := filepath.Abs(p)
			return abs
		}
		if filepath.Base(d) == "testdata" {
			break
		}
	}
	return ""
}

func readGolden(t *testing.T, dir string) (result, bool) {
	t.Helper()
	var g result
	b, err := os.ReadFile(filepath.Join(dir, "stdout"))
	if err != nil {
		return g, false
	}
	g.stdout = string(b)
	if b, err := os.ReadFile(filepath.Join(dir, "stderr")); err == nil {
		g.stderr = string(b)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "code")); err == nil {
		if g.code, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			t.Fatalf("%s/code: %v", dir, err)
		}
	}
	return g, true
}

// writeGolden writes stdout always, stderr and code only when they are
// not empty and 0 (and removes stale ones).
func writeGolden(t *testing.T, dir string, g result) {
	t.Helper()
	write := func(name, content string, keep bool) {
		p := filepath.Join(dir, name)
		if !keep {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stdout", g.stdout, true)
	write("stderr", g.stderr, g.stderr != "")
	write("code", strconv.Itoa(g.code)+"\n", g.code != 0)
}

// publishFile sends the messages of a publish file in order, each at QoS
// 1 and acknowledged before the next.
func publishFile(t *testing.T, addr, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("golden-test").
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", addr, tok.Error())
	}
	defer c.Disconnect(250)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		retain := false
		if rest, ok := strings.CutPrefix(line, "-r "); ok {
			retain, line = true, rest
		}
		topic, payload, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("%s:%d: want [-r] TOPIC PAYLOAD", path, n)
		}
		tok := c.Publish(topic, 1, retain, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s:%d: publish to %s: %v", path, n, topic, tok.Error())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// waitReady waits until every condition of the ready file holds.
func waitReady(t *testing.T, server, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for n, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		urlPath, text, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("%s:%d: want PATH TEXT", path, n+1)
		}
		var body string
		deadline := time.Now().Add(10 * time.Second)
		for !holdsText(body, text) {
			if time.Now().After(deadline) {
				t.Fatalf("%s:%d: GET %s never held %q within 10 s; last:\n%s", path, n+1, urlPath, text, body)
			}
			time.Sleep(20 * time.Millisecond)
			resp, err := http.Get(server + urlPath)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
	}
}

// holdsText reports whether body holds text not followed by a digit or
// '.'.
func holdsText(body, text string) bool {
	for i := 0; ; {
		j := strings.Index(body[i:], text)
		if j < 0 {
			return false
		}
		end := i + j + len(text)
		if end == len(body) || !strings.ContainsRune("0123456789.", rune(body[end])) {
			return true
		}
		i += j + 1
	}
}

// Normalisation: only values that cannot be the same twice are replaced,
// each by a named, narrow rule for one command, and only where they have
// the expected form and a plausible value; anything else stays and shows
// in the diff.
var normalisers = map[string][]func(out string, started time.Time) string{
	"deadletters":  {normaliseReceivedTimes},
	"rules status": {normaliseMeanActionTimes},
}

func normalise(args []string, r result, started time.Time) result {
	command := args[0]
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") && !strings.HasPrefix(args[1], "{") {
		command += " " + args[1]
	}
	for _, f := range normalisers[command] {
		r.stdout = f(r.stdout, started)
	}
	return r
}

var (
	// The RECEIVED column of apd deadletters (the time apd serve took the
	// message in: the time of the test run) and "received" of --json.
	receivedInTable = regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`)
	receivedInJSON  = regexp.MustCompile(`"received": "([^"]+)"`)
	// The same width as the times it replaces, to keep the columns.
	receivedPlaceholder = "YYYY-MM-DDTHH:MM:SS.sssZ"
)

// normaliseReceivedTimes replaces the receive times of dead letters that
// lie within the test run.
func normaliseReceivedTimes(out string, started time.Time) string {
	during := func(s string) bool {
		ts, err := time.Parse(time.RFC3339Nano, s)
		return err == nil && !ts.Before(started.Truncate(time.Millisecond)) && !ts.After(time.Now())
	}
	out = receivedInTable.ReplaceAllStringFunc(out, func(s string) string {
		if during(s) {
			return receivedPlaceholder
		}
		return s
	})
	return receivedInJSON.ReplaceAllStringFunc(out, func(s string) string {
		if during(receivedInJSON.FindStringSubmatch(s)[1]) {
			return `"received": "` + receivedPlaceholder + `"`
		}
		return s
	})
}

var (
	// The MEAN ACTION column of apd rules status (the last) and
	// "mean_action_seconds" of --json: how long actions took.
	meanActionInTable = regexp.MustCompile(`(?m)  (\d+(?:\.\d+)?(?:ns|µs|ms|s))$`)
	meanActionInJSON  = regexp.MustCompile(`"mean_action_seconds": ([0-9.e-]+)`)
)

// normaliseMeanActionTimes replaces mean action times above zero and
// below 10 s; a zero (no action ran) stays.
func normaliseMeanActionTimes(out string, _ time.Time) string {
	out = meanActionInTable.ReplaceAllStringFunc(out, func(s string) string {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err == nil && d > 0 && d < 10*time.Second {
			return "  <duration>"
		}
		return s
	})
	return meanActionInJSON.ReplaceAllStringFunc(out, func(s string) string {
		v, err := strconv.ParseFloat(meanActionInJSON.FindStringSubmatch(s)[1], 64)
		if err == nil && v > 0 && v < 10 {
			return `"mean_action_seconds": <seconds>`
		}
		return s
	})
}

// lineDiff shows how got differs from want, line by line: "-" only in
// want, "+" only in got; a line ending in white space ends with ⏎.
func lineDiff(want, got string) string {
	lines := func(s string) []string {
		l := strings.SplitAfter(s, "\n")
		if l[len(l)-1] == "" {
			l = l[:len(l)-1]
		}
		return l
	}
	a, b := lines(want), lines(got)
	// lcs[i][j]: length of the longest common subsequence of a[i:], b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var sb strings.Builder
	line := func(prefix, s string) {
		s, complete := strings.CutSuffix(s, "\n")
		if s != strings.TrimRight(s, " \t") {
			s += "⏎"
		}
		if !complete && s != "" {
			s += " (no newline at the end)"
		}
		fmt.Fprintf(&sb, "%s %s\n", prefix, s)
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			line(" ", a[i])
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			line("-", a[i])
			i++
		default:
			line("+", b[j])
			j++
		}
	}
	return sb.String()
}

// TestGoldenHelpers checks that the normalisations replace only what they
// name and that a ready condition does not match a longer number.
func TestGoldenHelpers(t *testing.T) {
	started := time.Now().Add(-time.Minute)
	during := started.Add(30 * time.Second).UTC()
	before := started.Add(-time.Hour).UTC()
	tests := []struct {
		name string
		f    func(string, time.Time) string
		in   string
		want string
	}{
		{"received in the run", normaliseReceivedTimes,
			during.Format("2006-01-02T15:04:05.000Z") + "  apd/x/y  invalid_json  \"{\"\n",
			"YYYY-MM-DDTHH:MM:SS.sssZ  apd/x/y  invalid_json  \"{\"\n"},
		{"received before the run stays", normaliseReceivedTimes,
			before.Format("2006-01-02T15:04:05.000Z") + "  apd/x/y\n",
			before.Format("2006-01-02T15:04:05.000Z") + "  apd/x/y\n"},
		{"received in JSON", normaliseReceivedTimes,
			`"received": "` + during.Format(time.RFC3339Nano) + `", "ts": "` + during.Format(time.RFC3339Nano) + `"`,
			`"received": "YYYY-MM-DDTHH:MM:SS.sssZ", "ts": "` + during.Format(time.RFC3339Nano) + `"`},
		{"mean action", normaliseMeanActionTimes, "warm  5  182µs\nx  0  1.5ms\n", "warm  5  <duration>\nx  0  <duration>\n"},
		{"no action stays", normaliseMeanActionTimes, "stuffy  0  0s\n", "stuffy  0  0s\n"},
		{"implausible mean stays", normaliseMeanActionTimes, "slow  1  12s\n", "slow  1  12s\n"},
		{"mean action in JSON", normaliseMeanActionTimes,
			`"mean_action_seconds": 0.000182392, "mean_action_seconds": 0`,
			`"mean_action_seconds": <seconds>, "mean_action_seconds": 0`},
	}
	for _, tc := range tests {
		if got := tc.f(tc.in, started); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		body, text string
		want       bool
	}{
		{`[{"name":"warm","in":5,"outcomes":2}]`, `"in":5`, true},
		{`[{"name":"warm","in":50,"outcomes":2}]`, `"in":5`, false},
		{"apd_dead_letters 7\n", "apd_dead_letters 7", true},
		{"apd_dead_letters 70\napd_dead_letters 7", "apd_dead_letters 7", true},
		{"apd_dead_letters 7.5\n", "apd_dead_letters 7", false},
	} {
		if got := holdsText(tc.body, tc.text); got != tc.want {
			t.Errorf("holdsText(%q, %q) = %v, want %v", tc.body, tc.text, got, tc.want)
		}
	}
}
