// Package uptime provides the uptime sensor: seconds since boot.
package uptime

import (
	"context"
	"fmt"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
	"github.com/shirou/gopsutil/v3/host"
)

func init() {
	publisher.Register("uptime", New)
	schema.RegisterFormat("uptime", schema.FormatUptime)
}

// Sensor reports the uptime.
type Sensor struct{}

// New returns the sensor.
func New(publisher.Env) (publisher.Sensor, error) { return Sensor{}, nil }

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "Uptime" }

// Read implements publisher.Sensor.
func (Sensor) Read(ctx context.Context) (any, error) {
	up, err := host.UptimeWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("read uptime: %w", err)
	}
	return schema.Quantity{Magnitude: float64(up), Unit: schema.UnitSecond}, nil
}
