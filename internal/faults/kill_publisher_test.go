package faults

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestPublisherKilledUnderLoad kills apd-publish with SIGKILL while it
// works — a Pi's 13 sensors (deviceSensors) every deviceInterval, the
// aggregator acknowledging — and starts it again on the same spool each
// time, at three moments of its work, once in the short form and four
// times in the long one:
//   - mid-tick: as the first reading of a tick reaches the broker, the
//     rest of it being sampled, spooled or published;
//   - as the spool rotates: just after a new segment file appears, the
//     one before it acknowledged and being deleted;
//   - mid-replay: the broker was down for 3 s, and the device, connected
//     again, is publishing the backlog (at 100 readings a second) with
//     part of it stored.
//
// Afterwards every seq the spool issued must be stored exactly once.
func TestPublisherKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	const host = "pi"
	perTick := uint64(len(deviceSensors))
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	brk := start(t, "apd", "apd broker running", "broker", "--mqtt-addr", anyPort, "--data", filepath.Join(dir, "broker"))
	brokerAddr := brk.addr("mqtt")
	brk.set("--mqtt-addr", brokerAddr) // restarted where the clients know it
	agg := start(t, "apd", "apd aggregate running", "aggregate", "--broker", "tcp://"+brokerAddr,
		"--data", filepath.Join(dir, "agg"), "--http-addr", anyPort)
	httpAddr := agg.addr("http")
	waitHTTP(t, httpAddr)
	w := watchDevice(t, brokerAddr, host)
	// A slow replay, so that a backlog of seconds takes seconds to send.
	pub := startDevice(t, dir, brokerAddr, host, spool, "--replay-rate", "100")
	logsOnFailure(t, brk, agg, pub)
	w.waitSteady(t)

	// restart starts the killed publisher again and waits until the
	// aggregator has stored a tick it published since (so what the killed
	// run left in the spool was published again before it), and the
	// subscriber has had the $ack of it (so it is live again after a
	// broker restart). The aggregator may have seen more than the
	// subscriber, which reconnects later.
	restart := func() {
		t.Helper()
		pub.start()
		seq, _ := w.last()
		seq = max(seq, hostOf(httpAddr, host).MaxSeq) + perTick
		testutil.WaitFor(t, "the restarted publisher's readings stored", 2*time.Minute, func() bool {
			return hostOf(httpAddr, host).Watermark >= seq
		})
		w.waitAcked(t, "the subscriber to get the $ack again", seq, 2*time.Minute)
	}
	kills := 0
	for round := range int(scale()) {
		// Mid-tick.
		tick := w.nextTick(t)
		pub.kill()
		kills++
		seq, acked := w.last()
		t.Logf("round %d: SIGKILL apd-publish mid-tick, %d readings of the tick at the broker, seq %d published, %d acknowledged",
			round, w.readingsOf(tick), seq, acked)
		restart()

		// As the spool rotates.
		segs := segments(t, spool)
		testutil.WaitFor(t, "a new spool segment", 2*time.Minute, func() bool {
			for _, s := range segments(t, spool) {
				if !slices.Contains(segs, s) {
					return true
				}
			}
			return false
		})
		pub.kill()
		kills++
		seq, acked = w.last()
		t.Logf("round %d: SIGKILL apd-publish as the spool rotated (segments %v before, %v after), seq %d published, %d acknowledged",
			round, segs, segments(t, spool), seq, acked)
		restart()

		// Mid-replay.
		from, _ := w.last()
		brk.kill()
		time.Sleep(3 * time.Second) // the outage under test: 30 ticks of backlog
		brk.start()
		var at hostState
		testutil.WaitFor(t, "the device replaying its backlog", 2*time.Minute, func() bool {
			// The replay has stored part of the backlog (the seqs after
			// from), and readings after a gap wait for the rest.
			at = hostOf(httpAddr, host)
			return at.Watermark >= from+64 && at.MaxSeq >= at.Watermark+2*perTick
		})
		pub.kill()
		kills++
		t.Logf("round %d: SIGKILL apd-publish mid-replay, the backlog from seq %d stored up to %d, seq %d stored beyond",
			round, from+1, at.Watermark, at.MaxSeq)
		restart()
	}

	last, _ := w.last()
	waitCaughtUp(t, httpAddr, []string{host}, last, 2*time.Minute)
	pub.stop(15 * time.Second)
	agg.stop(10 * time.Second)
	brk.stop(10 * time.Second)
	t.Logf("%d kills", kills)
	checkExactlyOnce(t, filepath.Join(dir, "agg", "apd.db"), map[string]string{host: spool})
}

// hostOf returns what the aggregator at httpAddr knows of host.
func hostOf(httpAddr, host string) hostState {
	for _, s := range hostStates(httpAddr) {
		if s.Host == host {
			return s
		}
	}
	return hostState{}
}
