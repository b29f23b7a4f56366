package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store/engine"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

var binDir string

func TestMain(m *testing.M) { os.Exit(testutil.RunWithBinaries(m, &binDir)) }

// scale stretches the scenario's phases: 1 in the short form run by go
// test, APD_FAULTS_SCALE (make test-faults sets 4) for the long one.
func scale() time.Duration {
	if n, err := strconv.Atoi(os.Getenv("APD_FAULTS_SCALE")); err == nil && n > 0 {
		return time.Duration(n)
	}
	return 1
}

// anyPort asks for a loopback port the kernel picks: apd says which in
// the line it logs once running.
const anyPort = "127.0.0.1:0"

// proc is a binary that can be killed and started again with the same
// arguments (but those set anew with set).
type proc struct {
	t     *testing.T
	name  string
	args  []string
	ready *regexp.Regexp         // the line it logs once running
	run   *testutil.Process      // the current run
	logs  []*testutil.SyncBuffer // of every run, the current one last
	attrs map[string]string      // of the current run's ready line
}

// start runs binary name with args until the test ends, and returns it
// once it has logged ready, the message of its running line: "apd
// serve running", "apd broker running", "apd aggregate running" (which
// name the addresses it bound), "publishing". The line is logged at
// info level, the default: no --log-level warn.
func start(t *testing.T, name, ready string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, args: args, ready: testutil.LogLine(ready)}
	p.start()
	return p
}

func (p *proc) start() {
	p.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, p.name), p.args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + p.t.TempDir()}
	run, m := testutil.StartProcess(p.t, cmd, p.ready, 30*time.Second)
	p.run, p.attrs = run, testutil.ParseLogLine(m[0])
	p.logs = append(p.logs, run.Log)
}

// addr returns the address the current run reported as key ("mqtt",
// "http"), as HOST:PORT.
func (p *proc) addr(key string) string {
	p.t.Helper()
	a := strings.TrimPrefix(p.attrs[key], "http://")
	if a == "" {
		p.t.Fatalf("%s reported no %s address: %s", p.name, key, p.run.Log)
	}
	return a
}

// set makes the next starts pass value for flag: a restart on the port
// the first run bound, which the clients know.
func (p *proc) set(flag, value string) {
	i := slices.Index(p.args, flag)
	if i < 0 || i+1 == len(p.args) {
		p.t.Fatalf("%s has no %s to set", p.name, flag)
	}
	p.args[i+1] = value
}

func (p *proc) pid() int { return p.run.Cmd.Process.Pid }

// log returns what every run wrote, the runs in order.
func (p *proc) log() string {
	var b strings.Builder
	for i, l := range p.logs {
		if i > 0 {
			b.WriteString("--- started again\n")
		}
		b.WriteString(l.String())
	}
	return b.String()
}

func (p *proc) kill() {
	_ = p.run.Cmd.Process.Signal(syscall.SIGKILL)
	_ = p.run.Wait()
}

func (p *proc) stop(timeout time.Duration) {
	_ = p.run.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.run.Exited():
	case <-time.After(timeout):
		p.t.Errorf("%s did not stop on SIGTERM within %s", p.name, timeout)
		p.kill()
	}
}

func waitHTTP(t *testing.T, addr string) {
	t.Helper()
	testutil.WaitReady(t, addr, 15*time.Second)
}

// malformed publishes hostile input until ctx ends and returns how many
// messages it sent. None of it may be stored as a reading.
func malformed(ctx context.Context, t *testing.T, brokerAddr string, hosts []string) func() int {
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brokerAddr, ClientID: "vandal", QoS: 1, Retry: true})
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.Close()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			h := hosts[i%len(hosts)]
			other := hosts[(i+1)%len(hosts)]
			now := schema.FormatTime(time.Now())
			bad := []struct{ topic, payload string }{
				{"apd/" + h + "/uptime", `{"v":1,"host":"` + other + `","sensor":"uptime","ts":"` + now + `","seq":999999,"value":1}`},
				{"apd/" + h + "/uptime", `{"v":1,"ts":"` + now + `","seq":`},
				{"apd/" + h + "/version", `{"v":9,"ts":"` + now + `","seq":999998,"value":1}`},
				{"apd/" + h + "/uptime", `{"v":1,"ts":"1970-01-01T00:00:00Z","seq":999997,"value":1}`},
			}
			b := bad[i%len(bad)]
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			if c.Publish(pctx, b.topic, []byte(b.payload), false) == nil {
				sent++
			}
			cancel()
		}
	}()
	return func() int { <-done; return sent }
}

