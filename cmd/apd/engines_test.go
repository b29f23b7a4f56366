package main_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// The store commands on each engine: each works, or refuses with one line
// and a usage exit code where the engine cannot do what it is asked.

// engineReadings are two hosts' readings of the last hour: keep's 200,
// gone's 100.
func engineReadings(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for _, host := range []struct {
		name string
		n    int
	}{{"keep", 200}, {"gone", 100}} {
		for i := range host.n {
			fmt.Fprintf(&b, `{"v":1,"host":%q,"sensor":"temperature","ts":%q,"seq":%d,"value":{"magnitude":%d.5,"unit":"degC"}}`+"\n",
				host.name, start.Add(time.Duration(i)*10*time.Second).Format("2006-01-02T15:04:05.000Z"), i+1, i%30)
		}
	}
	return writeFile(t, "in.ndjson", b.String())
}

// refused checks that r failed with exit code and one line to stderr
// that holds want.
func refused(t *testing.T, what string, r result, code int, want string) {
	t.Helper()
	line := strings.TrimSpace(r.stderr)
	if r.code != code || strings.Contains(line, "\n") || !strings.Contains(line, want) {
		t.Errorf("%s: exit %d, %q; want exit %d and one line with %q", what, r.code, r.stderr, code, want)
	}
	if r.stdout != "" {
		t.Errorf("%s: printed %q", what, r.stdout)
	}
}

// importAndDelete loads engineReadings into the store at location and
// checks that delete removes one host there.
func importAndDelete(t *testing.T, location string) {
	t.Helper()
	if r := run(t, nil, "apd", "import", "--db", location, engineReadings(t)); r.code != 0 {
		t.Fatalf("import: exit %d: %s", r.code, r.stderr)
	}
	if r := run(t, nil, "apd", "delete", "--db", location, "--host", "gone"); r.code != 0 || r.stdout != "deleted 100 readings\n" {
		t.Fatalf("delete: exit %d: %q %s", r.code, r.stdout, r.stderr)
	}
	export := run(t, nil, "apd", "export", "--db", location)
	if n := len(ndjsonLines(t, export.stdout)); export.code != 0 || n != 200 || strings.Contains(export.stdout, `"gone"`) {
		t.Errorf("export after delete: exit %d, %d readings (want keep's 200): %s", export.code, n, export.stderr)
	}
}

// TestEngineEmbeddedStoreCommands: on the embedded engine, named by a path
// or a file: URL, delete, compact, verify and backup all work.
func TestEngineEmbeddedStoreCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "apd.db")
	importAndDelete(t, db)

	c := run(t, nil, "apd", "compact", "--db", db)
	m := regexp.MustCompile(`^compacted (.+): (\d+) → (\d+) bytes\n$`).FindStringSubmatch(c.stdout)
	if c.code != 0 || m == nil || m[1] != db {
		t.Fatalf("compact: exit %d: %q %s", c.code, c.stdout, c.stderr)
	}
	var before, after int64
	fmt.Sscan(m[2], &before)
	fmt.Sscan(m[3], &after)
	if after > before {
		t.Errorf("compact grew the file: %d → %d bytes", before, after)
	}
	fileURL := (&url.URL{Scheme: "file", Path: db}).String()
	if c := run(t, nil, "apd", "compact", "--db", fileURL); c.code != 0 || !strings.HasPrefix(c.stdout, "compacted "+fileURL+": ") {
		t.Errorf("compact of a file: URL: exit %d: %q %s", c.code, c.stdout, c.stderr)
	}

	if v := run(t, nil, "apd", "verify", db); v.code != 0 || v.stdout != db+": sound\n" {
		t.Errorf("verify: exit %d: %q %s", v.code, v.stdout, v.stderr)
	}
	if v := run(t, nil, "apd", "verify", fileURL); v.code != 0 || v.stdout != db+": sound\n" {
		t.Errorf("verify of a file: URL: exit %d: %q %s", v.code, v.stdout, v.stderr)
	}

	copyPath := filepath.Join(dir, "copy.db")
	b := run(t, nil, "apd", "backup", "--db", db, copyPath)
	if b.code != 0 || !regexp.MustCompile(`^backed up \d+ bytes to `+regexp.QuoteMeta(copyPath)+`\n$`).MatchString(b.stdout) {
		t.Fatalf("backup: exit %d: %q %s", b.code, b.stdout, b.stderr)
	}
	if v := run(t, nil, "apd", "verify", copyPath); v.code != 0 {
		t.Errorf("verify of the backup: exit %d: %s", v.code, v.stderr)
	}
	if orig, copied := run(t, nil, "apd", "export", "--db", db), run(t, nil, "apd", "export", "--db", copyPath); copied.stdout != orig.stdout || orig.stdout == "" {
		t.Errorf("the backup exports %d bytes, the original %d", len(copied.stdout), len(orig.stdout))
	}

	missing := filepath.Join(dir, "missing.db")
	refused(t, "compact of a missing file", run(t, nil, "apd", "compact", "--db", missing), 2, "no such file")
	refused(t, "verify of a missing file", run(t, nil, "apd", "verify", missing), 2, "no such file")
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("compact or verify made %s", missing)
	}
}

