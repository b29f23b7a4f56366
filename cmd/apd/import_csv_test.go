package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportCSVRoundTrip: what apd export --format csv writes, apd import
// --format csv stores again such that a second export is the same bytes,
// for every kind of value.
func TestImportCSVRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.db"), filepath.Join(dir, "second.db")
	if r := run(t, nil, "apd", "import", "--db", first, "testdata/import-csv/kinds.ndjson", "testdata/query/import.ndjson"); r.code != 0 {
		t.Fatalf("import ndjson: %d %s", r.code, r.stderr)
	}
	exported := filepath.Join(dir, "first.csv")
	if r := run(t, nil, "apd", "export", "--db", first, "--format", "csv", "-o", exported); r.code != 0 {
		t.Fatalf("export: %d %s", r.code, r.stderr)
	}
	r := run(t, nil, "apd", "import", "--db", second, "--format", "csv", exported)
	if r.code != 0 || !strings.Contains(r.stderr, "imported 23 readings (0 already stored)") || strings.Contains(r.stderr, "skipped") {
		t.Fatalf("import csv: %d %s", r.code, r.stderr)
	}
	again := run(t, nil, "apd", "export", "--db", second, "--format", "csv")
	want, err := os.ReadFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	if again.code != 0 || again.stdout != string(want) {
		t.Errorf("second export differs from the first:\ngot\n%s\nwant\n%s", again.stdout, want)
	}
	for _, part := range []string{
		`shed,power,2026-11-23T12:15:00.000Z,,"{""magnitude"":230.5,""unit"":""W"",""phase"":""L1""}",,230.5 W,,,"{""note"":{""source"":""meter""}}"`,
		`shed,count,2026-11-23T12:15:00.000Z,,"{""magnitude"":7,""unit"":""""}",,7,,,`,
		`pi-kitchen,battery,2026-11-23T12:00:00.000Z,107,,,,persistent: no battery: /sys/class/power_supply is empty,Battery,`,
	} {
		if !strings.Contains(string(want), part) {
			t.Errorf("export lacks %s:\n%s", part, want)
		}
	}
	// The values themselves came back, not only their text.
	nd := run(t, nil, "apd", "export", "--db", second, "--sensor", "power")
	if !strings.Contains(nd.stdout, `"value":{"magnitude":230.5,"unit":"W","phase":"L1"},"human":"230.5 W","note":{"source":"meter"}}`) {
		t.Errorf("power read back as %s", nd.stdout)
	}
}

// TestImportCSVLogger imports a DHT22 logger's file with column options
// and queries it back; its bad rows are reported by line, the rest stored.
func TestImportCSVLogger(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "apd.db")
	r := run(t, nil, "apd", "import", "--db", db, "--host", "shed",
		"--time-column", "Date,Time", "--time-format", "%d/%m/%Y %H:%M:%S", "--tz", "Europe/Amsterdam",
		"--unit", "Temperature=degC", "--unit", "Humidity=percent", "testdata/import-csv/dht22.csv")
	if r.code != 0 {
		t.Fatalf("import: %d %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"imported 9 readings (0 already stored)",
		"dht22.csv: Temperature → Temperature (degC), Humidity → Humidity (percent)\n",
		"dht22.csv: left out column Notes: not numbers (line 3: \"window open\")\n",
		"skipped 2 rows and 1 value that could not be read:\n",
		"  testdata/import-csv/dht22.csv line 4, column Temperature: \"nan\" is not a number\n",
		"  testdata/import-csv/dht22.csv line 5: 3 fields, the header has 5\n",
		"  testdata/import-csv/dht22.csv line 7: time \"31/02/2024 08:50:00\" is not in the format %d/%m/%Y %H:%M:%S\n",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	q := run(t, nil, "apd", "query", "--db", db, "--sensor", "Temperature", "--since", "2024-01-01", "--until", "2024-02-01", "--unit", "degF", "--format", "csv")
	want := `host,sensor,ts,seq,value,unit,human,error,title,extra
shed,Temperature,2024-01-15T07:00:00.000Z,,67.1,degF,67.1 °F,,,
shed,Temperature,2024-01-15T07:10:00.000Z,,67.46,degF,67.5 °F,,,
shed,Temperature,2024-01-15T07:40:00.000Z,,68.54,degF,68.5 °F,,,
shed,Temperature,2024-01-15T08:00:00.000Z,,69.08,degF,69.1 °F,,,
`
	if q.code != 0 || q.stdout != want {
		t.Errorf("query: %d %s\ngot\n%s\nwant\n%s", q.code, q.stderr, q.stdout, want)
	}
	h := run(t, nil, "apd", "query", "--db", db, "--sensor", "Humidity", "--since", "2024-01-01", "--agg", "count", "--format", "csv")
	if !strings.Contains(h.stdout, ",5,") {
		t.Errorf("humidity count: %s %s", h.stdout, h.stderr)
	}
	// Importing the same file again stores nothing twice.
	r = run(t, nil, "apd", "import", "--db", db, "--host", "shed", "--time-column", "Date,Time", "--time-format", "%d/%m/%Y %H:%M:%S",
		"--tz", "Europe/Amsterdam", "--unit", "Temperature=degC", "--unit", "Humidity=percent", "testdata/import-csv/dht22.csv")
	if r.code != 0 || !strings.Contains(r.stderr, "imported 0 readings (9 already stored)") {
		t.Errorf("import again: %d %s", r.code, r.stderr)
	}
	// --strict stops at the first bad row, saying where.
	r = run(t, nil, "apd", "import", "--db", filepath.Join(t.TempDir(), "strict.db"), "--strict", "--host", "shed",
		"--time-format", "%d/%m/%Y %H:%M:%S", "testdata/import-csv/dht22.csv")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "apd: import testdata/import-csv/dht22.csv: line 4, column Temperature: \"nan\" is not a number\nTry: ") {
		t.Errorf("strict: %d %s", r.code, r.stderr)
	}
}

// TestImportCSVWithoutFormat: a CSV given as NDJSON is refused in one line
// that says what to do, with the usage exit code; a file named *.csv is
// taken as CSV without being told.
func TestImportCSVWithoutFormat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logged := filepath.Join(dir, "log.txt")
	if err := os.WriteFile(logged, []byte("ts,host,temp_c\n2024-01-15T08:00:00Z,pi,19.5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "apd.db")
	r := run(t, nil, "apd", "import", "--db", db, logged)
	if want := "apd: import " + logged + ": line 1 looks like CSV (ts,host,temp_c): use --format csv\n"; r.code != 2 || r.stderr != want {
		t.Errorf("got %d %q, want 2 %q", r.code, r.stderr, want)
	}
	named := filepath.Join(dir, "log.csv")
	if err := os.Rename(logged, named); err != nil {
		t.Fatal(err)
	}
	if r := run(t, nil, "apd", "import", "--db", db, named); r.code != 0 || !strings.Contains(r.stderr, "imported 1 readings") {
		t.Errorf("log.csv: %d %s", r.code, r.stderr)
	}
	// A logger's file without its host is refused before anything is read.
	r = run(t, nil, "apd", "import", "--db", db, "testdata/import-csv/dht22.csv")
	if r.code != 2 || !strings.Contains(r.stderr, "which host are these readings of?") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("no host: %d %s", r.code, r.stderr)
	}
}
