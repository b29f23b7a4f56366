// Package ingesttest is what the tests of the ingestion core and of its
// transports share: a store on disk, apd's reading payloads, counting what
// was stored.
package ingesttest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/schema"
)

// OpenStore opens the embedded engine in a fresh directory, closed with
// the test.
func OpenStore(t testing.TB) store.Store {
	t.Helper()
	return OpenStoreAt(t, filepath.Join(t.TempDir(), "apd.db"), engine.Options{})
}

// OpenStoreAt opens the store at path with opts, closed with the test.
func OpenStoreAt(t testing.TB, path string, opts engine.Options) store.Store {
	t.Helper()
	st, err := engine.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Payload is a v1 reading of v °C from host's sensor with seq, stamped
// minute minutes into the current hour.
func Payload(host, sensor string, seq uint64, minute int, v float64) []byte {
	r := schema.Reading{Host: host, Sensor: sensor, Seq: seq,
		Time:  time.Now().UTC().Truncate(time.Hour).Add(time.Duration(minute) * time.Minute),
		Value: schema.Quantity{Magnitude: v, Unit: "degC"}.Raw()}
	return r.AppendJSON(nil, schema.WithIdentity)
}

// Count counts the readings st holds that q selects.
func Count(t testing.TB, st store.Reader, q store.Query) int {
	t.Helper()
	n := 0
	if err := st.Scan(q, func(*schema.Reading) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
