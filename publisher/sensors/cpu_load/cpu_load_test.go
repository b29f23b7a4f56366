package cpu_load

import (
	"context"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
	"github.com/shirou/gopsutil/v3/cpu"
)

func TestBusy(t *testing.T) {
	tests := []struct {
		name string
		a, b cpu.TimesStat
		want float64
	}{
		{"idle", cpu.TimesStat{Idle: 100}, cpu.TimesStat{Idle: 200}, 0},
		{"all busy", cpu.TimesStat{User: 10}, cpu.TimesStat{User: 20}, 1},
		{"9.8 percent", cpu.TimesStat{User: 0, Idle: 0}, cpu.TimesStat{User: 9.8, Idle: 90.2}, 0.098},
		{"iowait is idle", cpu.TimesStat{}, cpu.TimesStat{System: 5, Iowait: 5, Idle: 10}, 0.25},
		{"no time passed", cpu.TimesStat{User: 1}, cpu.TimesStat{User: 1}, 0},
	}
	for _, tc := range tests {
		if got := Busy(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: Busy = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReadUsesPreviousSnapshot(t *testing.T) {
	snaps := []cpu.TimesStat{{User: 0, Idle: 0}, {User: 1, Idle: 3}, {User: 2, Idle: 6}}
	i := 0
	s := &Sensor{Window: time.Millisecond, Times: func(context.Context) (cpu.TimesStat, error) { i++; return snaps[i-1], nil }}
	v, err := s.Read(context.Background())
	if err != nil || v.(schema.Quantity).Magnitude != 0.25 {
		t.Fatalf("first read %v, %v", v, err)
	}
	v, _ = s.Read(context.Background())
	if q := v.(schema.Quantity); q.Magnitude != 0.25 || q.Unit != "ratio" || i != 3 {
		t.Fatalf("second read %v after %d snapshots", v, i)
	}
}
