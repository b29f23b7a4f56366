package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/alecthomas/kong"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "apd.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadAndLookup(t *testing.T) {
	f, err := Load(write(t, `
[publisher]
interval = "30s"
sensors = ["a", "b"]
[sensors.temperature]
iio_device = "/sys/x"
interval = "1m"
[[sensors.exec]]
name = "solar"
`))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.lookup("publisher.interval"); !ok || v != "30s" {
		t.Errorf("lookup = %v, %v", v, ok)
	}
	if _, ok := f.lookup("publisher.nope"); ok {
		t.Error("missing key found")
	}
	tables, err := f.Sensors()
	if err != nil || tables["temperature"]["iio_device"] != "/sys/x" || len(tables) != 1 {
		t.Errorf("sensors = %v, %v", tables, err)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(write(t, "[publisher\n")); !errors.Is(err, ErrBadConfig) {
		t.Errorf("syntax error: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, ErrBadConfig) {
		t.Errorf("missing file: %v", err)
	}
	f, _ := Load(write(t, "sensors = 3\n"))
	if _, err := f.Sensors(); !errors.Is(err, ErrBadConfig) {
		t.Errorf("sensors not a table: %v", err)
	}
	empty, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if tables, _ := empty.Sensors(); len(tables) != 0 {
		t.Error("no file gave sensor tables")
	}
}

func TestEnvNameAndFindPath(t *testing.T) {
	if got := EnvName("publisher.resend_after"); got != "APD_PUBLISHER_RESEND_AFTER" {
		t.Errorf("EnvName = %s", got)
	}
	t.Setenv("APD_CONFIG", "/from/env.toml")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--config", "a.toml"}, "a.toml"},
		{[]string{"--config=b.toml", "query"}, "b.toml"},
		{[]string{"query"}, "/from/env.toml"},
		{[]string{"--", "--config", "c.toml"}, "/from/env.toml"},
	}
	for _, tc := range tests {
		if got := FindPath(tc.args); got != tc.want {
			t.Errorf("FindPath(%v) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestSharedFlagStructs: one flag struct embedded by several commands with
// an envprefix reads each command's own section of the file and of the
// environment.
func TestSharedFlagStructs(t *testing.T) {
	type login struct {
		Username string `env:"USERNAME"`
	}
	var app struct {
		Aggregate struct {
			login `embed:"" envprefix:"APD_AGGREGATOR_"`
		} `cmd:""`
		Watch struct {
			login `embed:"" envprefix:"APD_CLIENT_"`
		} `cmd:""`
	}
	f, err := Load(write(t, "[aggregator]\nusername = \"agg\"\n[client]\nusername = \"dash\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	parser, err := kong.New(&app, kong.Resolvers(f.Resolver(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"aggregate"}); err != nil || app.Aggregate.Username != "agg" {
		t.Errorf("aggregate: %q, %v", app.Aggregate.Username, err)
	}
	t.Setenv("APD_CLIENT_USERNAME", "from-env")
	if _, err := parser.Parse([]string{"watch"}); err != nil || app.Watch.Username != "from-env" {
		t.Errorf("watch: %q, %v", app.Watch.Username, err)
	}
	keys := map[string]bool{}
	Keys(parser.Model, keys)
	if !keys["aggregator.username"] || !keys["client.username"] {
		t.Errorf("keys %v", keys)
	}
}
