package subscriber_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/subscriber"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// TestFloodDoesNotCostReadings: one client floods 10,000 malformed
// payloads and oversize packets; a well-behaved device publishing at the
// same time keeps every reading.
func TestFloodDoesNotCostReadings(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the broker for seconds")
	}
	st := openStore(t)
	var brk *broker.Broker
	var mu sync.Mutex
	in := subscriber.New(st, func(topic string, p []byte) error {
		mu.Lock()
		defer mu.Unlock()
		return brk.Publish(topic, p, true)
	}, subscriber.Options{MaxPayload: 1024})
	defer in.Close()
	mu.Lock()
	var err error
	brk, err = broker.Start(broker.Options{Addr: testutil.FreeAddr(t), MaxPayload: 2048, Hooks: []mqtt.Hook{subscriber.NewHook(in)}})
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()

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
		for !vandal.Connected() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		for i := 0; i < 10000 && ctx.Err() == nil; i++ {
			payload := fmt.Sprintf(`{"v":1,"ts":%d`, i) // truncated JSON
			if i == 5000 {
				payload = big // over the broker's packet limit: cut off
			}
			for vandal.Publish(ctx, "apd/vandal/x", []byte(payload), false) != nil && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond) // cut off: wait for the reconnection
			}
			flooded.Add(1)
		}
	}()
	device := dial(t, brk.Addr(), "good-device")
	const n = 200
	for i := 1; i <= n; i++ {
		if err := device.Publish(ctx, "apd/good/t", payload("good", "t", uint64(i), i, float64(i)), false); err != nil {
			t.Fatalf("device publish %d: %v", i, err)
		}
		if i == n/2 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	wg.Wait()
	waitFor(t, "the device's readings", func() bool {
		return count(t, st, store.Query{Hosts: []string{"good"}}) == n
	})
	// QoS 0 messages queued when the flooder was cut off are gone; most
	// of the flood must still have reached ingestion and been rejected.
	waitFor(t, "the flood's rejections", func() bool { return in.Metrics().RejectedTotal() >= 5000 })
	stored := count(t, st, store.Query{Hosts: []string{"good"}})
	rejected := in.Metrics().RejectedTotal()
	t.Logf("flood messages sent: %d; rejected to dead letters: %d; device readings stored: %d of %d", flooded.Load(), rejected, stored, n)
	if stored != n {
		t.Errorf("device readings stored: %d, want %d", stored, n)
	}
}
