package main_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestServeOnPostgres: apd serve --store postgres://… stores what
// apd-publish sends, and query, hosts and export answer from it, through
// the server and straight from the database.
func TestServeOnPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase(t)
	s := startServe(t, "--store", url)
	if !strings.Contains(s.log.String(), "postgres://apd@") {
		t.Errorf("the log does not name the database: %s", s.log)
	}
	spool := filepath.Join(t.TempDir(), "spool.db")
	for range 2 {
		if r := run(t, nil, "apd-publish", "--broker", "tcp://"+s.mqtt, "--host", "pi-pg", "--once", "--sensors", "uptime,version", "--spool", spool); r.code != 0 {
			t.Fatalf("publish: %s", r.stderr)
		}
	}
	srv := "http://" + s.http
	testutil.WaitFor(t, "readings stored", 10*time.Second, func() bool {
		r := run(t, nil, "apd", "query", "--server", srv, "--sensor", "uptime", "--format", "ndjson")
		return len(ndjsonLines(t, r.stdout)) == 2
	})
	hosts := run(t, nil, "apd", "hosts", "--server", srv)
	if !strings.Contains(hosts.stdout, "pi-pg") {
		t.Errorf("hosts: %s", hosts.stdout)
	}
	s.stop(t)
	direct := run(t, nil, "apd", "export", "--db", url)
	if n := len(ndjsonLines(t, direct.stdout)); direct.code != 0 || n != 4 {
		t.Errorf("export straight from PostgreSQL: exit %d, %d lines, %s", direct.code, n, direct.stderr)
	}
	bad := run(t, nil, "apd", "hosts", "--db", "postgres://apd@127.0.0.1:1/nope?sslmode=disable&connect_timeout=2")
	if bad.code != 19 || strings.Count(strings.TrimSpace(bad.stderr), "\n") > 1 {
		t.Errorf("an unreachable database: exit %d, %q", bad.code, bad.stderr)
	}
}

// TestMigrateRoundTrip: a file of 1,000,000 readings (and names, colours,
// locations, statuses and dead letters) copied into PostgreSQL and back
// exports byte for byte as the original does.
func TestMigrateRoundTrip(t *testing.T) {
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase(t)
	readings := 1_000_000
	if testing.Short() {
		readings = 20_000
	}
	var b strings.Builder
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	const hosts = 100
	for h := 0; h < hosts; h++ {
		for i := 0; i < readings/hosts; i++ {
			fmt.Fprintf(&b, `{"v":1,"host":"pi-%03d","sensor":"temperature","ts":%q,"seq":%d,"value":{"magnitude":%.1f,"unit":"degC"}}`+"\n",
				h, t0.Add(time.Duration(i)*10*time.Second).Format("2006-01-02T15:04:05.000Z"), i+1, 15+float64((i*7+h)%100)/10)
		}
	}
	fmt.Fprintf(&b, `{"v":1,"host":"pi-000","sensor":"note","ts":"2026-11-02T00:00:00.000Z","value":{"text":"odd","n":[1, 2]},"human":"as sent"}`+"\n")
	file := writeFile(t, "in.ndjson", b.String())
	orig := filepath.Join(t.TempDir(), "orig.db")
	if r := run(t, nil, "apd", "import", "--db", orig, file); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	if r := run(t, nil, "apd", "hosts", "set", "pi-007", "--db", orig, "--name", "Lab 7", "--colour", "#123456", "--location", "48.2,16.37"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	want := run(t, nil, "apd", "export", "--db", orig)
	start := time.Now()
	to := run(t, nil, "apd", "migrate", "--from", orig, "--to", url)
	if to.code != 0 || !strings.Contains(to.stderr, fmt.Sprintf("copied %d readings, %d hosts", readings+1, hosts)) {
		t.Fatalf("migrate to PostgreSQL: exit %d: %s", to.code, to.stderr)
	}
	t.Logf("file → PostgreSQL: %s (%s)", time.Since(start).Round(time.Millisecond), strings.TrimSpace(lastLine(to.stderr)))
	if mid := run(t, nil, "apd", "export", "--db", url); mid.stdout != want.stdout {
		t.Fatalf("the export from PostgreSQL differs from the original's (%d vs %d bytes)", len(mid.stdout), len(want.stdout))
	}
	back := filepath.Join(t.TempDir(), "back.db")
	start = time.Now()
	if r := run(t, nil, "apd", "migrate", "--from", url, "--to", back); r.code != 0 {
		t.Fatalf("migrate back: %s", r.stderr)
	}
	t.Logf("PostgreSQL → file: %s", time.Since(start).Round(time.Millisecond))
	if got := run(t, nil, "apd", "export", "--db", back); got.stdout != want.stdout {
		t.Fatalf("the export after the round trip differs (%d vs %d bytes)", len(got.stdout), len(want.stdout))
	}
	hostsOrig := run(t, nil, "apd", "hosts", "--db", orig, "--json")
	hostsBack := run(t, nil, "apd", "hosts", "--db", back, "--json")
	if hostsOrig.stdout != hostsBack.stdout {
		t.Errorf("hosts differ after the round trip:\n%.500s\n%.500s", hostsOrig.stdout, hostsBack.stdout)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
