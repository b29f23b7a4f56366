package broker

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// rawClient speaks just enough MQTT for the tests that client libraries
// will not send: MQTT 5 topic aliases, publishes to $SYS.
type rawClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func varint(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func (rc *rawClient) send(header byte, body []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(append(append([]byte{header}, varint(len(body))...), body...)); err != nil {
		rc.t.Fatal(err)
	}
}

// loginTimeout bounds a login in these tests. Generous: under the race
// detector, on a busy machine, one bcrypt check has taken seconds.
const loginTimeout = 30 * time.Second

// read returns the next packet's first byte and body, or ok false when
// the broker closed the connection (or sent nothing) within 5 s.
func (rc *rawClient) read() (header byte, body []byte, ok bool) {
	return rc.readWithin(5 * time.Second)
}

// readWithin is read waiting up to d.
func (rc *rawClient) readWithin(d time.Duration) (header byte, body []byte, ok bool) {
	_ = rc.c.SetReadDeadline(time.Now().Add(d))
	h, err := rc.r.ReadByte()
	if err != nil {
		return 0, nil, false
	}
	n, mul := 0, 1
	for {
		d, err := rc.r.ReadByte()
		if err != nil {
			return 0, nil, false
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return 0, nil, false
	}
	return h, body, true
}

// dialRawMQTT connects with protocol version (4 or 5) as user and checks
// the CONNACK.
func dialRawMQTT(t *testing.T, addr string, version byte, id, user, password string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	body := append(mqttString("MQTT"), version, 0x80|0x40|0x02, 0, 60)
	if version == 5 {
		body = append(body, 0) // no properties
	}
	body = append(append(append(body, mqttString(id)...), mqttString(user)...), mqttString(password)...)
	rc.send(0x10, body)
	h, ack, ok := rc.readWithin(loginTimeout)
	rcIndex := 1
	if !ok || h != 0x20 || len(ack) <= rcIndex || ack[rcIndex] != 0 {
		t.Fatalf("CONNACK % x % x (%v)", h, ack, ok)
	}
	return rc
}

// publish sends a QoS 1 PUBLISH with packet id 1..; alias 0 sends none.
func (rc *rawClient) publish(version byte, topic string, alias uint16, id uint16, payload string) {
	body := append(mqttString(topic), byte(id>>8), byte(id))
	if version == 5 {
		if alias > 0 {
			body = append(body, 3, 0x23, byte(alias>>8), byte(alias))
		} else {
			body = append(body, 0)
		}
	}
	rc.send(0x32, append(body, payload...))
}

// users3 has a device pi, an aggregator agg and an admin root, each
// with the password <name>-pw.
func users3(t *testing.T) *Users {
	t.Helper()
	us := NewUsers()
	for _, u := range [][3]string{{"pi", string(RoleDevice), "pi"}, {"agg", string(RoleAggregator), ""}, {"root", string(RoleAdmin), ""}} {
		if err := us.Set(u[0], Role(u[1]), u[2], []byte(u[0]+"-pw")); err != nil {
			t.Fatal(err)
		}
	}
	return us
}

// TestTopicAliasReuse: a device using an MQTT 5 topic alias for its own
// topic has the second, topic-less publish accepted and delivered; an
// alias does not carry it onto another host's topic.
func TestTopicAliasReuse(t *testing.T) {
	t.Parallel()
	b, err := Start(Options{Addr: "127.0.0.1:0", Users: users3(t), LoginWait: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan string, 10)
	sub, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "agg", Username: "agg", Password: "agg-pw", QoS: 1, ConnectTimeout: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Subscribe("apd/#", func(topic string, p []byte) { got <- topic + " " + string(p) }); err != nil {
		t.Fatal(err)
	}
	dev := dialRawMQTT(t, b.Addr(), 5, "pi", "pi", "pi-pw")
	dev.publish(5, "apd/pi/temperature", 1, 1, "21")
	dev.publish(5, "", 1, 2, "22") // the alias alone
	for i, want := range []string{"apd/pi/temperature 21", "apd/pi/temperature 22"} {
		h, ack, ok := dev.read()
		if !ok || h != 0x40 || len(ack) > 2 && ack[2] != 0 {
			t.Fatalf("PUBACK %d: % x % x (%v)", i+1, h, ack, ok)
		}
		select {
		case m := <-got:
			if m != want {
				t.Errorf("delivered %q, want %q", m, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("publish %d not delivered", i+1)
		}
	}
}

// TestPublishToSysAnswered: a QoS 1 publish to $SYS is answered — with a
// PUBACK saying "topic name invalid" in MQTT 5, by closing the connection
// in MQTT 3.1.1, which has no negative PUBACK — instead of leaving the
// client waiting forever.
func TestPublishToSysAnswered(t *testing.T) {
	t.Parallel()
	b, err := Start(Options{Addr: "127.0.0.1:0", Users: users3(t), LoginWait: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v5 := dialRawMQTT(t, b.Addr(), 5, "root5", "root", "root-pw")
	v5.publish(5, "$SYS/broker/uptime", 0, 7, "forged")
	if h, ack, ok := v5.read(); !ok || h != 0x40 || len(ack) < 3 || ack[2] != 0x90 {
		t.Errorf("MQTT 5: answer % x % x (%v), want PUBACK with reason 0x90", h, ack, ok)
	}
	v3 := dialRawMQTT(t, b.Addr(), 4, "root3", "root", "root-pw")
	v3.publish(4, "$SYS/broker/uptime", 0, 7, "forged")
	// Closed, not silent: a read that ends before its deadline.
	start := time.Now()
	if h, _, ok := v3.readWithin(30 * time.Second); ok {
		t.Errorf("MQTT 3.1.1: answered % x, want the connection closed", h)
	} else if waited := time.Since(start); waited >= 30*time.Second {
		t.Errorf("MQTT 3.1.1: no answer for %s, want the connection closed", waited)
	}
}

// TestAggregatorSharedSubscription: the aggregator role may subscribe to
// $share/<group>/apd/# (several aggregators sharing the work) and gets
// the readings; a device may not.
func TestAggregatorSharedSubscription(t *testing.T) {
	t.Parallel()
	b, err := Start(Options{Addr: "127.0.0.1:0", Users: users3(t), LoginWait: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	agg, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "agg", Username: "agg", Password: "agg-pw", QoS: 1, ConnectTimeout: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	got := make(chan string, 1)
	if err := agg.Subscribe("$share/apd/apd/#", func(topic string, _ []byte) { got <- topic }); err != nil {
		t.Fatal(err)
	}
	dev, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "pi", Username: "pi", Password: "pi-pw", QoS: 1, ConnectTimeout: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.Publish(context.Background(), "apd/pi/temperature", []byte("21"), false); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-got:
		if topic != "apd/pi/temperature" {
			t.Errorf("got %s", topic)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("nothing through the shared subscription")
	}
	if Allowed("apd", User{Role: RoleDevice, Host: "pi"}, stripShare("$share/g/apd/#"), false) {
		t.Error("a device may read everything through a shared subscription")
	}
}

// TestClientCertificateOverWSS: a client certificate logs in over
// WebSocket with TLS as it does over TLS.
func TestClientCertificateOverWSS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, cert, key := testutil.TLSFiles(t, dir)
	clientCA, devCert, devKey := testutil.ClientCert(t, dir, "pi")
	tc, err := LoadTLS(cert, key, clientCA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(Options{Addr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", TLSConfig: tc, Users: users3(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := mqttc.Dial(mqttc.Options{URL: "wss://" + b.WSAddr(), ClientID: "pi", TLSCA: ca, TLSCert: devCert, TLSKey: devKey, QoS: 1})
	if err != nil {
		t.Fatalf("certificate login over WSS: %v", err)
	}
	defer c.Close()
	if err := c.Publish(context.Background(), "apd/pi/t", []byte("1"), false); err != nil {
		t.Errorf("own topic over WSS: %v", err)
	}
}
