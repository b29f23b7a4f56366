package broker

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// The tests in this file run one scenario against the embedded broker and
// against Mosquitto, the reference: where MQTT leaves no room for choice
// they must behave alike.

// RequireMosquittoEnv, when set to 1, makes a missing mosquitto binary a
// failure instead of a skip (CI sets it).
const RequireMosquittoEnv = "APD_REQUIRE_MOSQUITTO"

// brokerUnderTest starts a broker for one test and returns its address.
type brokerUnderTest struct {
	name  string
	start func(t *testing.T) string
}

var brokersUnderTest = []brokerUnderTest{
	{"embedded", startEmbeddedBroker},
	{"mosquitto", startMosquittoBroker},
}

// startEmbeddedBroker starts apd's broker on a free loopback port, with
// its sessions kept in a state file as in apd serve.
func startEmbeddedBroker(t *testing.T) string {
	t.Helper()
	b, err := Start(Options{Addr: "127.0.0.1:0", StatePath: filepath.Join(t.TempDir(), "broker.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.Addr()
}

// startMosquittoBroker starts Debian's Mosquitto on a free loopback port,
// anonymous and without persistence. Without the mosquitto package the
// test is skipped, saying so, unless RequireMosquittoEnv is 1.
func startMosquittoBroker(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto" // Debian installs it outside a user's PATH
		if _, err := os.Stat(bin); err != nil {
			msg := "comparison with Mosquitto needs the mosquitto broker (Debian: apt-get install mosquitto)"
			if os.Getenv(RequireMosquittoEnv) == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	// Mosquitto cannot listen on a port it picks (its port 0 is a Unix
	// socket): a free port is chosen for it, and chosen again should
	// another process take it first.
	var lastErr error
	for range 3 {
		addr := testutil.FreeAddr(t)
		_, port, _ := strings.Cut(addr, ":")
		conf := filepath.Join(t.TempDir(), "mosquitto.conf")
		cfg := "listener " + port + " 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\n"
		if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		logs := &testutil.SyncBuffer{}
		cmd := exec.Command(bin, "-c", conf)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() { _ = cmd.Process.Kill(); <-exited }
		if lastErr = mqttReady(addr, exited, 10*time.Second); lastErr == nil {
			t.Cleanup(func() {
				stop()
				if t.Failed() && logs.String() != "" {
					t.Logf("mosquitto said:\n%s", logs)
				}
			})
			return addr
		}
		stop()
		lastErr = fmt.Errorf("%w\n%s", lastErr, logs)
	}
	t.Fatalf("mosquitto did not start: %v", lastErr)
	return ""
}

// mqttReady waits until the broker at addr answers a CONNECT, or exited
// is closed, or timeout passes.
func mqttReady(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	connect := append(append(mqttString("MQTT"), 4, 0x02, 0, 10), mqttString("probe")...)
	for {
		select {
		case <-exited:
			return errors.New("exited")
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, err = c.Write(append(append([]byte{0x10}, varint(len(connect))...), connect...))
			ack := make([]byte, 4)
			if err == nil {
				_, err = c.Read(ack)
			}
			c.Close()
			if err == nil && ack[0] == 0x20 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no CONNACK on %s within %s", addr, timeout)
		}
		select { // try again soon, unless it exits
		case <-exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// dialSession connects anonymously as id with protocol version (4 or 5).
// clean false asks for a session that outlives the connection: clean
// session 0 in MQTT 3.1.1, clean start 0 and a session expiry of five
// minutes in MQTT 5.
func dialSession(t *testing.T, addr string, version byte, id string, clean bool) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	var flags byte
	if clean {
		flags = 0x02
	}
	body := append(mqttString("MQTT"), version, flags, 0, 60)
	if version == 5 {
		if clean {
			body = append(body, 0)
		} else {
			body = append(body, 5, 0x11, 0, 0, 0x01, 0x2c) // session expiry interval 300 s
		}
	}
	rc.send(0x10, append(body, mqttString(id)...))
	h, ack, ok := rc.read()
	if !ok || h != 0x20 || len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("%s: CONNACK % x % x (%v)", id, h, ack, ok)
	}
	return rc
}

// subscribe subscribes to filter at QoS 1 and checks the SUBACK grants it.
func (rc *rawClient) subscribe(version byte, filter string) {
	rc.t.Helper()
	body := []byte{0, 1}
	if version == 5 {
		body = append(body, 0)
	}
	rc.send(0x82, append(append(body, mqttString(filter)...), 1))
	h, ack, ok := rc.read()
	if !ok || h != 0x90 || len(ack) < 3 || ack[len(ack)-1] != 1 {
		rc.t.Fatalf("SUBACK % x % x (%v), want QoS 1 granted", h, ack, ok)
	}
}

// mqttProperty is one MQTT 5 property: its identifier and, for the
// string and string-pair properties the tests look at, its value.
type mqttProperty struct {
	id         byte
	key, value string
}

// pubPacket is a PUBLISH as received.
type pubPacket struct {
	dup, retain bool
	qos         byte
	topic       string
	id          uint16
	props       []mqttProperty
	payload     string
}

// parsePublish decodes a PUBLISH whose first byte is h.
func parsePublish(version, h byte, body []byte) (pubPacket, error) {
	p := pubPacket{dup: h&0x08 != 0, qos: h >> 1 & 3, retain: h&0x01 != 0}
	if h>>4 != 3 {
		return p, fmt.Errorf("packet type %d, want PUBLISH", h>>4)
	}
	topic, rest, err := cutString(body)
	if err != nil {
		return p, err
	}
	p.topic = topic
	if p.qos > 0 {
		if len(rest) < 2 {
			return p, errors.New("no packet identifier")
		}
		p.id, rest = uint16(rest[0])<<8|uint16(rest[1]), rest[2:]
	}
	if version == 5 {
		if p.props, rest, err = cutProperties(rest); err != nil {
			return p, err
		}
	}
	p.payload = string(rest)
	return p, nil
}

// cutString splits a length-prefixed UTF-8 string off b.
func cutString(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errors.New("truncated string")
	}
	n := int(b[0])<<8 | int(b[1])
	if len(b) < 2+n {
		return "", nil, errors.New("truncated string")
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

// cutProperties splits the MQTT 5 properties off b. It knows the
// properties a PUBLISH or PUBACK may carry.
func cutProperties(b []byte) ([]mqttProperty, []byte, error) {
	n, mul, i := 0, 1, 0
	for ; ; i++ {
		if i >= len(b) || i == 4 {
			return nil, nil, errors.New("bad property length")
		}
		n += int(b[i]&0x7f) * mul
		mul *= 128
		if b[i]&0x80 == 0 {
			break
		}
	}
	b = b[i+1:]
	if n > len(b) {
		return nil, nil, errors.New("truncated properties")
	}
	props, rest := b[:n], b[n:]
	var out []mqttProperty
	for len(props) > 0 {
		p := mqttProperty{id: props[0]}
		props = props[1:]
		var err error
		switch p.id {
		case 0x01: // payload format indicator
			if len(props) < 1 {
				return nil, nil, errors.New("truncated property")
			}
			props = props[1:]
		case 0x02: // message expiry interval
			if len(props) < 4 {
				return nil, nil, errors.New("truncated property")
			}
			props = props[4:]
		case 0x03, 0x08, 0x09, 0x1f: // content type, response topic, correlation data, reason string
			p.value, props, err = cutString(props)
		case 0x0b: // subscription identifier, a variable byte integer
			for len(props) > 0 && props[0]&0x80 != 0 {
				props = props[1:]
			}
			if len(props) == 0 {
				return nil, nil, errors.New("truncated property")
			}
			props = props[1:]
		case 0x23: // topic alias
			if len(props) < 2 {
				return nil, nil, errors.New("truncated property")
			}
			props = props[2:]
		case 0x26: // user property
			if p.key, props, err = cutString(props); err == nil {
				p.value, props, err = cutString(props)
			}
		default:
			return nil, nil, fmt.Errorf("unexpected property 0x%02x", p.id)
		}
		if err != nil {
			return nil, nil, err
		}
		out = append(out, p)
	}
	return out, rest, nil
}

// userProperties lists the user properties among props as key=value.
func userProperties(props []mqttProperty) []string {
	var out []string
	for _, p := range props {
		if p.id == 0x26 {
			out = append(out, p.key+"="+p.value)
		}
	}
	return out
}

// publishQoS1 sends a QoS 1 PUBLISH with packet identifier id and, in
// MQTT 5, the properties props (already encoded).
func (rc *rawClient) publishQoS1(version byte, topic string, id uint16, props []byte, payload string) {
	rc.t.Helper()
	body := append(mqttString(topic), byte(id>>8), byte(id))
	if version == 5 {
		body = append(append(body, varint(len(props))...), props...)
	}
	rc.send(0x32, append(body, payload...))
}

// readPublish reads the next packet and fails the test unless it is a
// PUBLISH.
func (rc *rawClient) readPublish(version byte, what string) pubPacket {
	rc.t.Helper()
	h, body, ok := rc.read()
	if !ok {
		rc.t.Fatalf("%s: no packet within 5 s", what)
	}
	p, err := parsePublish(version, h, body)
	if err != nil {
		rc.t.Fatalf("%s: %v (packet %02x % x)", what, err, h, body)
	}
	return p
}

// readPuback reads the next packet and fails the test unless it is the
// PUBACK of packet identifier id; it returns the reason code (0x00 when
// omitted) and, in MQTT 5, the properties.
func (rc *rawClient) readPuback(version byte, id uint16) (reason byte, props []mqttProperty) {
	rc.t.Helper()
	h, body, ok := rc.read()
	if !ok || h != 0x40 || len(body) < 2 || uint16(body[0])<<8|uint16(body[1]) != id {
		rc.t.Fatalf("got % x % x (%v), want the PUBACK of packet %d", h, body, ok, id)
	}
	if version != 5 || len(body) == 2 { // [MQTT-3.4.2-1]: remaining length 2 means Success, no properties
		return 0, nil
	}
	reason = body[2]
	if len(body) > 3 {
		var rest []byte
		var err error
		if props, rest, err = cutProperties(body[3:]); err != nil || len(rest) > 0 {
			rc.t.Fatalf("PUBACK % x: properties: %v, %d bytes after them", body, err, len(rest))
		}
	}
	return reason, props
}

// TestRedeliveryDespiteReusedPacketID: a client that has not yet
// acknowledged a delivery (packet identifier X) publishes a message of its
// own with the same identifier X and leaves; when it comes back to its
// session, the delivery is sent again (DUP set, same identifier, same
// message). Packet identifiers are per direction (MQTT 5 §2.2.1, MQTT
// 3.1.1 §2.3.1), so the client's PUBLISH X says nothing about the
// broker's PUBLISH X [MQTT-4.4.0-1]. Mosquitto is the reference; mochi as
// released deleted the delivery.
func TestRedeliveryDespiteReusedPacketID(t *testing.T) {
	t.Parallel()
	for _, b := range brokersUnderTest {
		for _, tc := range []struct {
			name       string
			version    byte
			disconnect bool // send DISCONNECT before closing the socket
		}{
			{"mqtt311/close", 4, false},
			{"mqtt311/disconnect", 4, true},
			{"mqtt5/close", 5, false},
			{"mqtt5/disconnect", 5, true},
		} {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				addr := b.start(t)
				a := dialSession(t, addr, tc.version, "a", false)
				a.subscribe(tc.version, "t/x")

				pub := dialSession(t, addr, tc.version, "pub", true)
				pub.publishQoS1(tc.version, "t/x", 1, nil, "reading-1")
				pub.readPuback(tc.version, 1)

				got := a.readPublish(tc.version, "delivery")
				if got.topic != "t/x" || got.payload != "reading-1" || got.qos != 1 || got.dup {
					t.Fatalf("delivery %+v, want t/x reading-1 at QoS 1 without DUP", got)
				}
				x := got.id
				// Not acknowledged; the client's own QoS 1 PUBLISH with the
				// identifier the broker is using, acknowledged on its own.
				a.publishQoS1(tc.version, "t/y", x, nil, "own")
				a.readPuback(tc.version, x)

				if tc.disconnect {
					if tc.version == 5 {
						a.send(0xe0, []byte{0, 0}) // normal disconnection, no properties
					} else {
						a.send(0xe0, nil)
					}
				}
				a.c.Close()

				// The broker may still be ending the old connection: the
				// new one takes its session over either way.
				again := dialSession(t, addr, tc.version, "a", false)
				re := again.readPublish(tc.version, "redelivery after reconnecting")
				want := pubPacket{dup: true, qos: 1, topic: "t/x", id: x, payload: "reading-1"}
				if re.dup != want.dup || re.qos != want.qos || re.topic != want.topic || re.id != want.id || re.payload != want.payload {
					t.Errorf("redelivered %+v, want %+v", re, want)
				}
			})
		}
	}
}

// TestPubackIsSuccessWithoutEcho: the PUBACK of an MQTT 5 client's QoS 1
// PUBLISH says Success — reason code 0x00, or none at all — and carries
// no user property of the PUBLISH back to its sender; the subscriber gets
// the user property unchanged [MQTT-3.3.2-17]. Mosquitto is the
// reference; mochi as released answered 0x01 ("granted QoS 1", a SUBACK
// code) and echoed the user properties.
func TestPubackIsSuccessWithoutEcho(t *testing.T) {
	t.Parallel()
	for _, b := range brokersUnderTest {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			addr := b.start(t)
			sub := dialSession(t, addr, 5, "sub", true)
			sub.subscribe(5, "t/p")

			dev := dialSession(t, addr, 5, "dev", true)
			userProp := append(append([]byte{0x26}, mqttString("unit")...), mqttString("celsius")...)
			dev.publishQoS1(5, "t/p", 9, userProp, "21.5")
			reason, props := dev.readPuback(5, 9)
			if reason != 0x00 {
				t.Errorf("PUBACK reason code 0x%02x, want 0x00 (Success)", reason)
			}
			if up := userProperties(props); len(up) > 0 {
				t.Errorf("PUBACK carries user properties %q, want none", up)
			}

			got := sub.readPublish(5, "delivery")
			if up := userProperties(got.props); got.payload != "21.5" || len(up) != 1 || up[0] != "unit=celsius" {
				t.Errorf("subscriber got %q with user properties %q, want 21.5 with [unit=celsius]", got.payload, up)
			}
		})
	}
}
