package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestOncePerMinute(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	log := slog.New(newLogGuard(slog.NewTextHandler(&b, nil)))
	for i := 0; i < 100; i++ {
		log.Warn("client store quota reached", "client", "agg")
		log.Info("routine", "n", i)
	}
	log.Warn("client store quota reached", "client", "other")
	out := b.String()
	if n := strings.Count(out, "quota reached"); n != 2 {
		t.Errorf("%d warnings passed, want 2 (one per client):\n%s", n, out)
	}
	if n := strings.Count(out, "routine"); n != 100 {
		t.Errorf("info messages throttled: %d", n)
	}
}

// TestEndedConnectionsAreNotWarnings: a client that goes while the broker
// writes to it is routine (debug); any other packet error still warns.
func TestEndedConnectionsAreNotWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		warn bool
	}{
		{&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, false},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), false},
		{mqtt.ErrConnectionClosed, false},
		{io.EOF, false},
		{packets.ErrProtocolViolation, true},
		{errors.New("something else"), true},
	} {
		var b strings.Builder
		log := slog.New(newLogGuard(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})))
		log.Warn("error processing packet", "error", tc.err, "client", "c1")
		out := b.String()
		if got := strings.Contains(out, "level=WARN"); got != tc.warn || !strings.Contains(out, "error processing packet") {
			t.Errorf("%v: warned %v, want %v:\n%s", tc.err, got, tc.warn, out)
		}
	}
}

// TestRefusalsLogLittle: a device sending refused publishes with 60 KB
// payloads and 60 KB topics, a fresh client id per connection, makes the
// broker log a few lines, not its packets.
func TestRefusalsLogLittle(t *testing.T) {
	t.Parallel()
	var logged testutil.SyncBuffer
	us := NewUsers()
	if err := us.Set("pi", RoleDevice, "pi", []byte("pw")); err != nil {
		t.Fatal(err)
	}
	b, err := Start(Options{Addr: "127.0.0.1:0", Users: us, MaxPayload: 1 << 20, LoginWait: loginTimeout,
		Logger: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	big := bytes.Repeat([]byte("9"), 60<<10)
	for i := range 60 {
		c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: fmt.Sprintf("flood-%d", i), Username: "pi", Password: "pw", QoS: 1, ConnectTimeout: loginTimeout})
		if err != nil {
			t.Fatal(err)
		}
		topic := "apd/other/temperature"
		if i%2 == 1 {
			topic = "apd/pi/" + strings.Repeat("t", 60<<10)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.Publish(ctx, topic, big, false)
		cancel()
		c.Close()
	}
	// Each refusal is logged before its connection is gone.
	for i := range 60 {
		if id := fmt.Sprintf("flood-%d", i); !b.WaitGone(id, 5*time.Second) {
			t.Fatalf("%s still connected", id)
		}
	}
	t.Logf("60 refused 60 KB publishes, a client id each: %d bytes of log", len(logged.String()))
	if n := len(logged.String()); n > 16<<10 {
		t.Errorf("60 refused 60 KB publishes logged %d bytes:\n%.2000s", n, logged.String())
	}
}

// TestConnectionBurstUsesOneKey: mochi's listeners warn of each connection
// that was not established with an empty message and an error naming both
// ends of the connection, ports included. A burst of such connections from
// one address passes one warning (with a message), not one per source
// port: it must not use up the minute's budget and hold back the warnings
// of everyone else.
func TestConnectionBurstUsesOneKey(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	guard := newLogGuard(slog.NewTextHandler(&b, nil))
	guard.identify(func(id string) string { return id }) // no client is connected
	log := slog.New(guard)
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883}
	timeout := func(ip string, port int) error {
		// As mochi's attachClient returns it when the CONNECT deadline passes.
		return fmt.Errorf("read connection: %w", &net.OpError{Op: "read", Net: "tcp", Source: local,
			Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: port}, Err: os.ErrDeadlineExceeded})
	}
	for port := 40000; port < 40000+2*maxWarningsPerMinute; port++ {
		log.Warn("", "error", timeout("192.0.2.7", port))
		log.Warn("keepalive less than minimum", "client", fmt.Sprintf("id-%d", port), "keepalive", 1)
	}
	log.Warn("", "error", timeout("198.51.100.9", 50000))
	log.Warn("client store quota reached", "client", "agg")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	var fromBurst int
	for _, l := range lines {
		if strings.Contains(l, `msg=""`) || !strings.Contains(l, "msg=") {
			t.Errorf("a warning without its message: %s", l)
		}
		if strings.Contains(l, "192.0.2.7") {
			fromBurst++
		}
	}
	if fromBurst != 1 {
		t.Errorf("%d warnings passed for one address's burst of timeouts, want 1:\n%s", fromBurst, b.String())
	}
	if n := strings.Count(b.String(), "keepalive less than minimum"); n != 1 {
		t.Errorf("%d keepalive warnings passed for clients not connected (a fresh id each), want 1", n)
	}
	for _, want := range []string{"198.51.100.9", "client store quota reached"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("a warning of someone else (%s) was held back by the burst:\n%s", want, b.String())
		}
	}
}
