package broker

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
)

func TestSysTopicsAndRetained(t *testing.T) {
	b, err := Start(Options{Addr: "127.0.0.1:0", SysInterval: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !strings.HasPrefix(b.Addr(), "127.0.0.1:") || strings.HasSuffix(b.Addr(), ":0") {
		t.Fatalf("Addr = %s", b.Addr())
	}
	if err := b.Publish("apd/h/$ack", []byte(`{"seq":3}`), true); err != nil {
		t.Fatal(err)
	}
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + b.Addr(), ClientID: "t", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan string, 10)
	for _, f := range []string{"$SYS/broker/version", "apd/h/$ack"} {
		if err := c.Subscribe(f, func(topic string, p []byte) { got <- topic + " " + string(p) }); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for !seen["sys"] || !seen["ack"] {
		select {
		case m := <-got:
			if strings.HasPrefix(m, "$SYS/broker/version ") {
				seen["sys"] = true
			}
			if m == `apd/h/$ack {"seq":3}` {
				seen["ack"] = true
			}
		case <-timeout:
			t.Fatalf("saw %v", seen)
		}
	}
	if !b.WaitGone("nobody", 0) {
		t.Error("WaitGone of an unknown client = false")
	}
	c.Close()
	if !b.WaitGone("t", 2*time.Second) {
		t.Error("client still connected after Close")
	}
}

func TestStartAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Start(Options{Addr: l.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v", err)
	}
}
