package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/boltdb"
	"github.com/apd-telemetry/apd/internal/store/pgstore"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
	"github.com/jackc/pgx/v5"
)

// BenchmarkEnginesTicks writes a fleet's shape — 10,000 series, each with
// one reading per tick, 100 ticks (1,000,000 readings), one commit per
// tick — into the embedded engine and into PostgreSQL (on this machine,
// fsync and synchronous commit on, as in production), then measures a
// one-hour query of one series, and reports readings/s, bytes a reading
// (PostgreSQL: the readings' partitions with their indexes) and the
// query time of each, from the same run.
func BenchmarkEnginesTicks(b *testing.B) {
	const hosts, sensorsPer, ticks = 1000, 10, 100
	pg := testutil.StartPostgres(b, "fsync=on", "synchronous_commit=on", "full_page_writes=on")
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	tick := func(i int) *store.Batch {
		b := &store.Batch{Readings: make([]schema.Reading, 0, hosts*sensorsPer)}
		for h := 0; h < hosts; h++ {
			for s := 0; s < sensorsPer; s++ {
				b.Readings = append(b.Readings, schema.Reading{Host: fmt.Sprintf("pi-%04d", h), Sensor: fmt.Sprintf("s%d", s),
					Time: start.Add(time.Duration(i) * 10 * time.Second), Seq: uint64(i*sensorsPer + s + 1),
					Value: schema.Quantity{Magnitude: float64(200+(i*7+h+s)%100) / 10, Unit: "degC"}.Raw()})
			}
		}
		return b
	}
	for it := 0; it < b.N; it++ {
		for _, engine := range []string{"boltdb", "postgres"} {
			var st store.Store
			var err error
			var url string
			if engine == "boltdb" {
				st, err = boltdb.Open(filepath.Join(b.TempDir(), "apd.db"), boltdb.Options{})
			} else {
				url = pg.NewDatabase(b)
				st, err = pgstore.Open(url, pgstore.Options{})
			}
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			for i := 0; i < ticks; i++ {
				if _, err := st.Commit(tick(i)); err != nil {
					b.Fatal(err)
				}
			}
			if s, ok := st.(store.Sealer); ok {
				if err := s.SealAll(); err != nil {
					b.Fatal(err)
				}
			}
			rate := float64(hosts*sensorsPer*ticks) / time.Since(t0).Seconds()
			var size int64
			if engine == "boltdb" {
				size, _ = st.Size()
			} else {
				conn, err := pgx.Connect(context.Background(), url)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = conn.Exec(context.Background(), "VACUUM ANALYZE")
				if err := conn.QueryRow(context.Background(), `SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'apd_readings'::regclass`).Scan(&size); err != nil {
					b.Fatal(err)
				}
				conn.Close(context.Background())
			}
			var qs []time.Duration
			for q := 0; q < 50; q++ {
				t1 := time.Now()
				n := 0
				err := st.Scan(store.Query{Sensor: "s3", Hosts: []string{fmt.Sprintf("pi-%04d", q*17%hosts)}, Since: start, Until: start.Add(time.Hour)}, func(*schema.Reading) error { n++; return nil })
				if err != nil || n != 100 {
					b.Fatalf("%s query: %d readings, %v", engine, n, err)
				}
				qs = append(qs, time.Since(t1))
			}
			slices.Sort(qs)
			st.Close()
			b.ReportMetric(rate, engine+"-readings/s")
			b.ReportMetric(float64(size)/float64(hosts*sensorsPer*ticks), engine+"-bytes/reading")
			b.ReportMetric(float64(qs[len(qs)/2].Microseconds())/1000, engine+"-hour-query-ms")
		}
	}
}
