// Package ram_available provides the ram_available sensor: memory available
// for new work without swapping, in bytes.
package ram_available

import (
	"context"
	"fmt"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
	"github.com/shirou/gopsutil/v3/mem"
)

func init() { publisher.Register("ram_available", New) }

// Sensor reports available memory.
type Sensor struct{}

// New returns the sensor.
func New(publisher.Env) (publisher.Sensor, error) { return Sensor{}, nil }

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "RAM Available" }

// Read implements publisher.Sensor.
func (Sensor) Read(ctx context.Context) (any, error) {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("read memory: %w", err)
	}
	return schema.Quantity{Magnitude: float64(vm.Available), Unit: schema.UnitBytes}, nil
}
