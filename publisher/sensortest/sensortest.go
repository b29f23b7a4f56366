// Package sensortest helps test a sensor the way apd-publish runs it:
// built by its factory from a config table, with the unknown keys of the
// table refused, and read once through the read policy, or probed for its
// hardware in a fake sysfs tree.
package sensortest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/publisher"
)

// Read builds the sensor called name with factory from params (a
// [sensors.<name>] table, nil for none) in env and reads it once. The
// error is the factory's or the table's; a failed read is the Sample's Err.
func Read(tb testing.TB, name string, factory publisher.Factory, env publisher.Env, params map[string]any) (publisher.Sample, error) {
	tb.Helper()
	env, check := env.WithParams(params)
	s, err := factory(env)
	if err == nil {
		err = check()
	}
	if err != nil {
		return publisher.Sample{}, err
	}
	policy := publisher.ReadPolicy{Timeout: 5 * time.Second, Attempts: 1}
	return publisher.Named{Name: name, Sensor: s, Policy: policy}.Read(context.Background(), time.Now()), nil
}

// Present builds the sensor called name with factory in env, as Read
// does, and probes it: nil when its hardware is there (or it is not a
// publisher.Prober), else why it is absent.
func Present(tb testing.TB, factory publisher.Factory, env publisher.Env) error {
	tb.Helper()
	s, err := factory(env)
	if err != nil {
		tb.Fatalf("build sensor: %v", err)
	}
	return publisher.Present(s)
}

// Sysfs writes a fake file tree under a new temporary directory and
// returns the directory, to be a sensor's Env.Root: files maps a path
// below the root ("sys/class/power_supply/BAT0/type") to its contents; a
// path ending in "/" is an empty directory.
func Sysfs(tb testing.TB, files map[string]string) string {
	tb.Helper()
	root := tb.TempDir()
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return root
}
