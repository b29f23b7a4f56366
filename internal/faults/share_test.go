package faults

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/fleetsim"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
	"github.com/apd-telemetry/apd/subscriber"
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
	for _, id := range ids {
		a.http[id] = testutil.FreeAddr(t)
		args := append([]string{"aggregate", "--client-id", id, "--store", url, "--data", filepath.Join(dir, id),
			"--http-addr", a.http[id], "--log-level", "info"}, source...)
		a.procs[id] = start(t, "apd", args...)
	}
	for _, id := range ids {
		waitHTTP(t, a.http[id])
	}
	return a
}

// held asks an aggregator what it holds.
func (a *aggregators) held(id string) subscriber.Held {
	a.t.Helper()
	resp, err := http.Get("http://" + a.http[id] + "/api/v1/held")
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var h subscriber.Held
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
			a.t.Logf("--- apd aggregate %s log:\n%s", id, p.log.String())
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
	for {
		behind := 0
		for _, d := range fleet.Devices {
			if _, acked := d.LastSeq(); acked < want[d.Host] {
				behind++
			}
		}
		if behind == 0 {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%d devices not acknowledged within %s", behind, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	brokerAddr := testutil.FreeAddr(t)
	brk := start(t, "apd", "broker", "--mqtt-addr", brokerAddr, "--data", filepath.Join(dir, "broker"))
	waitTCP(t, brokerAddr)
	aggs := startAggregators(t, dir, url, []string{"agg-a", "agg-b"}, "--broker", "tcp://"+brokerAddr, "--share", "apd")
	defer aggs.logsOnFailure()

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

	// Kill agg-a in the middle of a tick; the devices tick on (and resend
	// at each tick what is not acknowledged after resendAfter).
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
	time.Sleep(time.Until(first.Add(time.Duration(tick)*interval)) + 100*time.Millisecond)
	aggs.procs["agg-a"].kill()
	killed := time.Now()
	waitAcked(t, fleet, 4*resendAfter+10*time.Second)
	took := time.Since(killed)
	t.Logf("agg-a killed: every device acknowledged %s after the kill (devices resend after %s)", took.Round(time.Millisecond), resendAfter)
	if took > resendAfter+5*time.Second {
		t.Errorf("the other aggregator took %s to acknowledge agg-a's hosts, more than one resend period (%s) and a few seconds", took, resendAfter)
	}
	time.Sleep(2 * interval)
	aggs.procs["agg-a"].start()
	waitHTTP(t, aggs.http["agg-a"])
	time.Sleep(4 * interval)
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
