// Package disk_usage provides the disk_usage sensor: the used share of the
// file system holding a path ("/" unless configured with path = "...").
package disk_usage

import (
	"context"
	"fmt"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
	"github.com/shirou/gopsutil/v3/disk"
)

func init() { publisher.Register("disk_usage", New) }

// Sensor reports disk usage of Path.
type Sensor struct{ Path string }

// New returns the sensor for the path parameter, "/" by default.
func New(env publisher.Env) (publisher.Sensor, error) {
	p := struct {
		Path string `toml:"path"`
	}{Path: "/"}
	if err := env.Decode(&p); err != nil {
		return nil, err
	}
	return Sensor{Path: p.Path}, nil
}

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "Disk Usage" }

// Read implements publisher.Sensor.
func (s Sensor) Read(ctx context.Context) (any, error) {
	u, err := disk.UsageWithContext(ctx, s.Path)
	if err != nil {
		return nil, publisher.Persistent(fmt.Errorf("disk usage of %s: %w", s.Path, err))
	}
	return schema.Quantity{Magnitude: float64(int64(u.UsedPercent*10+0.5)) / 1000, Unit: schema.UnitRatio}, nil
}
