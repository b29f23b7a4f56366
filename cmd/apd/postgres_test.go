package main_test

import (
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
