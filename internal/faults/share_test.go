package faults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/fleetsim"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// aggregators is N apd aggregate processes sharing one group on a broker
// and one PostgreSQL database.
type aggregators struct {
	t     *testing.T
	procs map[string]*proc
	http  map[string]string
}

func startAggregators(t *testing.T, dir, url string, ids []string, source ...string) *aggregators {
	t.Helper()
	a := &aggregators{t: t, procs: map[string]*proc{}, http: map[string]string{}}
	t.Cleanup(a.logsOnFailure)
	for _, id := range ids {
		args := append([]string{"aggregate", "--client-id", id, "--store", url, "--data", filepath.Join(dir, id),
			"--http-addr", anyPort, "--log-level", "info"}, source...)
		a.procs[id] = start(t, "apd", "apd aggregate running", args...)
		a.http[id] = a.procs[id].addr("http")
	}
	for _, id := range ids {
		waitHTTP(t, a.http[id])
	}
	return a
}

// restart starts the killed aggregator id again, on an HTTP port it
// picks, and waits until it is ready.
func (a *aggregators) restart(id string) {
	a.t.Helper()
	a.procs[id].start()
	a.http[id] = a.procs[id].addr("http")
	waitHTTP(a.t, a.http[id])
}

// waitHolds waits until aggregator id has, since it started, committed
// readings of some host: it takes its share.
func (a *aggregators) waitHolds(id string, timeout time.Duration) {
	a.t.Helper()
	testutil.WaitFor(a.t, id+" to commit readings", timeout, func() bool { return len(a.held(id).Hosts) > 0 })
}

// held asks an aggregator what it holds.
func (a *aggregators) held(id string) ingest.Held {
	a.t.Helper()
	resp, err := http.Get("http://" + a.http[id] + "/api/v1/held")
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var h ingest.Held
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		a.t.Fatalf("%s /api/v1/held: %v", id, err)
	}
	return h
}

// checkNotSplit fails if a host's readings were committed by more than
// one of the aggregators, or if one of them got no host at all.
func (a *aggregators) checkNotSplit(ids ...string) map[string]string {
	a.t.Helper()
	holder := map[string]string{}
	for _, id := range ids {
		h := a.held(id)
		if len(h.Hosts) == 0 {
			a.t.Errorf("%s holds no host", id)
		}
		for _, hh := range h.Hosts {
			if other, ok := holder[hh.Host]; ok {
				a.t.Errorf("host %s split between %s and %s", hh.Host, other, id)
			}
			holder[hh.Host] = id
		}
	}
	return holder
}

func (a *aggregators) logsOnFailure() {
	if a.t.Failed() {
		for id, p := range a.procs {
			a.t.Logf("--- apd aggregate %s log:\n%s", id, p.log())
		}
	}
}

