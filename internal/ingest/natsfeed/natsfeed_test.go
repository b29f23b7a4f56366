package natsfeed

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/testutil"
)

func TestTopic(t *testing.T) {
	for subject, want := range map[string]string{
		"apd.3.pi-kitchen.temperature": "apd/pi-kitchen/temperature",
		"apd.0.pi.$status":             "apd/pi/$status",
		"apd.7.pi//lab.temperature":    "apd/pi.lab/temperature",
		"apd.x.pi.temperature":         "",
		"apd.1":                        "",
	} {
		got, ok := Topic(subject)
		if got != want || ok != (want != "") {
			t.Errorf("Topic(%q) = %q, %v; want %q", subject, got, ok, want)
		}
	}
}

// ingesterFunc is an Ingester that is a function.
type ingesterFunc func(topic string, payload []byte, done func()) (ingest.Outcome, error)

func (f ingesterFunc) SubmitMessage(topic string, payload []byte, done func()) (ingest.Outcome, error) {
	return f(topic, payload, done)
}

// memClaims is Claims in memory, for feeds in one process.
type memClaims struct {
	mu     sync.Mutex
	live   map[string]bool
	holder map[int]string
}

type memClaimer struct {
	c    *memClaims
	name string
}

var (
	_ store.Claims = memClaimer{}
	_ Ingester     = (*ingest.Ingester)(nil)
)

func (m memClaimer) Live(context.Context) (int, error) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return len(m.c.live), nil
}

func (m memClaimer) TryClaim(_ context.Context, p int) (bool, error) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if h, ok := m.c.holder[p]; ok && h != m.name {
		return false, nil
	}
	m.c.holder[p] = m.name
	return true, nil
}

func (m memClaimer) Release(_ context.Context, p int) error {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if m.c.holder[p] == m.name {
		delete(m.c.holder, p)
	}
	return nil
}

func (m memClaimer) Alone(_ context.Context, fn func() error) error {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	return fn()
}

func (m memClaimer) Close() error {
	m.leave()
	return nil
}

// leave is what the database does when an aggregator's connection goes.
func (m memClaimer) leave() {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	delete(m.c.live, m.name)
	for p, h := range m.c.holder {
		if h == m.name {
			delete(m.c.holder, p)
		}
	}
}

// TestFeedsShareThePartitions: two feeds on a three-node cluster take
// four partitions each; every host's messages reach one feed only, each
// once acknowledged; when one feed goes the other takes every partition
// and what follows reaches it.
func TestFeedsShareThePartitions(t *testing.T) {
	cluster := testutil.StartNATSCluster(t, 3)
	claims := &memClaims{live: map[string]bool{"a": true, "b": true}, holder: map[int]string{}}
	var mu sync.Mutex
	got := map[string]map[string]int{} // feed → host → messages
	feeds := map[string]*Feed{}
	for _, name := range []string{"a", "b"} {
		f, err := New(Options{URL: cluster.ClientURLs(), Claims: memClaimer{claims, name}, Rebalance: 100 * time.Millisecond,
			Ingester: ingesterFunc(func(topic string, _ []byte, done func()) (ingest.Outcome, error) {
				mu.Lock()
				defer mu.Unlock()
				if got[name] == nil {
					got[name] = map[string]int{}
				}
				got[name][strings.Split(topic, "/")[1]]++
				done()
				return ingest.Queued, nil
			})})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		feeds[name] = f
	}
	for _, f := range feeds {
		f.Start()
	}
	testutil.WaitFor(t, "partitions divided", 10*time.Second, func() bool {
		return len(feeds["a"].Held()) == 4 && len(feeds["b"].Held()) == 4
	})
	nc, err := nats.Connect(cluster.ClientURLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	publish := func() {
		for h := 0; h < 30; h++ {
			for s := 0; s < 3; s++ {
				if err := nc.Publish(fmt.Sprintf("apd.pi-%02d.s%d", h, s), []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	total := func(names ...string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, name := range names {
			for _, c := range got[name] {
				n += c
			}
		}
		return n
	}
	publish()
	testutil.WaitFor(t, "90 messages", 10*time.Second, func() bool { return total("a", "b") >= 90 })
	mu.Lock()
	testutil.CheckNotSplit(t, "a", got["a"], "b", got["b"])
	mu.Unlock()

	feeds["a"].Close()
	memClaimer{claims, "a"}.leave()
	testutil.WaitFor(t, "b takes every partition", 10*time.Second, func() bool { return len(feeds["b"].Held()) == 8 })
	before := total("a")
	publish()
	testutil.WaitFor(t, "the next 90 at b", 10*time.Second, func() bool { return total("b")+before >= 180 })
	if n := total("a", "b"); n != 180 {
		t.Errorf("%d messages delivered, want 180 (each once)", n)
	}
}
