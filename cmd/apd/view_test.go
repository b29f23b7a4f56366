package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFile writes text to a new file in the test's directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestQueryClean: the temperature cleaner over imported readings
// [21, 61, 21] leaves [21, 21], on a file and through a running server.
func TestQueryClean(t *testing.T) {
	file := writeFile(t, "in.ndjson", `{"v":1,"host":"pi","sensor":"temperature","ts":"2026-12-01T12:00:00.000Z","value":{"magnitude":21,"unit":"degC"}}
{"v":1,"host":"pi","sensor":"temperature","ts":"2026-12-01T12:01:00.000Z","value":{"magnitude":61,"unit":"degC"}}
{"v":1,"host":"pi","sensor":"temperature","ts":"2026-12-01T12:02:00.000Z","value":{"magnitude":21,"unit":"degC"}}
`)
	db := filepath.Join(t.TempDir(), "apd.db")
	if r := run(t, nil, "apd", "import", "--db", db, file); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	values := func(out string) []float64 {
		var vs []float64
		for _, row := range ndjsonLines(t, out) {
			vs = append(vs, row["value"].(map[string]any)["magnitude"].(float64))
		}
		return vs
	}
	args := []string{"query", "--sensor", "temperature", "--since", "2026-12-01", "--until", "2026-12-02", "--format", "ndjson"}
	raw := run(t, nil, "apd", append(args, "--db", db)...)
	if got := values(raw.stdout); len(got) != 3 {
		t.Fatalf("without a cleaner: %v (%s)", got, raw.stderr)
	}
	r := run(t, nil, "apd", append(args, "--db", db, "--clean", "temperature")...)
	if got := values(r.stdout); r.code != 0 || len(got) != 2 || got[0] != 21 || got[1] != 21 {
		t.Fatalf("--clean temperature: exit %d, %v, %s", r.code, got, r.stderr)
	}
	bad := run(t, nil, "apd", append(args, "--db", db, "--clean", "nope")...)
	if bad.code != 2 || !strings.Contains(bad.stderr, "temperature") {
		t.Errorf("unknown cleaner: exit %d, %s", bad.code, bad.stderr)
	}

	s := startServe(t)
	s.stop(t)
	if r := run(t, nil, "apd", "import", "--db", filepath.Join(s.data, "apd.db"), file); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	s = startServeOn(t, s.data, s.mqtt, s.http)
	r = run(t, nil, "apd", append(args, "--server", "http://"+s.http, "--clean", "temperature")...)
	if got := values(r.stdout); r.code != 0 || len(got) != 2 {
		t.Fatalf("--clean temperature through the server: exit %d, %v, %s", r.code, got, r.stderr)
	}
}

// TestHostsSet: names, colours and locations set on a file and through a
// server show in apd hosts, survive export → import into a new file, and
// --unset clears them.
func TestHostsSet(t *testing.T) {
	file := writeFile(t, "in.ndjson", `{"v":1,"host":"pi-kitchen","sensor":"temperature","ts":"2026-12-01T12:00:00.000Z","value":21}
{"v":1,"host":"pi-attic","sensor":"temperature","ts":"2026-12-01T12:00:00.000Z","value":25}
`)
	db := filepath.Join(t.TempDir(), "apd.db")
	if r := run(t, nil, "apd", "import", "--db", db, file); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	set := run(t, nil, "apd", "hosts", "set", "pi-kitchen", "--db", db, "--name", "Kitchen", "--colour", "#CC3300", "--location", "52.37,4.89")
	if set.code != 0 || !strings.Contains(set.stdout, `name "Kitchen", colour #cc3300, location 52.37,4.89`) {
		t.Fatalf("hosts set: exit %d, %s%s", set.code, set.stdout, set.stderr)
	}
	if r := run(t, nil, "apd", "hosts", "set", "pi-kitchen", "--db", db, "--name", "Kitchen ☕"); r.code != 0 {
		t.Fatalf("rename: %s", r.stderr)
	}
	for _, bad := range [][]string{{"--colour", "red"}, {"--location", "95,1"}, {"--location", "52.37"}, {}} {
		if r := run(t, nil, "apd", append([]string{"hosts", "set", "pi-kitchen", "--db", db}, bad...)...); r.code != 2 {
			t.Errorf("hosts set %v: exit %d, %s", bad, r.code, r.stderr)
		}
	}
	type host struct {
		Host     string
		Name     string
		Colour   string
		Location *struct{ Lat, Lon float64 }
	}
	hosts := func(args ...string) map[string]host {
		t.Helper()
		r := run(t, nil, "apd", append([]string{"hosts", "--json"}, args...)...)
		var hs []host
		if err := json.Unmarshal([]byte(r.stdout), &hs); err != nil {
			t.Fatalf("hosts --json: %v: %s%s", err, r.stdout, r.stderr)
		}
		m := map[string]host{}
		for _, h := range hs {
			m[h.Host] = h
		}
		return m
	}
	check := func(where string, m map[string]host) {
		t.Helper()
		k := m["pi-kitchen"]
		if k.Name != "Kitchen ☕" || k.Colour != "#cc3300" || k.Location == nil || k.Location.Lat != 52.37 || k.Location.Lon != 4.89 {
			t.Errorf("%s: pi-kitchen %+v", where, k)
		}
		if a := m["pi-attic"]; a.Name != "" || a.Colour != "" || a.Location != nil {
			t.Errorf("%s: pi-attic %+v", where, a)
		}
	}
	check("file", hosts("--db", db))
	table := run(t, nil, "apd", "hosts", "--db", db)
	if !strings.Contains(table.stdout, "Kitchen ☕") {
		t.Errorf("apd hosts does not show the name:\n%s", table.stdout)
	}

	exp := run(t, nil, "apd", "export", "--db", db)
	copyDB := filepath.Join(t.TempDir(), "copy.db")
	exported := writeFile(t, "export.ndjson", exp.stdout)
	imp := run(t, nil, "apd", "import", "--db", copyDB, exported)
	if imp.code != 0 || !strings.Contains(imp.stderr, "of 1 hosts") {
		t.Fatalf("import: exit %d, %s", imp.code, imp.stderr)
	}
	check("imported", hosts("--db", copyDB))
	if again := run(t, nil, "apd", "export", "--db", copyDB); again.stdout != exp.stdout {
		t.Errorf("export → import → export changed:\n%s\n%s", exp.stdout, again.stdout)
	}

	s := startServe(t)
	s.stop(t)
	if r := run(t, nil, "apd", "import", "--db", filepath.Join(s.data, "apd.db"), exported); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	s = startServeOn(t, s.data, s.mqtt, s.http)
	srv := "http://" + s.http
	check("server", hosts("--server", srv))
	if r := run(t, nil, "apd", "hosts", "set", "pi-attic", "--server", srv, "--colour", "#0a0"); r.code != 0 {
		t.Fatalf("hosts set through the server: %s", r.stderr)
	}
	if a := hosts("--server", srv)["pi-attic"]; a.Colour != "#0a0" {
		t.Errorf("pi-attic after set: %+v", a)
	}
	if r := run(t, nil, "apd", "hosts", "set", "pi-kitchen", "--server", srv, "--unset"); r.code != 0 {
		t.Fatalf("unset: %s", r.stderr)
	}
	if k := hosts("--server", srv)["pi-kitchen"]; k.Name != "" || k.Colour != "" || k.Location != nil {
		t.Errorf("pi-kitchen after --unset: %+v", k)
	}
}
