package broker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestQueuesBounded: ten offline and ten connected-but-silent sessions of
// one reader user, then a flood: what the broker holds for that user
// stays within its bound (in memory and in the in-flight file), the
// excess is dropped and counted, and a subscriber that reads gets every
// message.
func TestQueuesBounded(t *testing.T) {
	t.Parallel()
	us := NewUsers()
	for _, u := range [][3]string{{"pi", string(RoleDevice), "pi"}, {"rd", string(RoleReader), ""}, {"agg", string(RoleAggregator), ""}} {
		if err := us.Set(u[0], Role(u[1]), u[2], []byte(u[0]+"-pw")); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(t.TempDir(), "broker.db")
	const perUser, flood = 2000, 20000
	b, err := Start(Options{Addr: "127.0.0.1:0", Users: us, StatePath: state, Queues: QueueLimits{PerUser: perUser, Total: 4 * perUser}, LoginWait: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url := "tcp://" + b.Addr()
	for i := range 10 {
		c, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: "offline-" + string(rune('a'+i)), Username: "rd", Password: "rd-pw", QoS: 1, Persistent: true, ConnectTimeout: loginTimeout})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe("apd/#", func(string, []byte) {}); err != nil {
			t.Fatal(err)
		}
		c.Close()
		testutil.SilentSession(t, b.Addr(), "silent-"+string(rune('a'+i)), "rd", "rd-pw", "apd/#")
	}
	var got atomic.Int64
	reader, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: "agg", Username: "agg", Password: "agg-pw", QoS: 1, ConnectTimeout: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if err := reader.Subscribe("apd/#", func(string, []byte) { got.Add(1) }); err != nil {
		t.Fatal(err)
	}
	dev, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: "pi", Username: "pi", Password: "pi-pw", QoS: 1, ConnectTimeout: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	payload := make([]byte, 200)
	var maxQueued int64
	for i := range flood {
		if err := dev.Publish(context.Background(), "apd/pi/flood", payload, false); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if q := b.Queued(); q > maxQueued {
			maxQueued = q
		}
	}
	testutil.WaitFor(t, "every message at the reading subscriber", 20*time.Second, func() bool { return got.Load() == flood })
	t.Logf("held at most %d messages; dropped %d deliveries", maxQueued, b.DroppedQueued())
	// The reader user's sessions hold at most perUser; the reading
	// subscriber and the device's own acknowledgements a few more.
	if maxQueued > perUser+200 {
		t.Errorf("the broker held %d messages, bound %d per user", maxQueued, perUser)
	}
	if want := uint64(20*flood - perUser - 100); b.DroppedQueued() < want {
		t.Errorf("dropped %d deliveries, want at least %d", b.DroppedQueued(), want)
	}
	b.Close()
	fi, err := os.Stat(state + ".inflight")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 8<<20 {
		t.Errorf("in-flight file %d bytes for a bound of %d messages", fi.Size(), perUser)
	}
}

// BenchmarkFloodPastSilentSessions measures a device's QoS 1 publishes
// through a broker with persistent state, alone and beside ten offline and
// ten connected-but-silent reader sessions (the shape that once cut
// throughput from 13,840 to 688 messages/s): the queue bounds and the
// batched in-flight writes keep the second close to the first.
func BenchmarkFloodPastSilentSessions(b *testing.B) {
	for _, silent := range []int{0, 20} {
		b.Run(fmt.Sprintf("silent=%d", silent), func(b *testing.B) {
			us := NewUsers()
			_ = us.Set("pi", RoleDevice, "pi", []byte("pi-pw"))
			_ = us.Set("rd", RoleReader, "", []byte("rd-pw"))
			brk, err := Start(Options{Addr: "127.0.0.1:0", Users: us, StatePath: filepath.Join(b.TempDir(), "broker.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer brk.Close()
			url := "tcp://" + brk.Addr()
			for i := range silent {
				id := fmt.Sprintf("reader-%d", i)
				if i%2 == 0 {
					c, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: id, Username: "rd", Password: "rd-pw", QoS: 1, Persistent: true})
					if err != nil {
						b.Fatal(err)
					}
					_ = c.Subscribe("apd/#", func(string, []byte) {})
					c.Close()
					continue
				}
				testutil.SilentSession(b, brk.Addr(), id, "rd", "rd-pw", "apd/#")
			}
			dev, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: "pi", Username: "pi", Password: "pi-pw", QoS: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer dev.Close()
			payload := make([]byte, 200)
			const n = 20000
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				for range n {
					if err := dev.Publish(context.Background(), "apd/pi/flood", payload, false); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "msgs/s")
			b.ReportMetric(float64(brk.DroppedQueued())/float64(b.N), "dropped/op")
		})
	}
}
