package ingest_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// openStore opens the embedded engine in a fresh directory, closed with
// the test.
func openStore(t *testing.T) store.Store {
	t.Helper()
	return openStoreAt(t, filepath.Join(t.TempDir(), "apd.db"), engine.Options{})
}

func openStoreAt(t *testing.T, path string, opts engine.Options) store.Store {
	t.Helper()
	st, err := engine.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func payload(host, sensor string, seq uint64, minute int, v float64) []byte {
	r := schema.Reading{Host: host, Sensor: sensor, Seq: seq,
		Time:  time.Now().UTC().Truncate(time.Hour).Add(time.Duration(minute) * time.Minute),
		Value: schema.Quantity{Magnitude: v, Unit: "degC"}.Raw()}
	return r.AppendJSON(nil, schema.WithIdentity)
}

func count(t *testing.T, st store.Reader, q store.Query) int {
	t.Helper()
	n := 0
	if err := st.Scan(q, func(*schema.Reading) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, 10*time.Second, cond)
}
