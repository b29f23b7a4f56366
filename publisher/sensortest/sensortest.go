// Package sensortest helps test a sensor the way apd-publish runs it:
// built by its factory from a config table, with the unknown keys of the
// table refused, and read once through the read policy.
package sensortest

import (
	"context"
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
