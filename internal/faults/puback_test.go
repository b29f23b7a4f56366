package faults

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// TestPubackMeansCommitted floods apd serve at QoS 1 from a plain MQTT
// client without a spool (as Tasmota or mosquitto_pub are), kills the
// server with SIGKILL mid-flood, and checks that every message the broker
// acknowledged with a PUBACK is stored: a PUBACK is sent only after the
// commit that stores the reading.
func TestPubackMeansCommitted(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for seconds")
	}
	dir := t.TempDir()
	srv := start(t, "apd", "apd serve running", "serve", "--data", dir, "--mqtt-addr", anyPort, "--http-addr", anyPort)
	mqttAddr := srv.addr("mqtt")
	waitHTTP(t, srv.addr("http"))
	defer func() {
		if t.Failed() {
			t.Logf("--- apd serve log:\n%s", srv.log())
		}
	}()

	opts := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("plain").
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)

	// Each message its own time (the store keeps one reading per host,
	// sensor and time), so each acknowledged one is looked for by value.
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var (
		mu     sync.Mutex
		acked  []int
		issued atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	window := make(chan struct{}, 500) // QoS 1 messages awaiting their PUBACK
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case window <- struct{}{}:
			}
			payload := fmt.Sprintf(`{"v":1,"ts":%q,"value":%d}`, schema.FormatTime(base.Add(time.Duration(i)*time.Millisecond)), i)
			tok := c.Publish("apd/plain/counter", 1, false, payload)
			issued.Add(1)
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-window }()
				select {
				case <-tok.Done():
				case <-stop:
					return
				}
				if tok.Error() == nil {
					mu.Lock()
					acked = append(acked, i)
					mu.Unlock()
				}
			}(i)
		}
	}()
	testutil.WaitFor(t, "10,000 messages acknowledged", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 10000
	})
	t.Log("SIGKILL apd serve mid-flood")
	srv.kill()
	close(stop)
	wg.Wait()

	stored := map[int]bool{}
	storedSeqs(t, filepath.Join(dir, "apd.db"), func(r *schema.Reading) {
		if r.Host == "plain" {
			if n, ok := schema.Numeric(r.Value); ok {
				stored[int(n)] = true
			}
		}
	})
	missing := 0
	for _, i := range acked {
		if !stored[i] {
			if missing < 5 {
				t.Errorf("message %d was acknowledged (PUBACK) but is not stored", i)
			}
			missing++
		}
	}
	t.Logf("%d published, %d acknowledged, %d stored, %d acknowledged and lost", issued.Load(), len(acked), len(stored), missing)
	if missing > 0 {
		t.Errorf("%d acknowledged messages lost", missing)
	}
}
