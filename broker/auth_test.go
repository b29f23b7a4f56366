package broker

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
)

func TestAllowed(t *testing.T) {
	t.Parallel()
	dev := User{Name: "d", Role: RoleDevice, Host: "pi"}
	rd := User{Name: "r", Role: RoleReader}
	ag := User{Name: "a", Role: RoleAggregator}
	ad := User{Name: "x", Role: RoleAdmin}
	tests := []struct {
		u     User
		topic string
		write bool
		want  bool
	}{
		{dev, "apd/pi/temperature", true, true},
		{dev, "apd/pi/$status", true, true},
		{dev, "apd/other/temperature", true, false},
		{dev, "apd/pi/$ack", true, false},
		{dev, "apd/pi", true, false},
		{dev, "apd/pix/temperature", true, false},
		{dev, "apd/pi/$ack", false, true},
		{dev, "apd/pi/#", false, false},
		{dev, "apd/#", false, false},
		{rd, "apd/#", false, true},
		{rd, "apd/pi/temperature", true, false},
		{rd, "#", false, false},
		{ag, "apd/#", false, true},
		{ag, "apd/pi/$ack", true, true},
		{ag, "apd/pi/temperature", true, false},
		{ag, "apd/+/$ack", true, false},
		{ad, "anything/at/all", true, true},
	}
	for _, tc := range tests {
		if got := Allowed("apd", tc.u, tc.topic, tc.write); got != tc.want {
			t.Errorf("%s %s write=%v: %v, want %v", tc.u.Role, tc.topic, tc.write, got, tc.want)
		}
	}
}

func TestUsersFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users")
	us := NewUsers()
	if err := us.Set("pi", RoleDevice, "pi", []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	if err := us.Set("bad", RoleDevice, "", []byte("x")); err == nil {
		t.Error("device without host accepted")
	}
	if err := us.Set("r", "boss", "", []byte("x")); err == nil {
		t.Error("unknown role accepted")
	}
	for _, name := range []string{"bad\x01name", "tab\tname", "new\nline", "esc\x1b[2J", "bad\xffutf8", ""} {
		if err := us.Set(name, RoleReader, "", []byte("x")); err == nil {
			t.Errorf("user name %q accepted", name)
		}
	}
	if err := us.Set("d2", RoleDevice, "pi/other", []byte("x")); err == nil {
		t.Error("device host with a slash accepted")
	}
	if err := us.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := back.Lookup("pi")
	if !ok || !u.CheckPassword([]byte("s3cret")) || u.CheckPassword([]byte("wrong")) || u.Host != "pi" {
		t.Errorf("round trip: %+v", u)
	}
	if err := back.Remove("nobody"); !errors.Is(err, ErrNoSuchUser) {
		t.Errorf("remove unknown: %v", err)
	}
}

