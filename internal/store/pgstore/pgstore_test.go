package pgstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/storetest"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestConformance runs the storage contract's suite on a throwaway
// PostgreSQL cluster, a new database for each test.
func TestConformance(t *testing.T) {
	pg := testutil.StartPostgres(t)
	storetest.Run(t, func(t *testing.T, l store.Limits) store.Store {
		s, err := Open(pg.NewDatabase(t), Options{Limits: l})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestRetentionDropsPartitions: a delete of every series up to a time
// drops the days wholly before it as partitions, deletes rows only in the
// day it cuts, counts right, and readings of a dropped day can be stored
// again afterwards.
func TestRetentionDropsPartitions(t *testing.T) {
	pg := testutil.StartPostgres(t)
	s, err := Open(pg.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var b store.Batch
	for h := 0; h < 3; h++ {
		for i := 0; i < 5*24; i++ { // five days, hourly
			b.Readings = append(b.Readings, storetest.Reading(fmt.Sprintf("h%d", h), "temperature", 0, float64(i), 0))
			b.Readings[len(b.Readings)-1].Time = t0.Add(time.Duration(i) * time.Hour)
		}
	}
	if _, err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	partitions := func() int {
		tx, _ := s.pool.Begin(context.Background())
		defer tx.Rollback(context.Background())
		days, err := partitionDays(context.Background(), tx)
		if err != nil {
			t.Fatal(err)
		}
		return len(days)
	}
	if n := partitions(); n != 5 {
		t.Fatalf("%d partitions for five days", n)
	}
	n, err := s.Delete(store.Query{Until: t0.Add(2*24*time.Hour + 6*time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3*(2*24+6) {
		t.Errorf("deleted %d, want %d", n, 3*(2*24+6))
	}
	if p := partitions(); p != 3 {
		t.Errorf("%d partitions after dropping two days", p)
	}
	hosts, _ := s.Hosts()
	if c := hosts[0].Sensors["temperature"].Count; c != 5*24-(2*24+6) {
		t.Errorf("count after retention %d", c)
	}
	// A late reading of a dropped day makes its partition again.
	late := storetest.Reading("h0", "temperature", 0, 1, 0)
	late.Time = t0.Add(time.Hour)
	res, err := s.Commit(&store.Batch{Readings: []schema.Reading{late}})
	if err != nil || res.Stored != 1 {
		t.Fatalf("a reading of a dropped day: %+v %v", res, err)
	}
}
