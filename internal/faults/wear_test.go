package faults

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/procio"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestHourLongOutage keeps the aggregator away from a device for an hour
// of its ticks in fast time, then checks that every reading is stored
// exactly once and that the spool wrote at most twice the bytes of the
// readings it took in meanwhile.
//
// The device is apd-publish with a Pi's 13 sensors (deviceSensors) every
// deviceInterval, its --sync window the default's 30 s counted in ticks
// (3), so that it syncs as often per reading as at 10 s (30 s of fast
// time would sync a few times in the whole outage, and flatter the
// figure). The fault is the
// aggregator's: apd aggregate is SIGKILLed for 360 ticks in the long form
// (an hour of 10 s ticks), 90 in the short one. The broker stays up and
// takes every reading, resends included (every 3 s); no $ack comes, so
// the device keeps everything in its spool — the hour as a device lives it
// when the aggregator or its database is down — and a subscriber at the
// broker sees each payload it publishes, byte for byte.
func TestHourLongOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs processes for tens of seconds")
	}
	const host = "pi"
	ticks := 90 * int(scale())
	dir := t.TempDir()
	spool := filepath.Join(diskDir(t, dir), "spool")
	brk := start(t, "apd", "apd broker running", "broker", "--mqtt-addr", anyPort, "--data", filepath.Join(dir, "broker"))
	brokerAddr := brk.addr("mqtt")
	agg := start(t, "apd", "apd aggregate running", "aggregate", "--broker", "tcp://"+brokerAddr,
		"--data", filepath.Join(dir, "agg"), "--http-addr", anyPort)
	waitHTTP(t, agg.addr("http"))
	w := watchDevice(t, brokerAddr, host)
	pub := startDevice(t, dir, brokerAddr, host, spool, "--sync", (3 * deviceInterval).String())
	logsOnFailure(t, brk, agg, pub)
	w.waitSteady(t)

	t.Logf("SIGKILL apd aggregate for %d ticks of %s", ticks, deviceInterval)
	agg.kill()
	before, counted := ioCounters(t, pub.pid())
	outage := time.Now()
	testutil.WaitFor(t, fmt.Sprintf("%d ticks published during the outage", ticks), time.Duration(ticks)*deviceInterval*10+time.Minute,
		func() bool { return w.ticksAfter(outage) >= ticks })
	// Every seq up to lastSeq was spooled before the counters are read.
	lastSeq, _ := w.last()
	after, _ := ioCounters(t, pub.pid())
	outageLasted := time.Since(outage)
	segs := segments(t, spool)

	agg.start()
	httpAddr := agg.addr("http")
	waitHTTP(t, httpAddr)
	back := time.Now()
	w.waitAcked(t, "the outage's readings acknowledged", lastSeq, 3*time.Minute)
	t.Logf("aggregator back: readings up to seq %d acknowledged %s after its restart", lastSeq, time.Since(back).Round(time.Millisecond))
	waitCaughtUp(t, httpAddr, []string{host}, lastSeq, 90*time.Second)
	pub.stop(15 * time.Second)
	agg.stop(10 * time.Second)
	brk.stop(10 * time.Second)
	checkExactlyOnce(t, filepath.Join(dir, "agg", "apd.db"), map[string]string{host: spool})

	// The readings' bytes are the sizes of the JSON payloads the device
	// published, as the subscriber got them: exactly the bytes of each
	// reading the spool wrote and publishes again from its records (what
	// the store keeps is values, not payloads, and a re-encoding of them
	// would only approximate). Counted are the readings stamped after
	// the first reading of the counters (sampled, hence spooled, after
	// it) with a seq seen before the second (spooled before it); a tick
	// spooled across either reading counts in the bytes written only,
	// which errs against the spool.
	spooled := w.payloads(func(seq uint64, r *published) bool { return seq <= lastSeq && r.ts.After(outage) })
	size := spooled.bytes
	t.Logf("outage of %s: %d ticks, %d readings spooled, %d bytes of payloads (%.0f a reading); %d of them published more than once, %d publications in all; %d segment files at its end",
		outageLasted.Round(time.Millisecond), spooled.ticks, spooled.readings, size, float64(size)/float64(max(spooled.readings, 1)),
		spooled.resent, spooled.publications, len(segs))
	if spooled.differ > 0 {
		t.Errorf("%d resent readings were published with other bytes than the first time", spooled.differ)
	}
	if spooled.readings < ticks*len(deviceSensors)/2 {
		t.Errorf("only %d readings of %d ticks of %d sensors counted: the scenario measured little", spooled.readings, ticks, len(deviceSensors))
	}
	if !counted {
		t.Logf("bytes written not checked: %v", procio.ErrUnsupported)
		return
	}
	written := after.Written() - min(after.Written(), before.Written())
	ratio := float64(written) / float64(max(size, 1))
	t.Logf("apd-publish wrote %d bytes during the outage (%d dirtied, %d cancelled) for %d bytes of readings: %.2f× (bound 2×)",
		written, after.WriteBytes-before.WriteBytes, after.CancelledWriteBytes-before.CancelledWriteBytes, size, ratio)
	if written == 0 {
		t.Logf("the kernel counted no write: the spool's file system does not count them (tmpfs)")
	}
	if written > 2*uint64(size) {
		t.Errorf("the spool wrote %d bytes for %d bytes of readings: %.2f×, more than 2×", written, size, ratio)
	}
}

// ioCounters reads the storage write counters of process pid, and
// reports false where the system keeps none.
func ioCounters(t *testing.T, pid int) (procio.Counters, bool) {
	t.Helper()
	c, err := procio.Of(strconv.Itoa(pid))
	if errors.Is(err, procio.ErrUnsupported) {
		return c, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return c, true
}

// diskDir returns dir, or, when dir is on a tmpfs (memory, whose writes
// the kernel's I/O accounting never counts), a directory made beside the
// test in the package's directory, removed when the test ends.
func diskDir(t *testing.T, dir string) string {
	t.Helper()
	if !onTmpfs(t, dir) {
		return dir
	}
	d, err := os.MkdirTemp(".", "wear-")
	if err != nil {
		t.Fatal(err)
	}
	d, err = filepath.Abs(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if onTmpfs(t, d) {
		t.Logf("the temporary directory and the package's are both on a tmpfs: writes will not be counted")
	} else {
		t.Logf("the temporary directory is on a tmpfs: the spool is in %s", d)
	}
	return d
}