// TestEnginePostgresStoreCommands: on PostgreSQL, delete works, compact
// packs finished days, and verify and backup refuse with one line: there
// is no file to check or copy.
func TestEnginePostgresStoreCommands(t *testing.T) {
	t.Parallel()
	pg := testutil.StartPostgres(t)
	db := pg.NewDatabase(t)
	importAndDelete(t, db)

	// The readings are of the last hour: with --after=-48h today counts
	// as finished (and yesterday, if the hour crossed midnight).
	if c := run(t, nil, "apd", "compact", "--db", db, "--after=-48h"); c.code != 0 || !regexp.MustCompile(`^packed [12] days?, 200 readings\n$`).MatchString(c.stdout) {
		t.Errorf("compact: exit %d: %q %s", c.code, c.stdout, c.stderr)
	}
	if export := run(t, nil, "apd", "export", "--db", db); len(ndjsonLines(t, export.stdout)) != 200 {
		t.Errorf("export after packing: %d readings, want 200: %s", len(ndjsonLines(t, export.stdout)), export.stderr)
	}

	refused(t, "verify", run(t, nil, "apd", "verify", db), 2,
		"apd: verify: the PostgreSQL engine has no file to check; ")
	out := filepath.Join(t.TempDir(), "copy.db")
	refused(t, "backup", run(t, nil, "apd", "backup", "--db", db, out), 2,
		"apd: backup: the PostgreSQL engine makes no backup file; ")
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused backup left %s", out)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Errorf("a refused backup left %v", entries)
	}
}

// TestEngineUnknownScheme: a location of no engine is a usage error, said
// once, naming what apd takes, and never shows a password.
func TestEngineUnknownScheme(t *testing.T) {
	t.Parallel()
	const location = "mysql://apd:secret@db.example/apd"
	for _, args := range [][]string{
		{"compact", "--db", location},
		{"verify", location},
		{"backup", "--db", location, filepath.Join(t.TempDir(), "copy.db")},
		{"delete", "--db", location, "--host", "pi"},
		{"import", "--db", location, engineReadings(t)},
		{"migrate", "--from", location, "--to", filepath.Join(t.TempDir(), "to.db")},
	} {
		r := run(t, nil, "apd", args...)
		refused(t, args[0], r, 2, `unknown storage scheme "mysql:"`)
		if strings.Contains(r.stderr, "secret") || !strings.Contains(r.stderr, "postgres://") {
			t.Errorf("%s: %q; want the known schemes, without the password", args[0], r.stderr)
		}
	}
}

// TestEngineAggregateFromNATSNeedsClaims: apd aggregate --source reads a
// stream whose partitions the aggregators divide in the database they
// share; on the embedded engine, which has no such claims, it refuses in
// one line before it creates or connects to anything.
func TestEngineAggregateFromNATSNeedsClaims(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := t.TempDir()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "apd"), "aggregate", "--log-level", "error",
		"--source", "nats://127.0.0.1:1", "--broker", "tcp://127.0.0.1:1", "--data", data, "--http-addr", anyPort)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatal("apd aggregate --source on a file store did not refuse within 30 s")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("apd aggregate: %v", err)
	}
	refused(t, "aggregate --source on a file store", result{stdout.String(), stderr.String(), ee.ExitCode()}, 2,
		"--source needs a PostgreSQL --store")
	if entries, _ := os.ReadDir(data); len(entries) != 0 {
		t.Errorf("the refusal left %s in the data directory: it must come before anything is created", entries[0].Name())
	}
}