// checkFleetStored fails unless every reading each device issued is in
// the database at url exactly once; check, when set, sees each reading.
func checkFleetStored(t *testing.T, url string, fleet *fleetsim.Fleet, check func(*schema.Reading)) {
	t.Helper()
	seqs := storedSeqs(t, url, check)
	bad := 0
	for _, d := range fleet.Devices {
		last, _ := d.LastSeq()
		if problem := exactlyOnce(seqs[d.Host], last); problem != "" {
			if bad++; bad <= 5 {
				t.Errorf("host %s: %s", d.Host, problem)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d hosts not stored exactly once", bad, len(fleet.Devices))
	}
}

// waitAcked waits until every device's $ack has reached the last seq it
// had issued when the wait began, and returns how long that took.
func waitAcked(t *testing.T, fleet *fleetsim.Fleet, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	want := map[string]uint64{}
	for _, d := range fleet.Devices {
		want[d.Host], _ = d.LastSeq()
	}
	behind := func() (which []string) {
		for _, d := range fleet.Devices {
			if issued, acked := d.LastSeq(); acked < want[d.Host] {
				which = append(which, fmt.Sprintf("%s (acknowledged %d of %d, %d wanted)", d.Host, acked, issued, want[d.Host]))
			}
		}
		return which
	}
	if testutil.Eventually(timeout, func() bool { return len(behind()) == 0 }) {
		return time.Since(start)
	}
	which := behind()
	t.Fatalf("%d devices not acknowledged within %s: %s", len(which), timeout, strings.Join(which[:min(len(which), 5)], ", "))
	return 0
}

// waitIssued waits until the fleet has issued n more readings than when
// called: the ticks run, however slowly the machine does.
func waitIssued(t *testing.T, fleet *fleetsim.Fleet, n int, timeout time.Duration) {
	t.Helper()
	want := fleet.Issued() + n
	testutil.WaitFor(t, fmt.Sprintf("%d more readings issued", n), timeout, func() bool { return fleet.Issued() >= want })
}

// TestSharedAggregatorsKill: apd's broker, two apd aggregate --share on
// one PostgreSQL, 40 simulated devices (five sensors, seqs, resending
// what is not acknowledged). While both run no host's readings are split
// between them; one is killed with SIGKILL mid-run and its hosts are
// acknowledged by the other within one resend period; it is restarted;
// at the end every reading is stored exactly once and every device's
// $ack is at its last seq.
func TestSharedAggregatorsKill(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	const devices, sensors = 40, 5
	interval := time.Second
	resendAfter := 3 * time.Second
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase(t)
	dir := t.TempDir()
	brk := start(t, "apd", "apd broker running", "broker", "--mqtt-addr", anyPort, "--data", filepath.Join(dir, "broker"))
	brokerAddr := brk.addr("mqtt")
	aggs := startAggregators(t, dir, url, []string{"agg-a", "agg-b"}, "--broker", "tcp://"+brokerAddr, "--share", "apd")

	fleet, err := fleetsim.Connect(fleetsim.Options{Broker: brokerAddr, Devices: devices, Sensors: sensors, Acks: true, ResendAfter: resendAfter})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	first := time.Now().Truncate(interval).Add(interval)
	tick := 0
	ticks := func(n int) {
		for range n {
			fleet.Tick(first.Add(time.Duration(tick)*interval), 200*time.Millisecond)
			tick++
		}
	}
	ticks(4)
	waitAcked(t, fleet, 30*time.Second)
	holder := aggs.checkNotSplit("agg-a", "agg-b")
	if len(holder) != devices {
		t.Errorf("%d hosts held, want %d", len(holder), devices)
	}

	// Kill agg-a in the middle of a tick (once half of its readings are
	// out); the devices tick on (and resend at each tick what is not
	// acknowledged after resendAfter).
	half := fleet.Issued() + devices*sensors/2
	stop := make(chan struct{})
	ticking := make(chan struct{})
	go func() {
		defer close(ticking)
		for {
			select {
			case <-stop:
				return
			default:
				ticks(1)
			}
		}
	}()
	testutil.WaitFor(t, "half a tick issued", 10*interval, func() bool { return fleet.Issued() >= half })
	aggs.procs["agg-a"].kill()
	killed := time.Now()
	waitAcked(t, fleet, 4*resendAfter+10*time.Second)
	took := time.Since(killed)
	t.Logf("agg-a killed: every device acknowledged %s after the kill (devices resend after %s)", took.Round(time.Millisecond), resendAfter)
	if took > resendAfter+5*time.Second {
		t.Errorf("the other aggregator took %s to acknowledge agg-a's hosts, more than one resend period (%s) and a few seconds", took, resendAfter)
	}
	time.Sleep(2 * interval) // agg-a stays away two more ticks: the outage under test
	aggs.restart("agg-a")
	aggs.waitHolds("agg-a", 30*time.Second)
	close(stop)
	<-ticking
	waitAcked(t, fleet, 60*time.Second)

	out, err := exec.Command(filepath.Join(binDir, "apd"), "hosts", "--db", url).CombinedOutput()
	if hosts := string(out); err != nil || !strings.Contains(hosts, "AGGREGATOR") || !strings.Contains(hosts, "agg-") {
		t.Errorf("apd hosts does not say which aggregator holds a host (%v):\n%.400s", err, hosts)
	}
	fleet.Close()
	for _, p := range aggs.procs {
		p.stop(15 * time.Second)
	}
	brk.stop(10 * time.Second)
	checkFleetStored(t, url, fleet, nil)
	t.Logf("%d devices × %d sensors, %d ticks: %d readings issued", devices, sensors, tick, fleet.Issued())
}

// tickUntil makes the fleet tick every interval until stop is closed;
// the returned channel closes after the last tick.
func tickUntil(fleet *fleetsim.Fleet, interval time.Duration, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		next := time.Now().Truncate(interval).Add(interval)
		for {
			select {
			case <-stop:
				return
			default:
			}
			fleet.Tick(next, 200*time.Millisecond)
			next = next.Add(interval)
		}
	}()
	return done
}

// TestNATSClusterKill: a three-node NATS cluster (JetStream, the MQTT
// gateway on each node), PostgreSQL, two apd aggregate --source nats://…
// and 24 simulated devices spread over the nodes' MQTT listeners. During
// the run one NATS node and then one aggregator are killed with SIGKILL
// and restarted. Every reading each device made is stored exactly once
// and every device's $ack reaches its last seq.
func TestNATSClusterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	const devices, sensors = 24, 5
	interval, resendAfter := time.Second, 3*time.Second
	cluster := testutil.StartNATSCluster(t, 3)
	defer func() {
		if t.Failed() {
			for _, n := range cluster.Nodes {
				t.Logf("--- NATS node %s log (last 3000 bytes):\n%s", n.Name, tail(n.Log.String(), 3000))
			}
		}
	}()
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase(t)
	aggs := startAggregators(t, t.TempDir(), url, []string{"agg-a", "agg-b"}, "--source", cluster.ClientURLs(), "--broker", cluster.MQTTURLs())
	testutil.WaitFor(t, "the partitions divided", 20*time.Second, func() bool {
		return len(aggs.held("agg-a").Partitions) == 4 && len(aggs.held("agg-b").Partitions) == 4
	})
	var nodes []string
	for _, n := range cluster.Nodes {
		nodes = append(nodes, n.MQTTAddr)
	}
	fleet, err := fleetsim.Connect(fleetsim.Options{Brokers: nodes, Devices: devices, Sensors: sensors, Acks: true, ResendAfter: resendAfter})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	stop := make(chan struct{})
	ticking := tickUntil(fleet, interval, stop)
	waitIssued(t, fleet, 4*devices*sensors, 30*time.Second) // four ticks
	waitAcked(t, fleet, 30*time.Second)
	aggs.checkNotSplit("agg-a", "agg-b")

	victim := cluster.Nodes[1]
	t.Logf("SIGKILL NATS node %s", victim.Name)
	reconnects := fleet.Reconnects()
	victim.Kill()
	killed := time.Now()
	time.Sleep(3 * interval) // the outage under test: readings issued while the node is gone
	waitAcked(t, fleet, 60*time.Second)
	t.Logf("every reading issued until 3 s after the node's kill acknowledged %s after it; %d devices reconnected", time.Since(killed).Round(time.Millisecond), fleet.Reconnects()-reconnects)
	if fleet.Reconnects()-reconnects < devices/3 {
		t.Errorf("%d devices reconnected after the kill of one of three nodes, want at least %d", fleet.Reconnects()-reconnects, devices/3)
	}
	victim.Start()
	victim.WaitHealthy(60 * time.Second)
	waitIssued(t, fleet, 2*devices*sensors, 30*time.Second) // two ticks on the healed cluster

	t.Log("SIGKILL agg-a")
	aggs.procs["agg-a"].kill()
	killed = time.Now()
	time.Sleep(3 * interval) // the outage under test: readings issued while agg-a is gone
	waitAcked(t, fleet, 90*time.Second)
	t.Logf("every reading issued until 3 s after agg-a's kill acknowledged %s after it (by agg-b)", time.Since(killed).Round(time.Millisecond))
	aggs.restart("agg-a")
	testutil.WaitFor(t, "the partitions divided again", 20*time.Second, func() bool {
		return len(aggs.held("agg-a").Partitions) == 4
	})
	aggs.waitHolds("agg-a", 30*time.Second)
	close(stop)
	<-ticking
	waitAcked(t, fleet, 90*time.Second)
	fleet.Close()
	for _, p := range aggs.procs {
		p.stop(15 * time.Second)
	}
	checkFleetStored(t, url, fleet, nil)
	t.Logf("%d devices × %d sensors over 3 NATS nodes: %d readings issued, %d reconnections", devices, sensors, fleet.Issued(), fleet.Reconnects())
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
