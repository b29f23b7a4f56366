package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportIntoRunningServer: apd import without --db writes to the
// running aggregator (which holds the store file): an NDJSON export and a
// logger's CSV go in, a second import stores nothing twice, and the
// server's export gives the first export back.
func TestImportIntoRunningServer(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	kinds, err := os.ReadFile("testdata/import-csv/kinds.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Count(string(kinds), "\n")
	s := startServe(t)
	server := "http://" + s.http
	imp := run(t, nil, "apd", "import", "--server", server, "testdata/import-csv/kinds.ndjson")
	if imp.code != 0 || !strings.Contains(imp.stderr, "imported ") {
		t.Fatalf("import: exit %d: %s", imp.code, imp.stderr)
	}
	again := run(t, []string{"APD_SERVER=" + server}, "apd", "import", "testdata/import-csv/kinds.ndjson")
	if again.code != 0 || !strings.Contains(again.stderr, "imported 0 readings") {
		t.Errorf("second import: exit %d: %s", again.code, again.stderr)
	}
	exp := run(t, nil, "apd", "export", "--server", server)
	if exp.code != 0 || len(ndjsonLines(t, exp.stdout)) != want {
		t.Fatalf("export: exit %d, %d lines, want %d: %s", exp.code, len(ndjsonLines(t, exp.stdout)), want, exp.stderr)
	}
	// The same file through a store file gives the same export.
	db := filepath.Join(src, "apd.db")
	if r := run(t, nil, "apd", "import", "--db", db, "testdata/import-csv/kinds.ndjson"); r.code != 0 {
		t.Fatalf("import --db: %s", r.stderr)
	}
	if direct := run(t, nil, "apd", "export", "--db", db); direct.stdout != exp.stdout {
		t.Errorf("export after import into the server differs from import into a file:\n%s\nvs\n%s", exp.stdout, direct.stdout)
	}

	csv := run(t, nil, "apd", "import", "--server", server, "--host", "shed", "--time-column", "Date,Time",
		"--time-format", "%d/%m/%Y %H:%M:%S", "--tz", "Europe/Amsterdam", "--unit", "Temperature=degC", "testdata/import-csv/dht22.csv")
	if csv.code != 0 || !strings.Contains(csv.stderr, "imported 9 readings") {
		t.Fatalf("CSV import: exit %d: %s", csv.code, csv.stderr)
	}
	q := run(t, nil, "apd", "query", "--server", server, "--sensor", "Temperature", "--since", "2024-01-01", "--until", "2024-02-01", "--format", "ndjson")
	if rows := ndjsonLines(t, q.stdout); len(rows) != 4 || rows[0]["host"] != "shed" {
		t.Errorf("imported Temperature: %v %s", rows, q.stderr)
	}
}
