// Package ip_addresses provides the ip_addresses sensor: the machine's
// non-loopback addresses, de-duplicated, in the order the interfaces list
// them.
package ip_addresses

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func init() {
	publisher.Register("ip_addresses", New)
	schema.RegisterFormat("ip_addresses", schema.FormatIPAddresses)
}

// Sensor reports IP addresses. Addrs lists the interface addresses; tests
// replace it.
type Sensor struct {
	Addrs func() ([]net.Addr, error)
}

// New returns the sensor reading the system's interfaces.
func New(publisher.Env) (publisher.Sensor, error) { return Sensor{Addrs: net.InterfaceAddrs}, nil }

// Title implements publisher.Sensor.
func (Sensor) Title() string { return "IP Addresses" }

// Read implements publisher.Sensor.
func (s Sensor) Read(context.Context) (any, error) {
	addrs, err := s.Addrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	return Addresses(addrs), nil
}

// Addresses returns the unique non-loopback addresses of addrs in
// first-seen order, as strings.
func Addresses(addrs []net.Addr) []string {
	seen := map[netip.Addr]bool{}
	out := []string{}
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		default:
			continue
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		if addr.IsLoopback() || seen[addr] {
			continue
		}
		seen[addr] = true
		out = append(out, addr.String())
	}
	return out
}
