package brokerhook_test

import (
	"testing"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/brokerhook"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/testutil"
	mqtt "github.com/mochi-mqtt/server/v2"
)

func dial(t *testing.T, addr, id string) *mqttc.Client {
	t.Helper()
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + addr, ClientID: id, QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
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
