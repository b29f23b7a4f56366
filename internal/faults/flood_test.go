package faults

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// floodRSSBound is the anonymous resident memory (RssAnon: the heap, not
// the pages of apd.db that bbolt maps, which the kernel may drop) apd
// serve stays under in TestFloodPastIdleSessions (docs/security.md): the
// broker's queue bounds (64 MiB), the senders' uncommitted bytes (16 MiB),
// a commit's batch, and the Go heap's slack over them.
const floodRSSBound = 384 << 20

// TestFloodPastIdleSessions: ten offline and ten connected-but-silent
// reader sessions, and one device publishing 60 KB readings as fast as it
// can. A well-behaved device beside it must have its readings
// acknowledged (publish → $ack) with p99 under 2 s throughout, apd serve
// must stay under floodRSSBound, and once the sessions are gone the
// broker's in-flight file must shrink back.
func TestFloodPastIdleSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	for _, u := range [][]string{{"good", "device", "--host", "good"}, {"flood", "device", "--host", "flood"}, {"rd", "reader"}} {
		pw := filepath.Join(dir, u[0]+".pw")
		if err := os.WriteFile(pw, []byte(u[0]+"-pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"users", "add", u[0], "--role", u[1], "--users-file", users, "--password-file", pw}, u[2:]...)
		if out, err := exec.Command(filepath.Join(binDir, "apd"), args...).CombinedOutput(); err != nil {
			t.Fatalf("users add: %v: %s", err, out)
		}
	}
	srv := start(t, "apd", "apd serve running", "serve", "--data", dir, "--users-file", users, "--mqtt-addr", anyPort, "--http-addr", anyPort)
	mqttAddr := srv.addr("mqtt")
	waitHTTP(t, srv.addr("http"))
	defer func() {
		if t.Failed() {
			t.Logf("--- apd serve log:\n%s", tail(srv.log(), 4000))
		}
	}()
	url := "tcp://" + mqttAddr

	for i := range 10 {
		c, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: fmt.Sprintf("offline-%d", i), Username: "rd", Password: "rd-pw", QoS: 1, Persistent: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe("apd/#", func(string, []byte) {}); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	var silent []net.Conn
	for i := range 10 {
		silent = append(silent, testutil.SilentSession(t, mqttAddr, fmt.Sprintf("silent-%d", i), "rd", "rd-pw", "apd/#"))
	}

	// The well-behaved device: a reading every 100 ms, each timed from
	// its publish to the $ack that covers it.
	good, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: "good", Username: "good", Password: "good-pw", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	var (
		mu        sync.Mutex
		published = map[uint64]time.Time{}
		latencies []time.Duration
		ackedTo   uint64
	)
	if err := good.SubscribeLatest("apd/good/$ack", func(_ string, p []byte) {
		var a schema.Ack
		if a.UnmarshalJSON(p) != nil {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for s := ackedTo + 1; s <= a.Seq; s++ {
			if at, ok := published[s]; ok {
				latencies = append(latencies, now.Sub(at))
			}
		}
		ackedTo = max(ackedTo, a.Seq)
	}); err != nil {
		t.Fatal(err)
	}

	flood := 15 * time.Second * scale()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var floodSent, floodAcked int
	wg.Add(1)
	go func() { // the flood: 60 KB readings at QoS 1, 100 awaiting PUBACK at a time
		defer wg.Done()
		opts := paho.NewClientOptions().AddBroker(url).SetClientID("flood").SetUsername("flood").SetPassword("flood-pw").
			SetAutoReconnect(false).SetConnectRetry(false)
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Errorf("flood connect: %v", tok.Error())
			return
		}
		defer c.Disconnect(0)
		value := strings.Repeat("x", 60<<10)
		var pending []paho.Token
		base := time.Now().Add(-time.Hour)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			payload := fmt.Sprintf(`{"v":1,"ts":%q,"value":%q}`, schema.FormatTime(base.Add(time.Duration(i)*time.Millisecond)), value)
			pending = append(pending, c.Publish("apd/flood/blob", 1, false, payload))
			floodSent++
			if len(pending) == 100 {
				if pending[0].WaitTimeout(30*time.Second) && pending[0].Error() == nil {
					floodAcked++
				}
				pending = pending[1:]
			}
		}
	}()
	var maxRSS, maxMapped int64
	wg.Add(1)
	go func() { // resident memory, every 100 ms
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				anon, total := residentBytes(srv.pid())
				maxRSS, maxMapped = max(maxRSS, anon), max(maxMapped, total)
			}
		}
	}()
	var seq uint64
	// The sleep paces the well-behaved device: a reading every 100 ms.
	for deadline := time.Now().Add(flood); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		seq++
		r := schema.Reading{Host: "good", Sensor: "temperature", Time: time.Now(), Seq: seq, Value: []byte(`21.5`)}
		mu.Lock()
		published[seq] = time.Now()
		mu.Unlock()
		wg.Add(1)
		go func(payload []byte) { // its PUBACK comes after the commit: do not wait for it here
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := good.Publish(ctx, "apd/good/temperature", payload, false); err != nil {
				t.Errorf("good device: %v", err)
			}
		}(r.AppendJSON(nil, schema.WithIdentity))
	}
	testutil.WaitFor(t, "every reading of the good device acknowledged", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return ackedTo >= seq
	})
	close(stop)
	wg.Wait()

	mu.Lock()
	slices.Sort(latencies)
	p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]
	mu.Unlock()
	inflight := filepath.Join(dir, "broker.db.inflight")
	peak := fileSize(t, inflight)
	t.Logf("good device: %d readings, publish→$ack p50 %s, p99 %s; flood: %d sent, %d acknowledged; apd serve RssAnon max %d MiB (VmRSS %d MiB); in-flight file %d MiB",
		seq, p50, p99, floodSent, floodAcked, maxRSS>>20, maxMapped>>20, peak>>20)
	if p99 >= 2*time.Second {
		t.Errorf("the good device's p99 publish→$ack is %s during the flood, want under 2 s", p99)
	}
	if maxRSS >= floodRSSBound {
		t.Errorf("apd serve reached %d MiB of anonymous resident memory, want under %d MiB", maxRSS>>20, floodRSSBound>>20)
	}

	// The sessions go: the offline ones are taken over by clean sessions,
	// the silent ones closed and taken over the same way.
	for _, c := range silent {
		c.Close()
	}
	for _, id := range []string{"offline-", "silent-"} {
		for i := range 10 {
			c, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: fmt.Sprintf("%s%d", id, i), Username: "rd", Password: "rd-pw", QoS: 1})
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
	}
	testutil.WaitFor(t, "the in-flight file to shrink back", 60*time.Second, func() bool {
		return fileSize(t, inflight) < max(peak/4, 1<<20)
	})
	t.Logf("in-flight file after the sessions went: %d KiB", fileSize(t, inflight)>>10)
	srv.stop(20 * time.Second)
}

// residentBytes returns the anonymous resident memory of process pid
// (RssAnon) and all of it (VmRSS), or zeros.
func residentBytes(pid int) (anon, total int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	field := func(name string) int64 {
		for line := range bytes.Lines(b) {
			if rest, ok := bytes.CutPrefix(line, []byte(name+":")); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	return field("RssAnon"), field("VmRSS")
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
