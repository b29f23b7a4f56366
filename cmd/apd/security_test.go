package main_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/publisher"
)

// These tests attack a running apd serve with a users file the way a
// hostile device would, with the real mosquitto clients.

// mosquitto finds mosquitto_pub and mosquitto_sub or skips the test.
func mosquitto(t *testing.T) (pub, sub string) {
	t.Helper()
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto_pub not installed")
	}
	sub, err = exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Skip("mosquitto_sub not installed")
	}
	return pub, sub
}

// addUsers writes a users file with one user per spec {name, role[, host]};
// each password is "<name>-secret".
func addUsers(t *testing.T, dir string, specs ...[]string) string {
	t.Helper()
	users := filepath.Join(dir, "users")
	for _, u := range specs {
		pw := filepath.Join(dir, u[0]+".pw")
		if err := os.WriteFile(pw, []byte(u[0]+"-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"users", "add", u[0], "--role", u[1], "--users-file", users, "--password-file", pw}
		if len(u) > 2 {
			args = append(args, "--host", u[2])
		}
		if r := run(t, nil, "apd", args...); r.code != 0 {
			t.Fatalf("users add %s: %s", u[0], r.stderr)
		}
	}
	return users
}

// mqttArgs returns -h/-p and the credentials of user for a mosquitto client.
func mqttArgs(addr, user string) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"-h", host, "-p", port, "-u", user, "-P", user + "-secret"}
}

// retained returns the retained messages on filters, as "topic payload"
// lines, read by user.
func retained(t *testing.T, sub, addr, user string, filters ...string) string {
	t.Helper()
	args := append(mqttArgs(addr, user), "-v", "--retained-only", "-W", "1")
	for _, f := range filters {
		args = append(args, "-t", f)
	}
	out, _ := exec.Command(sub, args...).CombinedOutput()
	return strings.TrimSpace(strings.ReplaceAll(string(out), "Timed out", ""))
}

// TestWillChecked: a device user's last will must pass the checks of a
// publish by that user. A will on another host's $ack or $status, on
// $SYS, on another host's Home Assistant config or on a wildcard topic
// refuses the CONNECT; after the connection is killed no retained message
// exists on any of those topics. The device's own $status will works.
func TestWillChecked(t *testing.T) {
	t.Parallel()
	_, sub := mosquitto(t)
	dir := t.TempDir()
	users := addUsers(t, dir, []string{"pi-a", "device", "pi-a"}, []string{"pi-b", "device", "pi-b"}, []string{"root", "admin"})
	s := startServe(t, "--users-file", users)
	forged := []string{"apd/pi-b/$ack", "apd/pi-b/$status", "apd/pi-b/temperature", "$SYS/broker/forged",
		"homeassistant/sensor/pi_b/temperature/config", "apd/pi-a/$ack", "apd/pi-a/x/y"}
	for _, topic := range forged {
		var out bytes.Buffer
		c := exec.Command(sub, append(mqttArgs(s.mqtt, "pi-a"), "-i", "attacker", "-t", "apd/pi-a/$ack",
			"--will-topic", topic, "--will-retain", "--will-qos", "1", "--will-payload", `{"seq":61,"state":"online","first_seq":1000000000}`)...)
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(strings.ToLower(out.String()), "not authori") {
				t.Errorf("will on %s: exit %v, %q; want a refusal saying not authorised", topic, err, out.String())
			}
		case <-time.After(2 * time.Second):
			// Connected: drop the connection the way a dying device does,
			// which makes the broker publish the will.
			_ = c.Process.Kill()
			<-done
			t.Errorf("will on %s: CONNECT accepted", topic)
		}
	}
	// mosquitto_sub will not send a wildcard will topic; a raw CONNECT does.
	for _, topic := range []string{"apd/#", "apd/pi-a/+"} {
		if rc := rawConnect(t, s.mqtt, "pi-a", "pi-a-secret", topic); rc != 5 {
			t.Errorf("will on %s: CONNACK return code %d, want 5 (not authorised)", topic, rc)
		}
	}
	if rc := rawConnect(t, s.mqtt, "pi-a", "pi-a-secret", "apd/pi-a/$status"); rc != 0 {
		t.Errorf("raw CONNECT with the device's own will: return code %d", rc)
	}
	// Only the device's own status may be retained: the raw CONNECT's own
	// will, published once the broker saw its connection dropped, after
	// the others'.
	var all string
	testutil.WaitFor(t, "the raw CONNECT's own will", 10*time.Second, func() bool {
		all = retained(t, sub, s.mqtt, "root", "#", "$SYS/broker/forged")
		return strings.Contains(all, `apd/pi-a/$status {"seq":99}`)
	})
	for _, line := range strings.Split(all, "\n") {
		if line != "" && !strings.HasPrefix(line, "apd/pi-a/$status ") {
			t.Errorf("retained after the forged wills: %s", line)
		}
	}

	// The device's own status as its will: accepted, and published when
	// the connection dies.
	own := mosquittoSub(t, append(mqttArgs(s.mqtt, "pi-a"), "-i", "pi-a", "-t", "apd/pi-a/$ack",
		"--will-topic", "apd/pi-a/$status", "--will-retain", "--will-payload", `{"state":"lost"}`)...)
	_ = own.Cmd.Process.Kill()
	_ = own.Wait()
	testutil.WaitFor(t, "the device's own will", 5*time.Second, func() bool {
		return retained(t, sub, s.mqtt, "root", "apd/pi-a/$status") == `apd/pi-a/$status {"state":"lost"}`
	})
}

