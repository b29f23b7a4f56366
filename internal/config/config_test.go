package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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
