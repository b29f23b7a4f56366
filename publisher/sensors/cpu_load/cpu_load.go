// Package cpu_load provides the cpu_load sensor: the share of CPU time spent
// busy, 0 to 1, across all cores.
package cpu_load

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
	"github.com/shirou/gopsutil/v3/cpu"
)

func init() {
	publisher.Register("cpu_load", New)
	schema.RegisterFormat("cpu_load", schema.FormatRatio)
}

// DefaultWindow is how long the first read samples; later reads measure the
// time since the previous read, so they return at once.
const DefaultWindow = time.Second

// Sensor reports CPU load. Times returns cumulative CPU times; tests
// replace it. Window is how long the first read samples.
type Sensor struct {
	Times  func(ctx context.Context) (cpu.TimesStat, error)
	Window time.Duration

	mu   sync.Mutex
	last *cpu.TimesStat
}

// New returns the sensor reading the system's CPU times.
func New(publisher.Env) (publisher.Sensor, error) {
	return &Sensor{Window: DefaultWindow, Times: func(ctx context.Context) (cpu.TimesStat, error) {
		ts, err := cpu.TimesWithContext(ctx, false)
		if err != nil {
			return cpu.TimesStat{}, err
		}
		if len(ts) == 0 {
			return cpu.TimesStat{}, publisher.Persistent(fmt.Errorf("no CPU times: %w", publisher.ErrNotPresent))
		}
		return ts[0], nil
	}}, nil
}

// Title implements publisher.Sensor.
func (*Sensor) Title() string { return "CPU Usage" }

// Read implements publisher.Sensor.
func (s *Sensor) Read(ctx context.Context) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		first, err := s.Times(ctx)
		if err != nil {
			return nil, err
		}
		s.last = &first
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.Window):
		}
	}
	now, err := s.Times(ctx)
	if err != nil {
		return nil, err
	}
	ratio := Busy(*s.last, now)
	s.last = &now
	return schema.Quantity{Magnitude: ratio, Unit: schema.UnitRatio}, nil
}

// Busy returns the busy share of the CPU time between two snapshots,
// rounded to three decimals. Idle and iowait count as not busy.
func Busy(a, b cpu.TimesStat) float64 {
	total := func(t cpu.TimesStat) float64 {
		return t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	}
	idle := func(t cpu.TimesStat) float64 { return t.Idle + t.Iowait }
	dt := total(b) - total(a)
	if dt <= 0 {
		return 0
	}
	r := 1 - (idle(b)-idle(a))/dt
	if r < 0 {
		r = 0
	}
	if r > 1 {
		r = 1
	}
	return float64(int64(r*1000+0.5)) / 1000
}
