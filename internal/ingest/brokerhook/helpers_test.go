package brokerhook_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/brokerhook"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// openStore opens the embedded engine at path (a fresh one when empty),
// closed with the test.
func openStore(t *testing.T, path string, opts engine.Options) store.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "apd.db")
	}
	st, err := engine.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func dial(t *testing.T, addr, id string) *mqttc.Client {
	t.Helper()
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + addr, ClientID: id, QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
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

// startEmbedded runs an ingester on st behind a broker on a free loopback
// port with the ingestion hook, acknowledging through the broker as apd
// serve does; both stop with the test.
func startEmbedded(t *testing.T, st store.Store, opts ingest.Options, bopts broker.Options) (*ingest.Ingester, *broker.Broker) {
	t.Helper()
	in := ingest.NewIngester(st, opts)
	bopts.Addr = "127.0.0.1:0"
	bopts.Hooks = []mqtt.Hook{brokerhook.New(in)}
	brk, err := broker.New(bopts)
	if err != nil {
		t.Fatal(err)
	}
	in.Start(func(topic string, p []byte) error { return brk.Publish(topic, p, true) })
	if err := brk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brk.StopListening(); in.Close(); brk.Close() })
	return in, brk
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, 10*time.Second, cond)
}
