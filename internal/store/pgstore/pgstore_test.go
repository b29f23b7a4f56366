package pgstore

import (
	"testing"

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
