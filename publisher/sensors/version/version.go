// Package version provides the version sensor: the apd, Go, OS and
// architecture this agent runs.
package version

import (
	"context"
	"runtime"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func init() {
	publisher.Register("version", New)
	schema.RegisterFormat("version", schema.FormatVersion)
}

// Sensor reports the agent's version.
type Sensor struct{ apd string }

// New returns the version sensor for env.Version.
func New(env publisher.Env) (publisher.Sensor, error) {
	v := env.Version
	if v == "" {
		v = "dev"
	}
	return Sensor{apd: v}, nil
}

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "Agent Version" }

// Read implements publisher.Sensor.
func (s Sensor) Read(context.Context) (any, error) {
	return schema.VersionInfo{Apd: s.apd, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}, nil
}
