package ip_addresses

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
)

func ipnet(s string) net.Addr {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

func TestAddresses(t *testing.T) {
	got := Addresses([]net.Addr{
		ipnet("127.0.0.1/8"), ipnet("192.168.1.246/24"), ipnet("::1/128"),
		ipnet("fe80::1/64"), ipnet("192.168.1.246/24"), &net.IPAddr{IP: net.ParseIP("10.0.0.2")},
	})
	want := []string{"192.168.1.246", "fe80::1", "10.0.0.2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestReadError(t *testing.T) {
	s := Sensor{Addrs: func() ([]net.Addr, error) { return nil, errors.New("boom") }}
	if _, err := s.Read(context.Background()); err == nil {
		t.Error("error not reported")
	}
}
