package broker

import (
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/apd-telemetry/apd/internal/testutil"
)

func TestShareKey(t *testing.T) {
	t.Parallel()
	for topic, want := range map[string]string{
		"apd/pi-kitchen/temperature": "pi-kitchen",
		"apd/pi-kitchen/$status":     "pi-kitchen",
		"apd/pi-kitchen":             "pi-kitchen",
		"lonely":                     "lonely",
	} {
		if got := shareKey(topic); got != want {
			t.Errorf("shareKey(%q) = %q, want %q", topic, got, want)
		}
	}
}

// assign runs the hook for one reading of each host and returns the
// member each went to.
func assign(t *testing.T, h *shareHook, hosts int, members ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < hosts; i++ {
		group := map[string]packets.Subscription{}
		for _, m := range members {
			group[m] = packets.Subscription{Filter: "apd/#", ShareName: []string{"aggregators"}, Qos: 1}
		}
		subs := &mqtt.Subscribers{Shared: map[string]map[string]packets.Subscription{"$share/aggregators/apd/#": group},
			Subscriptions: map[string]packets.Subscription{}}
		host := fmt.Sprintf("pi-%03d", i)
		subs = h.OnSelectSubscribers(subs, packets.Packet{TopicName: "apd/" + host + "/temperature"})
		if len(subs.SharedSelected) != 1 {
			t.Fatalf("%s: %d members selected", host, len(subs.SharedSelected))
		}
		for id := range subs.SharedSelected {
			out[host] = id
		}
	}
	return out
}

// TestShareSelection: a host always goes to the same member; members
// get about equal shares; when one leaves only its hosts move, none to
// it; when it comes back it gets the same hosts again; with nobody
// connected messages still go to a member's session.
func TestShareSelection(t *testing.T) {
	t.Parallel()
	down := map[string]bool{}
	h := &shareHook{connected: func(id string) bool { return !down[id] }}
	const hosts = 600
	first := assign(t, h, hosts, "agg-a", "agg-b", "agg-c")
	if again := assign(t, h, hosts, "agg-c", "agg-a", "agg-b"); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatal("the same hosts and members chose differently")
	}
	share := map[string]int{}
	for _, m := range first {
		share[m]++
	}
	for _, m := range []string{"agg-a", "agg-b", "agg-c"} {
		if share[m] < hosts/3*7/10 || share[m] > hosts/3*13/10 {
			t.Errorf("%s holds %d of %d hosts, not about a third: %v", m, share[m], hosts, share)
		}
	}

	down["agg-b"] = true
	left := assign(t, h, hosts, "agg-a", "agg-b", "agg-c")
	moved := 0
	for host, m := range left {
		if m == "agg-b" {
			t.Fatalf("%s went to the disconnected member", host)
		}
		if first[host] != "agg-b" && m != first[host] {
			t.Errorf("%s moved from %s to %s though its member stayed", host, first[host], m)
		}
		if first[host] == "agg-b" {
			moved++
		}
	}
	if moved != share["agg-b"] {
		t.Errorf("%d hosts moved, want agg-b's %d", moved, share["agg-b"])
	}
	down["agg-b"] = false
	if back := assign(t, h, hosts, "agg-a", "agg-b", "agg-c"); fmt.Sprint(back) != fmt.Sprint(first) {
		t.Error("after agg-b came back the assignment is not the first one")
	}

	// A fourth member takes about a quarter, only from the others.
	joined := assign(t, h, hosts, "agg-a", "agg-b", "agg-c", "agg-d")
	took := 0
	for host, m := range joined {
		if m != first[host] {
			if m != "agg-d" {
				t.Errorf("%s moved from %s to %s, not to the new member", host, first[host], m)
			}
			took++
		}
	}
	if took < hosts/4*7/10 || took > hosts/4*13/10 {
		t.Errorf("the new member took %d of %d hosts", took, hosts)
	}

	down["agg-a"], down["agg-b"], down["agg-c"] = true, true, true
	if all := assign(t, h, 10, "agg-a", "agg-b", "agg-c"); len(all) != 10 {
		t.Errorf("with no member connected: %v", all)
	}
}

// TestSharedSubscriptionOnTheBroker: two persistent QoS 1 members of one
// group on the real broker. Each host's messages reach one member; after
// one disconnects everything goes to the other; when it comes back its
// session holds nothing published while it was away.
func TestSharedSubscriptionOnTheBroker(t *testing.T) {
	t.Parallel()
	b, err := Start(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var mu sync.Mutex
	got := map[string]map[string]int{} // member → host → messages
	member := func(id string) paho.Client {
		handler := func(_ paho.Client, m paho.Message) {
			mu.Lock()
			defer mu.Unlock()
			if got[id] == nil {
				got[id] = map[string]int{}
			}
			got[id][shareKey(m.Topic())]++
		}
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID(id).
			SetCleanSession(false).SetDefaultPublishHandler(handler))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: %v", id, tok.Error())
		}
		if tok := c.Subscribe("$share/aggregators/apd/#", 1, handler); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s subscribe: %v", id, tok.Error())
		}
		return c
	}
	a, other := member("agg-a"), member("agg-b")
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("devices"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(0)
	publish := func(round int) {
		for h := 0; h < 40; h++ {
			for s := 0; s < 3; s++ {
				tok := pub.Publish(fmt.Sprintf("apd/pi-%02d/s%d", h, s), 1, false, fmt.Sprintf(`{"round":%d}`, round))
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatal(tok.Error())
				}
			}
		}
	}
	total := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range got[id] {
			n += c
		}
		return n
	}
	waitTotal := func(want int) {
		t.Helper()
		testutil.WaitFor(t, fmt.Sprintf("%d messages delivered", want), 5*time.Second, func() bool {
			return total("agg-a")+total("agg-b") >= want
		})
		if n := total("agg-a") + total("agg-b"); n != want {
			t.Fatalf("%d messages delivered, want %d", n, want)
		}
	}
	publish(1)
	publish(2)
	waitTotal(240)
	mu.Lock()
	testutil.CheckNotSplit(t, "agg-a", got["agg-a"], "agg-b", got["agg-b"])
	mu.Unlock()
	bBefore := total("agg-b")

	other.Disconnect(100)
	if !b.WaitGone("agg-b", 2*time.Second) {
		t.Fatal("agg-b still connected")
	}
	publish(3)
	waitTotal(360)
	if total("agg-b") != bBefore {
		t.Errorf("agg-b got messages while away")
	}
	// What its session holds is what it would be sent on coming back.
	if cl, ok := b.srv.Clients.Get("agg-b"); !ok {
		t.Error("agg-b's session is gone")
	} else if n := cl.State.Inflight.Len(); n > 0 {
		t.Errorf("agg-b's session held %d messages published while it was away", n)
	}
	other = member("agg-b")
	defer other.Disconnect(0)
	a.Disconnect(0)
}
