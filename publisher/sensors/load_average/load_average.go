// Package load_average provides the load_average sensor: the one-minute
// system load average.
package load_average

import (
	"context"
	"fmt"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/shirou/gopsutil/v3/load"
)

func init() { publisher.Register("load_average", New) }

// Sensor reports the load average.
type Sensor struct{}

// New returns the sensor.
func New(publisher.Env) (publisher.Sensor, error) { return Sensor{}, nil }

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "Load Average (1 min)" }

// Read implements publisher.Sensor. The value is a plain number: load has
// no unit.
func (Sensor) Read(ctx context.Context) (any, error) {
	avg, err := load.AvgWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("read load average: %w", err)
	}
	return avg.Load1, nil
}
