package faults

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/fleetsim"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// TestFleetKillServe kills apd serve with SIGKILL in the middle of a tick
// of a thousand devices (ten sensors each, every one its own connection,
// all on the same clock-aligned tick), restarts it, and lets the devices
// reconnect and resend what was not acknowledged. Afterwards every
// device's $ack must have reached its last seq, and the database must hold
// each reading every device made exactly once, with the value it sent.
func TestFleetKillServe(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	dir := t.TempDir()
	fleetKillServe(t, dir, filepath.Join(dir, "apd.db"))
}

// TestFleetKillServePostgres is TestFleetKillServe with the readings in
// PostgreSQL (apd serve --store postgres://…).
func TestFleetKillServePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	pg := testutil.StartPostgres(t)
	fleetKillServe(t, t.TempDir(), pg.NewDatabase(t))
}

// fleetKillServe runs a fleet against apd serve storing in location,
// kills the server with SIGKILL mid-tick, restarts it, and checks every
// reading each device issued is stored exactly once.
func fleetKillServe(t *testing.T, dir, location string) {
	const devices, sensors = 1000, 10
	interval := 3 * time.Second
	ticks := 4 * int(scale())
	killAt := ticks / 2 // mid-way through the run, inside this tick's spread

	srv := start(t, "apd", "apd serve running", "serve", "--data", dir, "--store", location, "--mqtt-addr", anyPort, "--http-addr", anyPort)
	mqttAddr := srv.addr("mqtt")
	// The restart listens where the first run did: the devices know
	// that port.
	srv.set("--mqtt-addr", mqttAddr)
	waitHTTP(t, srv.addr("http"))
	defer func() {
		if t.Failed() {
			t.Logf("--- apd serve log:\n%s", srv.log())
		}
	}()

	fleet, err := fleetsim.Connect(fleetsim.Options{Broker: mqttAddr, Devices: devices, Sensors: sensors,
		Acks: true, ResendAfter: 4 * interval})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()

	first := time.Now().Truncate(interval).Add(interval)
	for tick := range ticks {
		at := first.Add(time.Duration(tick) * interval)
		if tick == killAt {
			// The tick runs while the server dies: some of its readings
			// reach the old process (some committed, some not), some are
			// written to dead sockets, some wait for the reconnect.
			done := make(chan struct{})
			go func() { fleet.Tick(at, time.Second); close(done) }()
			// Mid-tick: once about half of this tick's readings are out.
			// (Should the tick lag far behind, the kill comes anyway.)
			half := (tick*devices + devices/2) * sensors
			testutil.Eventually(time.Until(at.Add(2*interval)), func() bool { return fleet.Issued() >= half })
			t.Logf("tick %d: SIGKILL apd serve with %d of %d readings acknowledged", tick, fleet.Acked(), fleet.Issued())
			srv.kill()
			time.Sleep(time.Second) // the outage under test
			restart := time.Now()
			srv.start()
			waitHTTP(t, srv.addr("http"))
			t.Logf("apd serve ready again %s after its restart", time.Since(restart).Round(time.Millisecond))
			<-done
			continue
		}
		fleet.Tick(at, time.Second)
	}

	issued := fleet.Issued()
	testutil.Eventually(90*time.Second, func() bool { return len(fleet.Behind()) == 0 })
	t.Logf("%d readings issued, %d acknowledged, %d reconnections", issued, fleet.Acked(), fleet.Reconnects())
	if behind := fleet.Behind(); len(behind) > 0 {
		issuedSeq, acked := behind[0].LastSeq()
		t.Fatalf("%d devices' $ack never reached their last seq (%s: %d of %d)", len(behind), behind[0].Host, acked, issuedSeq)
	}
	if fleet.Reconnects() < devices {
		t.Errorf("only %d reconnections: the kill did not reach every device", fleet.Reconnects())
	}
	fleet.Close()
	srv.stop(30 * time.Second)

	wrong := 0
	checkFleetStored(t, location, fleet, func(r *schema.Reading) {
		if q, ok := schema.ParseQuantity(r.Value); !ok || q.Magnitude != fleetsim.Value(r.Host, r.Seq) {
			if wrong++; wrong <= 3 {
				t.Errorf("%s seq %d: stored %s, sent %v", r.Host, r.Seq, r.Value, fleetsim.Value(r.Host, r.Seq))
			}
		}
	})
}

// exactlyOnce describes how sorted seqs differ from 1..last, or returns "".
func exactlyOnce(seqs []uint64, last uint64) string {
	missing, dups, extra := 0, 0, 0
	want := uint64(1)
	for i, s := range seqs {
		switch {
		case s > last:
			extra++
		case i > 0 && s == seqs[i-1]:
			dups++
		default:
			for ; want < s; want++ {
				missing++
			}
			want = s + 1
		}
	}
	if want <= last {
		missing += int(last - want + 1)
	}
	if missing == 0 && dups == 0 && extra == 0 {
		return ""
	}
	return fmt.Sprintf("%d issued, %d stored: %d missing, %d duplicates, %d never issued", last, len(seqs), missing, dups, extra)
}
