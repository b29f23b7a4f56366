package boltdb

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/procio"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// BenchmarkCheckpointWear measures what deferred commits write for a home
// fleet (10 hosts × 13 sensors, a commit a 10 s tick, on a fake clock)
// per checkpoint interval: the write-ahead file's page a tick and the
// checkpoint's bbolt commit, from this process's /proc/self/io
// (write_bytes less cancelled), scaled to a day. The file is beside the
// package, not in the temporary directory, which may be a tmpfs.
//
//	go test -run '^$' -bench CheckpointWear -benchtime 1x ./internal/store/boltdb/
func BenchmarkCheckpointWear(b *testing.B) {
	if _, err := procio.Self(); err != nil {
		b.Skip(err)
	}
	sensors := []string{"cpu_load", "ram_available", "disk_usage", "load_average", "uptime", "cpu_temperature", "version",
		"ip_addresses", "ac_connected", "temperature", "relative_humidity", "battery", "probe_temperature"}
	for _, every := range []time.Duration{5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour} {
		b.Run(every.String(), func(b *testing.B) {
			for range b.N {
				dir, err := os.MkdirTemp(".", "wear-")
				if err != nil {
					b.Fatal(err)
				}
				defer os.RemoveAll(dir)
				clock := &fakeClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
				s, err := Open(filepath.Join(dir, "apd.db"), Options{CheckpointEvery: 24 * time.Hour, Now: clock.Now})
				if err != nil {
					b.Fatal(err)
				}
				seq := uint64(0)
				tick := func() []schema.Reading {
					seq++
					var rs []schema.Reading
					for h := range 10 {
						for i, name := range sensors {
							v := 100000 + int(seq)*7919%1000 + i*31
							rs = append(rs, schema.Reading{Host: fmt.Sprintf("pi-%02d", h), Sensor: name, Time: clock.Now(),
								Seq: (seq-1)*uint64(len(sensors)) + uint64(i) + 1, Title: "Title of " + name,
								Human: fmt.Sprintf("%d.%d MiB", v/1000, h), Value: json.RawMessage(fmt.Sprintf(`{"magnitude":%d.%d,"unit":"B"}`, v, h))})
						}
					}
					return rs
				}
				commit := func() {
					clock.Add(10 * time.Second)
					if _, err := s.Commit(&store.Batch{Readings: tick()}); err != nil {
						b.Fatal(err)
					}
				}
				for range 720 { // two hours of history first
					commit()
				}
				if err := s.Checkpoint(); err != nil {
					b.Fatal(err)
				}
				ticks := int(every / (10 * time.Second))
				before, _ := procio.Self()
				for range ticks {
					commit()
				}
				deferred, _ := procio.Self()
				if err := s.Checkpoint(); err != nil {
					b.Fatal(err)
				}
				after, _ := procio.Self()
				s.Close()
				perTick := float64(deferred.Written()-before.Written()) / float64(ticks)
				checkpoint := float64(after.Written() - deferred.Written())
				perDay := (perTick*float64(ticks) + checkpoint) / float64(ticks) * 8640 / 1e6
				b.ReportMetric(perTick, "B/tick")
				b.ReportMetric(checkpoint/1e3, "kB/checkpoint")
				b.ReportMetric(perDay, "MB/day")
			}
		})
	}
}