// TestClientIDBoundToUser: a device user taking a reader's persistent
// client id is refused, neither receiving the reader's queued messages
// nor kicking the reader off; the reader then gets all of its queue.
func TestClientIDBoundToUser(t *testing.T) {
	t.Parallel()
	pub, sub := mosquitto(t)
	dir := t.TempDir()
	users := addUsers(t, dir, []string{"pi", "device", "pi"}, []string{"dash", "reader"})
	s := startServe(t, "--users-file", users)
	publish := func(v string) {
		t.Helper()
		if out, err := exec.Command(pub, append(mqttArgs(s.mqtt, "pi"), "-q", "1", "-t", "apd/pi/temperature", "-m", v)...).CombinedOutput(); err != nil {
			t.Fatalf("publish: %v %s", err, out)
		}
	}
	// The reader makes a persistent session and goes away.
	readerArgs := append(mqttArgs(s.mqtt, "dash"), "-i", "dashboard", "-c", "-q", "1", "-t", "apd/pi/temperature")
	if out, err := exec.Command(sub, append(readerArgs, "-E")...).CombinedOutput(); err != nil {
		t.Fatalf("reader session: %v %s", err, out)
	}
	publish("1")
	publish("2")

	// The device tries to resume it.
	var thief bytes.Buffer
	steal := exec.Command(sub, append(mqttArgs(s.mqtt, "pi"), "-i", "dashboard", "-c", "-q", "1", "-t", "apd/pi/$ack", "-W", "2", "-v")...)
	steal.Stdout, steal.Stderr = &thief, &thief
	err := steal.Run()
	if err == nil || strings.Contains(thief.String(), "apd/pi/temperature") || !strings.Contains(strings.ToLower(thief.String()), "identifier rejected") {
		t.Errorf("device on the reader's client id: %v %q; want identifier rejected and nothing delivered", err, thief.String())
	}

	// The reader comes back: its queue is whole. While it is connected,
	// the device's attempts do not kick it off. (A Go client here:
	// mosquitto_sub gives up when mochi answers a resumed session's
	// SUBSCRIBE with "packet identifier in use", which it does when its
	// own resend took the same id.)
	got := make(chan string, 10)
	deliver := func(m mqttc.Message) { got <- string(m.Payload); m.Ack() }
	reader, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + s.mqtt, ClientID: "dashboard", Username: "dash", Password: "dash-secret",
		QoS: 1, Persistent: true, ManualAck: true, Unsolicited: deliver})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if err := reader.SubscribeMessages("apd/pi/temperature", deliver); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = exec.Command(sub, append(mqttArgs(s.mqtt, "pi"), "-i", "dashboard", "-t", "apd/pi/$ack", "-W", "1")...).Run()
	}
	publish("3")
	var seen []string
	for len(seen) < 3 {
		select {
		case v := <-got:
			seen = append(seen, v)
		case <-time.After(5 * time.Second):
			t.Fatalf("reader got %v, want 1, 2, 3", seen)
		}
	}
	// mochi resends a resumed session's queue sorted by the second each
	// message was made in, so 1 and 2 may come in either order.
	sort.Strings(seen)
	if strings.Join(seen, ",") != "1,2,3" || !reader.Connected() {
		t.Errorf("reader got %v (connected %v), want 1, 2, 3 without losing its connection", seen, reader.Connected())
	}
}

