package broker

import (
	"bytes"
	"net"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// accessHook authenticates clients against a users file and checks every
// publish and subscription against the user's role. With no users it
// admits only clients connecting from a loopback address, which is what
// the zero-configuration default is safe for.
type accessHook struct {
	mqtt.HookBase
	prefix string
	users  atomic.Pointer[Users] // nil: loopback-only, no authentication
}

func (h *accessHook) ID() string { return "apd-access" }

func (h *accessHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OnConnectAuthenticate admits a client whose user name and password match
// the users file, or, without one, any loopback client.
func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	us := h.users.Load()
	if us == nil {
		return isLoopback(cl.Net.Remote)
	}
	u, ok := us.Lookup(string(pk.Connect.Username))
	return ok && u.CheckPassword(pk.Connect.Password)
}

// OnACLCheck allows what the client's role allows (see Role); topic is a
// topic for publishes and a filter for subscriptions.
func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	us := h.users.Load()
	if us == nil {
		return true
	}
	u, ok := us.Lookup(string(cl.Properties.Username))
	if !ok {
		return false
	}
	return Allowed(h.prefix, u, topic, write)
}

// Allowed reports whether user u may publish (write) to topic, or subscribe
// to the filter topic, under the apd prefix.
func Allowed(prefix string, u User, topic string, write bool) bool {
	under := prefix + "/"
	switch u.Role {
	case RoleAdmin:
		return true
	case RoleDevice:
		own := under + u.Host + "/"
		if write {
			return strings.HasPrefix(topic, own) && !strings.ContainsAny(topic, "+#") && topic != own+"$ack"
		}
		return topic == own+"$ack"
	case RoleReader:
		return !write && strings.HasPrefix(topic, under)
	case RoleAggregator:
		if !write {
			return strings.HasPrefix(topic, under)
		}
		rest, ok := strings.CutPrefix(topic, under)
		host, last, ok2 := strings.Cut(rest, "/")
		return ok && ok2 && host != "" && last == "$ack" && !strings.ContainsAny(topic, "+#")
	}
	return false
}
