package engine_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, location string
		engine         string
		target         string
	}{
		{"relative path", "apd-data/apd.db", "the embedded engine", "apd-data/apd.db"},
		{"absolute path", "/srv/apd/apd.db", "the embedded engine", "/srv/apd/apd.db"},
		{"colon in a file name", "backup:2026-12-01.db", "the embedded engine", "backup:2026-12-01.db"},
		{"windows drive", `C:\apd\apd.db`, "the embedded engine", `C:\apd\apd.db`},
		{"file: relative", "file:apd.db", "the embedded engine", "apd.db"},
		{"file: absolute", "file:///srv/apd.db", "the embedded engine", "/srv/apd.db"},
		{"file: localhost", "file://localhost/srv/apd.db", "the embedded engine", "/srv/apd.db"},
		{"file: escaped", "file:///srv/my%20apd.db", "the embedded engine", "/srv/my apd.db"},
		{"postgres", "postgres://apd@db.example/apd", "the PostgreSQL engine", "postgres://apd@db.example/apd"},
		{"postgresql", "postgresql://apd@db.example/apd?sslmode=disable", "the PostgreSQL engine", "postgresql://apd@db.example/apd?sslmode=disable"},
		{"scheme in capitals", "POSTGRES://apd@db.example/apd", "the PostgreSQL engine", "POSTGRES://apd@db.example/apd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := engine.Parse(tt.location)
			if err != nil {
				t.Fatal(err)
			}
			if got := loc.Engine.Name(); got != tt.engine {
				t.Errorf("engine: got %q, want %q", got, tt.engine)
			}
			if loc.Target != tt.target {
				t.Errorf("target: got %q, want %q", loc.Target, tt.target)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, location string
		unknown        bool   // wraps ErrUnknownScheme
		want           string // in the message
	}{
		{"unknown scheme", "mysql://apd@db.example/apd", true, `unknown storage scheme "mysql:" in mysql://apd@db.example/apd; apd stores in a file (a path or file:PATH), postgres:// or postgresql://`},
		{"password left out", "mysql://apd:secret@db.example/apd", true, `mysql://apd:xxxxx@db.example/apd;`},
		{"s3", "s3://bucket/apd.db", true, `"s3:"`},
		{"file on another host", "file://nas/srv/apd.db", false, "not on nas"},
		{"file with a query", "file:apd.db?mode=ro", false, "no query"},
		{"empty", "", false, "no storage location"},
		{"file: naming nothing", "file:", false, "no file named"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := engine.Parse(tt.location)
			if err == nil {
				t.Fatalf("Parse(%q) = nil error", tt.location)
			}
			if got := errors.Is(err, engine.ErrUnknownScheme); got != tt.unknown {
				t.Errorf("errors.Is(ErrUnknownScheme) = %v, want %v (%v)", got, tt.unknown, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the message shows the password: %q", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestEmbeddedCapabilities opens a file through a file: URL, writes to
// it, and has the engine compact and verify it by location.
func TestEmbeddedCapabilities(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "apd.db")
	st, err := engine.Open("file://"+path, engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var b store.Batch
	for i := range 2000 {
		b.Readings = append(b.Readings, schema.Reading{Host: "pi", Sensor: "temperature", Time: ts.Add(time.Duration(i) * time.Second), Seq: uint64(i + 1), Value: []byte(`21.5`)})
	}
	if _, err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(store.Query{Hosts: []string{"pi"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	loc, err := engine.Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := loc.Engine.(engine.Compacter)
	if !ok {
		t.Fatalf("%s is no Compacter", loc.Engine.Name())
	}
	before, after, err := c.Compact(loc.Target)
	if err != nil {
		t.Fatal(err)
	}
	if after >= before {
		t.Errorf("compact: %d → %d bytes, want smaller", before, after)
	}
	v, ok := loc.Engine.(engine.Verifier)
	if !ok {
		t.Fatalf("%s is no Verifier", loc.Engine.Name())
	}
	if err := v.Verify(loc.Target); err != nil {
		t.Fatalf("verify a sound file: %v", err)
	}
	if err := os.Truncate(path, after/2); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(loc.Target); err == nil {
		t.Error("verify passed a file cut in half")
	}
}

func TestOpenOptions(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "apd.db")
	if _, err := engine.Open(path, engine.Options{ReadOnly: true}); err == nil {
		t.Error("read-only open of a missing file succeeded")
	}
	st, err := engine.Open(path, engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = engine.Open(path, engine.Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, store.ErrLocked) {
		t.Errorf("second open of a held file: got %v, want store.ErrLocked", err)
	}
}

func TestPostgresHasNoFileCapabilities(t *testing.T) {
	t.Parallel()
	loc, err := engine.Parse("postgres://apd@db.example/apd")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := loc.Engine.(engine.Compacter); ok {
		t.Error("PostgreSQL is a Compacter: it has no file to rewrite")
	}
	if _, ok := loc.Engine.(engine.Verifier); ok {
		t.Error("PostgreSQL is a Verifier: it has no file to check")
	}
}

// TestOpenPassesLimits: each engine opened through the registry keeps
// the dead letters within the Limits given, and is the store.Store of
// its package (the capabilities it has are there to ask for).
func TestOpenPassesLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		location func(t *testing.T) string
		packs    bool // a store.Packer
	}{
		{"embedded", func(t *testing.T) string { return filepath.Join(t.TempDir(), "apd.db") }, false},
		{"postgres", func(t *testing.T) string { return testutil.StartPostgres(t).NewDatabase(t) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st, err := engine.Open(tt.location(t), engine.Options{NoSync: true, Limits: store.Limits{MaxDeadLetters: 2}})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			received := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
			var b store.Batch
			for i := range 3 {
				b.DeadLetters = append(b.DeadLetters, store.DeadLetter{Received: received.Add(time.Duration(i) * time.Second), Topic: "apd/pi/x", Reason: "invalid_json", Payload: []byte("{")})
			}
			if _, err := st.Commit(&b); err != nil {
				t.Fatal(err)
			}
			stats, err := st.DeadLetterStats()
			if err != nil {
				t.Fatal(err)
			}
			if stats.Count != 2 || stats.Dropped != 1 {
				t.Errorf("dead letters: got %d kept, %d dropped; want 2 and 1", stats.Count, stats.Dropped)
			}
			if _, ok := st.(store.Packer); ok != tt.packs {
				t.Errorf("store.Packer: got %v, want %v", ok, tt.packs)
			}
			if _, ok := st.(store.HostRestorer); !ok {
				t.Error("not a store.HostRestorer")
			}
		})
	}
}

// TestSharedEngines: only the engine several aggregators write to at once
// says so; apd aggregate --source asks before it opens anything.
func TestSharedEngines(t *testing.T) {
	for _, e := range engine.Engines() {
		_, shared := e.(engine.Shared)
		if want := e.Name() == (engine.Postgres{}).Name(); shared != want {
			t.Errorf("%s: Shared = %v, want %v", e.Name(), shared, want)
		}
	}
}
