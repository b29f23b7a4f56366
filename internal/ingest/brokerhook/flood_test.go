package brokerhook_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest/ingesttest"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
)

// TestFloodDoesNotCostReadings: one client floods 10,000 malformed
// payloads and oversize packets; a well-behaved device publishing at the
// same time keeps every reading.
func TestFloodDoesNotCostReadings(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the broker for seconds")
	}
	t.Parallel()
	st := ingesttest.OpenStore(t)
	in, brk := startEmbedded(t, st, ingest.Options{MaxPayload: 1024}, broker.Options{MaxPayload: 2048})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var flooded atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		vandal, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "vandal", QoS: 0, Retry: true})
		if err != nil {
			t.Error(err)
			return
		}
		defer vandal.Close()
		big := strings.Repeat("x", 4096)
		start := time.Now()
		for !vandal.Connected() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		// Until 10,000 are sent or 3 s have passed: a flooder that is cut
		// off spends its time reconnecting.
		deadline := start.Add(3 * time.Second)
		for i := 0; i < 10000 && time.Now().Before(deadline); i++ {
			payload := fmt.Sprintf(`{"v":1,"ts":%d`, i) // truncated JSON
			if i == 5000 {
				payload = big // over the broker's packet limit: cut off
			}
			for time.Now().Before(deadline) {
				pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				err := vandal.Publish(pctx, "apd/vandal/x", []byte(payload), false)
				cancel()
				if err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond) // cut off: wait for the reconnection
			}
			flooded.Add(1)
		}
	}()
	device := dial(t, brk.Addr(), "good-device")
	const n = 200
	for i := 1; i <= n; i++ {
		if err := device.Publish(ctx, "apd/good/t", ingesttest.Payload("good", "t", uint64(i), i, float64(i)), false); err != nil {
			t.Fatalf("device publish %d: %v", i, err)
		}
		if i == n/2 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	wg.Wait()
	waitFor(t, "the device's readings", func() bool {
		return ingesttest.Count(t, st, store.Query{Hosts: []string{"good"}}) == n
	})
	stored := ingesttest.Count(t, st, store.Query{Hosts: []string{"good"}})
	rejected, cut := in.Metrics().RejectedTotal(), in.Metrics().CutOff.Value()
	t.Logf("flood messages attempted: %d; rejected to dead letters: %d; flooder cut off %d times; device readings stored: %d of %d",
		flooded.Load(), rejected, cut, stored, n)
	if cut == 0 {
		t.Error("the flooder was never cut off")
	}
	if stored != n {
		t.Errorf("device readings stored: %d, want %d", stored, n)
	}
}