// rawConnect sends an MQTT 3.1.1 CONNECT with a retained QoS 1 will on
// willTopic, unchecked by any client library, and returns the CONNACK's
// return code. It then drops the connection without DISCONNECT.
func rawConnect(t *testing.T, addr, user, password, willTopic string) byte {
	t.Helper()
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := append(str("MQTT"), 4, 0x80|0x40|0x20|0x08|0x04|0x02, 0, 60)
	for _, f := range []string{"raw-" + strings.NewReplacer("#", "h", "+", "p", "/", "_", "$", "d").Replace(willTopic), willTopic, `{"seq":99}`, user, password} {
		body = append(body, str(f)...)
	}
	pkt := append([]byte{0x10, byte(len(body))}, body...)
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if ack[0] != 0x20 {
		t.Fatalf("answer to CONNECT: % x", ack)
	}
	return ack[3]
}

// TestWipedSpoolAcknowledgedAgain: a device whose spool is deleted (a
// re-flashed SD card) starts its seqs at 1 again; with its new spool id
// the aggregator acknowledges it at once and the new spool drains to
// empty, while the old readings stay stored.
func TestWipedSpoolAcknowledgedAgain(t *testing.T) {
	t.Parallel()
	s := startServe(t)
	spool := filepath.Join(t.TempDir(), "spool.db")
	publishOnce := func() {
		t.Helper()
		r := run(t, nil, "apd-publish", "--broker", "tcp://"+s.mqtt, "--host", "flashed", "--once", "--sensors", "uptime,ram_available", "--spool", spool)
		if r.code != 0 {
			t.Fatalf("apd-publish: %s", r.stderr)
		}
	}
	depth := func() int {
		t.Helper()
		sp, err := publisher.OpenSpool(spool, publisher.SpoolOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		return sp.Depth()
	}
	for range 3 {
		publishOnce()
	}
	if d := depth(); d != 0 {
		t.Fatalf("before the wipe %d readings wait in the spool", d)
	}
	if err := os.RemoveAll(spool); err != nil {
		t.Fatal(err)
	}
	// Seqs 1 and 2 again, below the host's watermark of 6.
	publishOnce()
	if d := depth(); d != 0 {
		t.Errorf("after the wipe %d readings wait in the new spool, want 0 (acknowledged)", d)
	}
	q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "uptime", "--host", "flashed", "--format", "ndjson")
	if n := len(ndjsonLines(t, q.stdout)); n != 4 {
		t.Errorf("stored uptime readings: %d, want 4 (3 before the wipe, 1 after)", n)
	}
}