// TestAuthAndACL runs the broker with a users file and real clients.
func TestAuthAndACL(t *testing.T) {
	t.Parallel()
	us := NewUsers()
	for _, u := range []struct {
		name string
		role Role
		host string
	}{{"pi", RoleDevice, "pi"}, {"reader", RoleReader, ""}, {"agg", RoleAggregator, ""}} {
		if err := us.Set(u.name, u.role, u.host, []byte(u.name+"-pw")); err != nil {
			t.Fatal(err)
		}
	}
	b, err := Start(Options{Addr: "127.0.0.1:0", Users: us, LoginWait: loginTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addr := b.Addr()
	dial := func(user, password string) (*mqttc.Client, error) {
		return mqttc.Dial(mqttc.Options{URL: "tcp://" + addr, ClientID: "c-" + user + password, Username: user, Password: password, QoS: 1, ConnectTimeout: loginTimeout})
	}
	if _, err := dial("", ""); err == nil {
		t.Error("anonymous client admitted")
	}
	if _, err := dial("pi", "wrong"); err == nil {
		t.Error("wrong password admitted")
	}
	reader, err := dial("reader", "reader-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	got := make(chan string, 10)
	if err := reader.Subscribe("apd/#", func(topic string, _ []byte) { got <- topic }); err != nil {
		t.Fatal(err)
	}
	dev, err := dial("pi", "pi-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ctx := context.Background()
	if err := dev.Publish(ctx, "apd/pi/temperature", []byte("21.5"), false); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-got:
		if topic != "apd/pi/temperature" {
			t.Fatalf("reader got %s", topic)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the device's own reading did not arrive")
	}
	// Speaking for another host: refused (MQTT 3.1.1 has no negative
	// PUBACK, so the broker disconnects the device), nothing delivered.
	// The wait below is what is tested: that nothing comes.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	_ = dev.Publish(pctx, "apd/other/temperature", []byte("99"), false)
	cancel()
	select {
	case topic := <-got:
		t.Fatalf("forged reading delivered on %s", topic)
	case <-time.After(500 * time.Millisecond):
	}
	agg, err := dial("agg", "agg-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()
	if err := agg.Publish(ctx, "apd/pi/$ack", []byte(`{"seq":1}`), true); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-got:
		if topic != "apd/pi/$ack" {
			t.Fatalf("reader got %s", topic)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the aggregator's ack did not arrive")
	}
	// Reload: a removed user can no longer connect.
	us2 := NewUsers()
	_ = us2.Set("reader", RoleReader, "", []byte("reader-pw"))
	b.SetUsers(us2)
	if _, err := dial("agg", "agg-pw"); err == nil {
		t.Error("removed user admitted after reload")
	}
}

func TestNonLoopbackNeedsUsers(t *testing.T) {
	t.Parallel()
	if _, err := Start(Options{Addr: "0.0.0.0:0"}); !errors.Is(err, ErrInsecure) {
		t.Fatalf("err = %v", err)
	}
}

// TestTLSAndWebSocket: a reader over TLS (trusting the test CA) and a
// client over WebSocket exchange messages through the same broker.
func TestTLSAndWebSocket(t *testing.T) {
	t.Parallel()
	ca, cert, key := testutil.TLSFiles(t, t.TempDir())
	tc, err := LoadTLS(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(Options{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLSConfig: tc, WSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tlsAddr, wsAddr := b.TLSAddr(), b.WSAddr()
	if _, err := mqttc.Dial(mqttc.Options{URL: "ssl://" + tlsAddr, ClientID: "untrusting", ConnectTimeout: 2 * time.Second}); err == nil {
		t.Error("TLS without trusting the CA succeeded")
	}
	reader, err := mqttc.Dial(mqttc.Options{URL: "ssl://" + tlsAddr, ClientID: "tls-reader", TLSCA: ca, QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	got := make(chan string, 1)
	if err := reader.Subscribe("apd/#", func(topic string, _ []byte) { got <- topic }); err != nil {
		t.Fatal(err)
	}
	// The WebSocket listener shares the TLS config: wss://.
	ws, err := mqttc.Dial(mqttc.Options{URL: "wss://" + wsAddr, ClientID: "browser", TLSCA: ca, QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.Publish(context.Background(), "apd/web/x", []byte("1"), false); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-got:
		if topic != "apd/web/x" {
			t.Errorf("got %s", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing arrived over TLS")
	}
}

// TestClientCertificate: a device presenting a certificate signed by the
// client CA is the user its common name says, without a password.
func TestClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, cert, key := testutil.TLSFiles(t, dir)
	clientCA, devCert, devKey := testutil.ClientCert(t, dir, "pi")
	tc, err := LoadTLS(cert, key, clientCA)
	if err != nil {
		t.Fatal(err)
	}
	us := NewUsers()
	_ = us.Set("pi", RoleDevice, "pi", []byte("unused-password"))
	b, err := Start(Options{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLSConfig: tc, Users: us})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tlsAddr := b.TLSAddr()
	c, err := mqttc.Dial(mqttc.Options{URL: "ssl://" + tlsAddr, ClientID: "pi", TLSCA: ca, TLSCert: devCert, TLSKey: devKey, QoS: 1})
	if err != nil {
		t.Fatalf("certificate login: %v", err)
	}
	defer c.Close()
	if err := c.Publish(context.Background(), "apd/pi/t", []byte("1"), false); err != nil {
		t.Errorf("own topic: %v", err)
	}
	if _, err := mqttc.Dial(mqttc.Options{URL: "ssl://" + tlsAddr, ClientID: "anon", TLSCA: ca, QoS: 1, ConnectTimeout: time.Second}); err == nil {
		t.Error("TLS without certificate or password admitted")
	}
}

func TestTopicAndConnectLimits(t *testing.T) {
	t.Parallel()
	if topicWithinLimits(strings.Repeat("a/", 8) + "b") {
		t.Error("9 levels accepted")
	}
	if topicWithinLimits("apd/h/" + strings.Repeat("x", 300)) {
		t.Error("long topic accepted")
	}
	if !topicWithinLimits("apd/pi-kitchen/temperature") {
		t.Error("ordinary topic refused")
	}
	h := &accessHook{}
	now := time.Now()
	for i := 0; i < MaxConnects; i++ {
		if !h.connectAllowed("192.0.2.1:1000", now) {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if h.connectAllowed("192.0.2.1:2000", now) {
		t.Error("attempt over the limit admitted")
	}
	if !h.connectAllowed("192.0.2.2:1000", now) {
		t.Error("another address refused")
	}
	if !h.connectAllowed("192.0.2.1:3000", now.Add(ConnectWindow+time.Second)) {
		t.Error("refused after the window")
	}
	for i := 0; i < 2*MaxConnects; i++ {
		if !h.connectAllowed("127.0.0.1:1000", now) {
			t.Fatal("loopback client rate-limited")
		}
	}
}

func TestDiscoveryAllowed(t *testing.T) {
	t.Parallel()
	dev := User{Name: "d", Role: RoleDevice, Host: "pi.kitchen"}
	rd := User{Name: "r", Role: RoleReader}
	tests := []struct {
		u     User
		topic string
		write bool
		want  bool
	}{
		{dev, "homeassistant/sensor/pi_kitchen/temperature/config", true, true},
		{dev, "homeassistant/sensor/pi_kitchen/+/config", false, true},
		{dev, "homeassistant/status", false, true},
		{dev, "homeassistant/binary_sensor/pi_kitchen/ac_connected/config", true, true},
		{dev, "homeassistant/binary_sensor/pi_kitchen/+/config", false, true},
		{dev, "homeassistant/binary_sensor/other/ac_connected/config", true, false},
		{dev, "homeassistant/switch/pi_kitchen/relay/config", true, false},
		{dev, "homeassistant/+/pi_kitchen/+/config", false, false},
		{dev, "homeassistant/sensor/other/temperature/config", true, false},
		{dev, "homeassistant/sensor/pi_kitchen/temperature/state", true, false},
		{dev, "homeassistant/sensor/pi_kitchen/+/config", true, false},
		{dev, "homeassistant/sensor/pi_kitchen/temperature/config/x", true, false},
		{dev, "homeassistant/#", false, false},
		{dev, "homeassistant/status", true, false},
		{rd, "homeassistant/status", false, false},
	}
	for _, tc := range tests {
		if got := DiscoveryAllowed("homeassistant", tc.u, tc.topic, tc.write); got != tc.want {
			t.Errorf("%s %s write=%v: %v, want %v", tc.u.Role, tc.topic, tc.write, got, tc.want)
		}
	}
}
