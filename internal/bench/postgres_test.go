package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
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
// query time of each, from the same run. PostgreSQL's days are then
// packed (what the aggregator does six hours after a day ends) and its
// bytes a reading and query time measured again.
func BenchmarkEnginesTicks(b *testing.B) {
	const hosts, sensorsPer, ticks = 1000, 10, 100
	pg := testutil.StartPostgres(b, "fsync=on", "synchronous_commit=on", "full_page_writes=on")
	// Today: the day being written is rows (an old day would go
	// straight into blocks).
	start := time.Now().UTC().Truncate(24 * time.Hour)
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
		for _, kind := range []string{"boltdb", "postgres"} {
			var st store.Store
			var err error
			var url string
			if kind == "boltdb" {
				st, err = engine.Open(filepath.Join(b.TempDir(), "apd.db"), engine.Options{})
			} else {
				url = pg.NewDatabase(b)
				st, err = engine.Open(url, engine.Options{})
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
			if kind == "boltdb" {
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
			hourQuery := func() float64 {
				var qs []time.Duration
				for q := 0; q < 50; q++ {
					t1 := time.Now()
					n := 0
					err := st.Scan(store.Query{Sensor: "s3", Hosts: []string{fmt.Sprintf("pi-%04d", q*17%hosts)}, Since: start, Until: start.Add(time.Hour)}, func(*schema.Reading) error { n++; return nil })
					if err != nil || n != 100 {
						b.Fatalf("%s query: %d readings, %v", kind, n, err)
					}
					qs = append(qs, time.Since(t1))
				}
				slices.Sort(qs)
				return float64(qs[len(qs)/2].Microseconds()) / 1000
			}
			b.ReportMetric(rate, kind+"-readings/s")
			b.ReportMetric(float64(size)/float64(hosts*sensorsPer*ticks), kind+"-bytes/reading")
			b.ReportMetric(hourQuery(), kind+"-hour-query-ms")
			if p, ok := st.(store.Packer); ok {
				t2 := time.Now()
				if _, err := p.Pack(context.Background(), -48*time.Hour); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(hosts*sensorsPer*ticks)/time.Since(t2).Seconds(), kind+"-packed-readings/s")
				b.ReportMetric(float64(pgPackedSize(b, url))/float64(hosts*sensorsPer*ticks), kind+"-packed-bytes/reading")
				b.ReportMetric(hourQuery(), kind+"-packed-hour-query-ms")
			}
			st.Close()
		}
	}
}

// pgPackedSize is the size of the packed partitions with their indexes.
func pgPackedSize(b *testing.B, url string) int64 {
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, _ = conn.Exec(context.Background(), "VACUUM ANALYZE")
	var size int64
	if err := conn.QueryRow(context.Background(), `SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits WHERE inhparent = 'apd_packed'::regclass`).Scan(&size); err != nil {
		b.Fatal(err)
	}
	return size
}

// BenchmarkPostgresQueryOneHour is BenchmarkQueryOneHour on PostgreSQL:
// one hour of one sensor of one host (360 readings at 10 s) from
// 1,000,000 readings, or APD_QUERY_READINGS (the target's 50,000,000; the
// readings are of days long over, so they are written straight into the
// packed layout). It reports bytes a reading of the packed partitions and
// of the whole database too.
//
//	APD_QUERY_READINGS=50000000 go test -run '^$' -bench PostgresQueryOneHour -benchtime 200x -timeout 60m ./internal/bench/
func BenchmarkPostgresQueryOneHour(b *testing.B) {
	readings := 1_000_000
	if n, err := strconv.Atoi(os.Getenv("APD_QUERY_READINGS")); err == nil && n > 0 {
		readings = n
	}
	pg := testutil.StartPostgres(b)
	url := pg.NewDatabase(b)
	st, err := engine.Open(url, engine.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	t0 := time.Now()
	fillSynthetic(b, st, max(readings/100_000, 1), []string{"temperature"}, 100_000, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 10*time.Second)
	b.Logf("wrote %d readings in %s", readings, time.Since(t0).Round(time.Second))
	stored := max(readings/100_000, 1) * 100_000
	rate := float64(stored) / time.Since(t0).Seconds()
	packed := float64(pgPackedSize(b, url)) / float64(stored)
	size, err := st.Size()
	if err != nil {
		b.Fatal(err)
	}
	since := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	q := store.Query{Sensor: "temperature", Hosts: []string{"pi-005"}, Since: since, Until: since.Add(time.Hour)}
	for b.Loop() {
		n := 0
		if err := st.Scan(q, func(*schema.Reading) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != 360 {
			b.Fatalf("got %d readings", n)
		}
	}
	b.ReportMetric(rate, "write-readings/s")
	b.ReportMetric(packed, "packed-bytes/reading")
	b.ReportMetric(float64(size)/float64(stored), "database-bytes/reading")
}