// TestDeadLetterFloodBounded: a device flooding junk for 20 s (5 s with
// -short) with a fresh client id per connection grows the database by at
// most the configured dead-letter bound; the newest dead letters are
// kept and the dropped ones counted.
func TestDeadLetterFloodBounded(t *testing.T) {
	t.Parallel()
	const bound = 1 << 20
	flood := 20 * time.Second
	if testing.Short() {
		flood = 5 * time.Second
	}
	dir := t.TempDir()
	users := addUsers(t, dir, []string{"vandal", "device", "vandal"})
	s := startServe(t, "--users-file", users, "--dead-letters-max-bytes", fmt.Sprint(bound))
	db := filepath.Join(s.data, "apd.db")
	before, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte("{not json "), 400) // 4 KB
	deadline := time.Now().Add(flood)
	sent, conns := 0, 0
	for time.Now().Before(deadline) {
		conns++
		c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + s.mqtt, ClientID: fmt.Sprintf("junk-%d", conns),
			Username: "vandal", Password: "vandal-secret", QoS: 1, ConnectTimeout: time.Second})
		if err != nil {
			continue
		}
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := c.Publish(ctx, "apd/vandal/x", junk, false)
			cancel()
			if err != nil {
				break // cut off
			}
			sent++
		}
		c.Close()
	}
	metrics := httpGet(t, "http://"+s.http+"/metrics")
	s.stop(t)
	after, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d junk messages over %d connections; apd.db %d → %d bytes", sent, conns, before.Size(), after.Size())
	if os.Getenv("APD_KEEP_DB") != "" {
		_ = exec.Command("cp", db, os.Getenv("APD_KEEP_DB")).Run()
	}
	if grown := after.Size() - before.Size(); grown > bound {
		t.Errorf("apd.db grew by %d bytes, more than the dead-letter bound of %d", grown, bound)
	}
	if !strings.Contains(metrics, "apd_dead_letters_dropped_total ") || strings.Contains(metrics, "apd_dead_letters_dropped_total 0\n") {
		t.Errorf("no dead letters dropped:\n%s", grep(metrics, "apd_dead_letters"))
	}
	dl := run(t, nil, "apd", "deadletters", "--db", db)
	if dl.code != 0 || !strings.Contains(dl.stdout, "invalid_json") {
		t.Errorf("apd deadletters: %d %s%s", dl.code, dl.stdout, dl.stderr)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// grep returns the lines of text containing part.
func grep(text, part string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, part) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestTerminalOutputEscaped: escape sequences in what a device sends (a
// reading's human text and unit, its status) reach no terminal raw:
// apd query (table and CSV), apd hosts and apd watch print them escaped.
func TestTerminalOutputEscaped(t *testing.T) {
	t.Parallel()
	pub, _ := mosquitto(t)
	s := startServe(t)
	watched := startWatch(t, s, "evil")
	host, port, _ := net.SplitHostPort(s.mqtt)
	const attack = `\u001b]0;pwned\u0007\u001b[2J\u009b31m`
	for _, m := range [][2]string{
		{"apd/evil/$status", `{"state":"online` + attack + `"}`},
		{"apd/evil/temperature", `{"v":1,"ts":"` + time.Now().UTC().Format("2006-01-02T15:04:05.000Z") + `","value":{"magnitude":1,"unit":"degC` + attack + `"},"human":"hot` + attack + `"}`},
	} {
		if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", m[0], "-m", m[1]).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	server := "http://" + s.http
	testutil.WaitFor(t, "the reading stored", 5*time.Second, func() bool {
		return strings.Contains(run(t, nil, "apd", "query", "--server", server, "--sensor", "temperature").stdout, "hot")
	})
	testutil.WaitFor(t, "apd watch output", 5*time.Second, func() bool { return strings.Contains(watched.String(), "hot") })
	outputs := map[string]string{
		"query table": run(t, nil, "apd", "query", "--server", server, "--sensor", "temperature").stdout,
		"query csv":   run(t, nil, "apd", "query", "--server", server, "--sensor", "temperature", "--format", "csv").stdout,
		"hosts":       run(t, nil, "apd", "hosts", "--server", server).stdout,
		"watch":       watched.String(),
	}
	for name, out := range outputs {
		if strings.ContainsAny(out, "\x1b\x07\u009b") {
			t.Errorf("%s prints a raw control character: %q", name, out)
		}
		if !strings.Contains(out, `\x1b]0;pwned`) {
			t.Errorf("%s does not show the escaped text: %q", name, out)
		}
	}
}

// TestFilesPrivateAndBackupVerified: the database, a backup and an export
// are created 0600 under a common umask; apd verify passes a sound backup
// and refuses damaged ones (cut to half, cut to 95 %, a page of garbage)
// with a clear error instead of crashing; apd backup itself checks what it
// received. Not parallel: it sets the process's umask.
func TestFilesPrivateAndBackupVerified(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	s := startServe(t)
	r := run(t, nil, "apd-publish", "--broker", "tcp://"+s.mqtt, "--host", "h", "--once", "--spool", filepath.Join(t.TempDir(), "s.db"))
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	dir := t.TempDir()
	backup, export := filepath.Join(dir, "copy.db"), filepath.Join(dir, "out.ndjson")
	if r := run(t, nil, "apd", "backup", "--server", "http://"+s.http, backup); r.code != 0 {
		t.Fatalf("backup: %s", r.stderr)
	}
	if r := run(t, nil, "apd", "export", "--server", "http://"+s.http, "--out", export); r.code != 0 {
		t.Fatalf("export: %s", r.stderr)
	}
	for _, p := range []string{filepath.Join(s.data, "apd.db"), backup, export} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", filepath.Base(p), fi.Mode().Perm(), err)
		}
	}
	if r := run(t, nil, "apd", "verify", backup); r.code != 0 {
		t.Fatalf("verify of a sound backup: %d %s", r.code, r.stderr)
	}
	whole, _ := os.ReadFile(backup)
	garbage := bytes.Clone(whole)
	for i := 2 * 4096; i < 3*4096 && i < len(garbage); i++ {
		garbage[i] = byte(i * 7)
	}
	for name, content := range map[string][]byte{"half": whole[:len(whole)/2], "95%": whole[:len(whole)*95/100], "garbage page": garbage} {
		p := filepath.Join(dir, "damaged.db")
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		r := run(t, nil, "apd", "verify", p)
		if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 || strings.Contains(r.stderr, "goroutine") {
			t.Errorf("verify of a %s copy: exit %d, %q; want exit 1 with one line", name, r.code, r.stderr)
		}
		// apd backup --db of the damaged file must not produce a backup.
		out := filepath.Join(dir, "from-damaged.db")
		if r := run(t, nil, "apd", "backup", "--db", p, out); r.code == 0 {
			t.Errorf("backup of a %s file succeeded", name)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("backup of a %s file left %s", name, out)
			os.Remove(out)
		}
	}
}

// TestSmallHoles: apd users add refuses a name with control characters
// (which would make a users file apd cannot read) and writes nothing;
// with --insecure the log says that anyone is admitted.
func TestSmallHoles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	_ = os.WriteFile(pw, []byte("secret\n"), 0o600)
	users := filepath.Join(dir, "users")
	r := run(t, nil, "apd", "users", "add", "bad\x01name", "--role", "reader", "--users-file", users, "--password-file", pw)
	if r.code != 2 || !strings.Contains(r.stderr, "control characters") {
		t.Errorf("users add with a control character: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(users); err == nil {
		t.Error("a users file was written")
	}
	s := startServe(t, "--insecure")
	s.stop(t)
	if log := s.log.String(); strings.Contains(log, "loopback clients only") || !strings.Contains(log, "admits anyone") {
		t.Errorf("serve --insecure log:\n%s", log)
	}
}

// TestReadyMeansListening: the moment /readyz says ready, every listener
// (MQTT, TLS, WebSocket) takes connections: a test or a probe that waits
// on it never races the broker.
func TestReadyMeansListening(t *testing.T) {
	t.Parallel()
	_, cert, key := testutil.TLSFiles(t, t.TempDir())
	for range 3 {
		s := startServe(t, "--tls-addr", anyPort, "--tls-cert", cert, "--tls-key", key, "--ws-addr", anyPort)
		// The TLS listeners are dialled with a full handshake: a bare TCP
		// connect and close would make the WebSocket listener's HTTP server
		// log a handshake error of its own, racing the check below.
		for _, a := range []struct {
			addr string
			tls  bool
		}{{s.mqtt, false}, {s.tls, true}, {s.ws, true}} {
			d := &net.Dialer{Timeout: time.Second}
			var c net.Conn
			var err error
			if a.tls {
				c, err = tls.DialWithDialer(d, "tcp", a.addr, &tls.Config{InsecureSkipVerify: true})
			} else {
				c, err = d.Dial("tcp", a.addr)
			}
			if err != nil {
				t.Fatalf("ready, but %s refuses connections: %v", a.addr, err)
			}
			c.Close()
		}
		if strings.Contains(s.log.String(), "handshake error") {
			t.Errorf("readiness probing logged a handshake error:\n%s", s.log)
		}
		s.stop(t)
	}
}