// checkExactlyOnce reads the aggregator's database and each publisher's
// spool: every host's stored seqs must be exactly 1..N, N being the last
// seq its spool issued, and no malformed seq may be stored.
func checkExactlyOnce(t *testing.T, dbPath string, spools map[string]string) {
	t.Helper()
	seqs := storedSeqs(t, dbPath, nil)
	for host, path := range spools {
		sp, err := publisher.OpenSpool(path, publisher.SpoolOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last, depth := sp.LastSeq(), sp.Depth()
		sp.Close()
		got := seqs[host]
		problem := exactlyOnce(got, last)
		t.Logf("host %s: %d readings issued, %d stored, %d left in spool", host, last, len(got), depth)
		if last == 0 || problem != "" || depth != 0 {
			t.Errorf("host %s: not exactly once: %s", host, problem)
		}
	}
}

// storedSeqs reads every reading in the database at dbPath, passing each
// to check when it is not nil, and returns each host's seqs in order.
func storedSeqs(t *testing.T, dbPath string, check func(*schema.Reading)) map[string][]uint64 {
	t.Helper()
	var st store.Store
	var err error
	st, err = engine.Open(dbPath, engine.Options{ReadOnly: true, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seqs := map[string][]uint64{}
	if err := st.Scan(store.Query{}, func(r *schema.Reading) error {
		seqs[r.Host] = append(seqs[r.Host], r.Seq)
		if check != nil {
			check(r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range seqs {
		slices.Sort(s)
	}
	return seqs
}

type hostState struct {
	Host      string    `json:"host"`
	LastSeen  time.Time `json:"last_seen"`
	Watermark uint64    `json:"watermark"`
	MaxSeq    uint64    `json:"max_seq"`
	Awaited   uint64    `json:"awaited"`
}

// hostStates asks the aggregator at httpAddr what it knows of each host;
// nil while it does not answer.
func hostStates(httpAddr string) []hostState {
	var states []hostState
	if resp, err := http.Get("http://" + httpAddr + "/api/v1/hosts"); err == nil {
		_ = json.NewDecoder(resp.Body).Decode(&states)
		resp.Body.Close()
	}
	return states
}

// waitCaughtUp waits until every host's watermark reaches the highest seq
// the aggregator saw, with at least min readings each.
func waitCaughtUp(t *testing.T, httpAddr string, hosts []string, min uint64, timeout time.Duration) {
	t.Helper()
	var states []hostState
	if !testutil.Eventually(timeout, func() bool {
		states = hostStates(httpAddr)
		// Caught up, and publishing right now: a publisher still waiting
		// to reconnect when stopped would rightly keep its last readings
		// in its spool for the next start.
		ok := 0
		for _, s := range states {
			if s.Watermark >= min && s.Watermark == s.MaxSeq && time.Since(s.LastSeen) < 3*time.Second {
				ok++
			}
		}
		return ok == len(hosts)
	}) {
		t.Fatalf("aggregator did not catch up within %s: %+v", timeout, states)
	}
}

// cluster is apd broker + apd aggregate + three apd-publish, each
// publishing two sensors every second with its own spool.
type cluster struct {
	t                    *testing.T
	dir                  string
	brokerAddr, httpAddr string
	brk, agg             *proc
	pubs                 []*proc
	hosts                []string
	spools               map[string]string
}

func newCluster(t *testing.T, brokerArgs ...string) *cluster {
	t.Helper()
	return newClusterWith(t, brokerArgs, nil)
}

func newClusterWith(t *testing.T, brokerArgs, publisherArgs []string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), hosts: []string{"f1", "f2", "f3"}, spools: map[string]string{}}
	c.brk = start(t, "apd", "apd broker running", append([]string{"broker", "--mqtt-addr", anyPort, "--data", filepath.Join(c.dir, "broker")}, brokerArgs...)...)
	c.brokerAddr = c.brk.addr("mqtt")
	// A broker killed and started again listens where it did: the
	// publishers and the aggregator know that port.
	c.brk.set("--mqtt-addr", c.brokerAddr)
	c.agg = start(t, "apd", "apd aggregate running", "aggregate", "--broker", "tcp://"+c.brokerAddr, "--data", filepath.Join(c.dir, "agg"), "--http-addr", anyPort)
	c.httpAddr = c.agg.addr("http")
	waitHTTP(t, c.httpAddr)
	for _, h := range c.hosts {
		c.spools[h] = filepath.Join(c.dir, h+"-spool.db")
		args := []string{"--broker", "tcp://" + c.brokerAddr, "--host", h, "--interval", "1s",
			"--sensors", "uptime,version", "--spool", c.spools[h], "--resend-after", "3s"}
		c.pubs = append(c.pubs, start(t, "apd-publish", "publishing", append(args, publisherArgs...)...))
	}
	return c
}

// restartAggregator starts the killed aggregator again, on an HTTP port
// it picks, and waits until it is ready.
func (c *cluster) restartAggregator() {
	c.t.Helper()
	c.agg.start()
	c.httpAddr = c.agg.addr("http")
	waitHTTP(c.t, c.httpAddr)
}

// waitStored waits until the aggregator has stored, of every host, the
// readings of d more (two a second) than it had when called: the cluster
// at work between two faults, however slowly the machine runs.
func (c *cluster) waitStored(d time.Duration) {
	c.t.Helper()
	n := 2 * uint64(d/time.Second)
	from := map[string]uint64{}
	for _, s := range hostStates(c.httpAddr) {
		from[s.Host] = s.Watermark
	}
	testutil.WaitFor(c.t, fmt.Sprintf("%d more readings of every host stored", n), 3*d+30*time.Second, func() bool {
		ok := 0
		for _, s := range hostStates(c.httpAddr) {
			if s.Watermark >= from[s.Host]+n {
				ok++
			}
		}
		return ok == len(c.hosts)
	})
}

// finish waits for the aggregator to catch up, stops everything cleanly
// and checks exactly-once storage.
func (c *cluster) finish(minReadings uint64) {
	c.t.Helper()
	c.stopAll(minReadings)
	checkExactlyOnce(c.t, filepath.Join(c.dir, "agg", "apd.db"), c.spools)
	c.logsOnFailure()
}

func (c *cluster) stopAll(minReadings uint64) {
	t := c.t
	t.Helper()
	waitCaughtUp(t, c.httpAddr, c.hosts, minReadings, 90*time.Second)
	for _, p := range c.pubs {
		p.stop(15 * time.Second)
	}
	c.agg.stop(10 * time.Second)
	c.brk.stop(10 * time.Second)
}

func (c *cluster) logsOnFailure() {
	t := c.t
	if t.Failed() {
		for _, p := range append([]*proc{c.brk, c.agg}, c.pubs...) {
			t.Logf("--- %s %s log:\n%s", p.name, strings.Join(p.args[:1], " "), p.log())
		}
	}
}

// TestKillAndRestart kills the aggregator and later the broker with
// SIGKILL and restarts them, while malformed payloads are published
// alongside.
func TestKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	k := scale()
	c := newCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	vandalism := malformed(ctx, t, c.brokerAddr, c.hosts)

	c.waitStored(4 * time.Second * k)
	t.Log("SIGKILL aggregator")
	c.agg.kill()
	time.Sleep(2 * time.Second * k) // the outage under test
	c.restartAggregator()
	c.waitStored(3 * time.Second * k)
	t.Log("SIGKILL broker")
	c.brk.kill()
	time.Sleep(2 * time.Second * k) // the outage under test
	c.brk.start()
	c.waitStored(4 * time.Second * k)
	cancel()
	t.Logf("malformed payloads published: %d", vandalism())
	c.finish(uint64(10 * k))
}

// TestBrokerDown cuts the publishers off from the broker (it is stopped)
// for 10 s in the short form, a minute in the long one: their spools hold
// the readings, which all arrive afterwards with their own timestamps.
func TestBrokerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	k := scale()
	down := 10 * time.Second
	if k > 1 {
		down = time.Minute
	}
	c := newCluster(t)
	c.waitStored(3 * time.Second)
	t.Logf("stopping the broker for %s", down)
	c.brk.kill()
	outage := time.Now()
	time.Sleep(down) // the outage under test
	c.brk.start()
	c.finish(uint64(down / time.Second))
	// Readings taken during the outage kept their own time.
	st, err := engine.Open(filepath.Join(c.dir, "agg", "apd.db"), engine.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	_ = st.Scan(store.Query{Sensor: "uptime", Hosts: []string{"f1"}, Since: outage.Add(time.Second), Until: outage.Add(down - time.Second)}, func(*schema.Reading) error { n++; return nil })
	t.Logf("f1 readings stamped inside the outage: %d", n)
	if n < int(down/time.Second)-3 {
		t.Errorf("only %d uptime readings of f1 stamped during the %s outage", n, down)
	}
}

// TestSubscriberQueueOverflow stops the aggregator while the broker holds
// at most 10 messages for it: the broker drops the rest, and the devices'
// resend (resend_after 3 s) delivers every reading exactly once anyway.
func TestSubscriberQueueOverflow(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	k := scale()
	c := newCluster(t, "--max-inflight", "10")
	c.waitStored(3 * time.Second)
	down := 6 * time.Second * k
	c.agg.kill()
	time.Sleep(down) // the outage under test
	t.Logf("aggregator was down %s: ~%d readings published against a broker queue of 10",
		down, int(down/time.Second)*2*len(c.hosts))
	c.restartAggregator()
	c.finish(uint64(down/time.Second) * 2)
	// The broker says on stop how many messages it dropped.
	log := c.brk.log()
	i := strings.Index(log, "dropped_publishes=")
	if i < 0 {
		t.Fatalf("broker log has no drop count:\n%s", log)
	}
	var publishes, inflight int
	fmt.Sscanf(log[i:], "dropped_publishes=%d dropped_inflight=%d", &publishes, &inflight)
	dropped := publishes + inflight
	t.Logf("broker dropped %d messages for the absent aggregator", dropped)
	if dropped == 0 {
		t.Error("the broker queue never overflowed: the scenario tested nothing")
	}
}

// TestSpoolFull keeps the broker away long enough for small spools to
// overflow: each device drops its oldest readings, logs and counts them,
// tells the aggregator, and publishing resumes; the aggregator counts the
// lost seqs instead of waiting for them forever.
func TestSpoolFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	k := scale()
	c := newClusterWith(t, nil, []string{"--spool-max-bytes", "3000"})
	c.waitStored(3 * time.Second)
	c.brk.kill()
	time.Sleep(12 * time.Second * k) // the outage under test: long enough to fill the spools
	c.brk.start()
	c.stopAll(10)
	defer c.logsOnFailure()
	st, err := engine.Open(filepath.Join(c.dir, "agg", "apd.db"), engine.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hosts, err := st.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]uint64{}
	for _, h := range hosts {
		for _, s := range h.Sensors {
			stored[h.Name] += s.Count
		}
	}
	for i, h := range hosts {
		sp, err := publisher.OpenSpool(c.spools[h.Name], publisher.SpoolOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last := sp.LastSeq()
		_, dropped := sp.Stats()
		sp.Close()
		t.Logf("host %s: %d issued, %d stored, %d dropped by the spool, %d counted lost by the aggregator, watermark %d",
			h.Name, last, stored[h.Name], dropped, h.Lost, h.Watermark)
		// A dropped reading may have reached the store before the outage
		// (published, not yet acknowledged): lost ≤ dropped, and every seq
		// is either stored or lost, once.
		if dropped == 0 || h.Lost > dropped || stored[h.Name]+h.Lost != last || h.Watermark != last {
			t.Errorf("host %s: the books do not balance", h.Name)
		}
		if !strings.Contains(c.pubs[i].log(), "spool full") {
			t.Errorf("host %s: the publisher did not log its drops", h.Name)
		}
	}
}
