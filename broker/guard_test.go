package broker

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// closedWithin reports whether the broker closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err == io.EOF || err != nil
}

// settled waits until the probes with which Start saw the listeners at
// addrs take connections are gone, and the places they took among the
// connections not logged in are free again. A probe may be accepted
// after Start returned; a listener accepts in order, so once a
// connection made now has been accepted and refused (its first bytes
// are neither MQTT, TLS nor HTTP), the probe before it was accepted too.
func settled(t *testing.T, b *Broker, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		c := dialRaw(t, addr)
		_, _ = c.Write([]byte("\x30\x00\r\n\r\n"))
		if !endsWithin(c, 5*time.Second) {
			t.Fatalf("%s kept a connection that sent garbage", addr)
		}
		c.Close()
	}
	testutil.WaitFor(t, "the start's probes gone", 5*time.Second, func() bool { return b.guard.pending.Load() == 0 })
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConnectLimits: a connection that sends nothing is closed at the
// CONNECT deadline; one declaring a CONNECT larger than the limit, or
// sending something else first, is closed at once; beyond the cap of
// connections not yet logged in, new ones are closed at once; clients that
// log in are not counted.
//
// Not parallel: it measures how soon connections are closed, which others
// running beside it would delay.
func TestConnectLimits(t *testing.T) {
	b, err := Start(Options{Addr: "127.0.0.1:0", ConnectTimeout: 500 * time.Millisecond, MaxConnectSize: 1024, MaxUnauthenticated: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addr := b.Addr()
	settled(t, b, addr)

	// A 64 KiB CONNECT, announced in its fixed header, half sent.
	big := dialRaw(t, addr)
	_, _ = big.Write([]byte{0x10, 0x80, 0x80, 0x04, 0x00, 0x04, 'M', 'Q', 'T', 'T'})
	if !closedWithin(big, 200*time.Millisecond) {
		t.Error("a 64 KiB CONNECT was not refused at once")
	}
	notConnect := dialRaw(t, addr)
	_, _ = notConnect.Write([]byte{0x30, 0x02, 0x00, 0x00}) // PUBLISH first
	if !closedWithin(notConnect, 200*time.Millisecond) {
		t.Error("a PUBLISH before CONNECT was not refused at once")
	}

	// Logged-in clients do not take places.
	for i := range 3 {
		c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + addr, ClientID: string(rune('a' + i))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	idle := make([]net.Conn, 5)
	for i := range idle {
		idle[i] = dialRaw(t, addr)
	}
	testutil.WaitFor(t, "five connections counted as not logged in", 5*time.Second, func() bool { return b.guard.pending.Load() == 5 })
	over := dialRaw(t, addr)
	if !closedWithin(over, 200*time.Millisecond) {
		t.Error("a connection beyond the cap of unauthenticated ones was kept")
	}
	start := time.Now()
	for i, c := range idle {
		if !closedWithin(c, 2*time.Second) {
			t.Fatalf("idle connection %d still open after the CONNECT deadline", i)
		}
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("idle connections closed after %s, before the 500 ms deadline", waited)
	}
	// Places free again: a client logs in.
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + addr, ClientID: "later"})
	if err != nil {
		t.Fatalf("after the idle ones went: %v", err)
	}
	c.Close()
}
