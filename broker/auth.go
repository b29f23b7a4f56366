package broker

import (
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/schema"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// accessHook authenticates clients against a users file and checks every
// publish and subscription against the user's role. With no users it
// admits only clients connecting from a loopback address, which is what
// the zero-configuration default is safe for.
type accessHook struct {
	mqtt.HookBase
	prefix    string
	discovery string                // Home Assistant discovery prefix
	users     atomic.Pointer[Users] // nil: loopback-only, no authentication

	mu       sync.Mutex
	connects map[string]*connWindow // by remote IP
}

type connWindow struct {
	start time.Time
	n     int
}

// Limits every client is held to, whatever its role.
const (
	// MaxTopicLen and MaxTopicDepth bound topics and filters: apd's own
	// are three short levels; longer ones only cost the broker memory.
	MaxTopicLen   = 256
	MaxTopicDepth = 8
	// MaxConnects is how many connection attempts one remote (non-loopback)
	// address may make per ConnectWindow; beyond it they are refused.
	MaxConnects   = 30
	ConnectWindow = 10 * time.Second
)

// connectAllowed counts a connection attempt from remote and reports
// whether it is within the rate limit. Loopback clients are not limited:
// they are this machine's own processes.
func (h *accessHook) connectAllowed(remote string, now time.Time) bool {
	if isLoopback(remote) {
		return true
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.connects == nil || len(h.connects) > 10000 {
		h.connects = map[string]*connWindow{}
	}
	w := h.connects[host]
	if w == nil || now.Sub(w.start) > ConnectWindow {
		w = &connWindow{start: now}
		h.connects[host] = w
	}
	w.n++
	return w.n <= MaxConnects
}

// topicWithinLimits reports whether a topic or filter is short and shallow
// enough.
func topicWithinLimits(topic string) bool {
	return len(topic) <= MaxTopicLen && strings.Count(topic, "/") < MaxTopicDepth
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
//
// A client presenting a certificate verified against the TLS listener's
// client CA is the user named by the certificate's common name, without a
// password. More than MaxConnects attempts per ConnectWindow from one
// address are refused, so password guessing and reconnect storms are slow.
func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if !h.connectAllowed(cl.Net.Remote, time.Now()) {
		return false
	}
	us := h.users.Load()
	if us == nil {
		return isLoopback(cl.Net.Remote)
	}
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		if chains := tc.ConnectionState().VerifiedChains; len(chains) > 0 && len(chains[0]) > 0 {
			cn := chains[0][0].Subject.CommonName
			if _, ok := us.Lookup(cn); ok {
				cl.Properties.Username = []byte(cn)
				return true
			}
			return false
		}
	}
	u, ok := us.Lookup(string(pk.Connect.Username))
	return ok && u.CheckPassword(pk.Connect.Password)
}

// OnACLCheck allows what the client's role allows (see Role); topic is a
// topic for publishes and a filter for subscriptions.
func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !topicWithinLimits(topic) {
		return false
	}
	us := h.users.Load()
	if us == nil {
		return true
	}
	u, ok := us.Lookup(string(cl.Properties.Username))
	if !ok {
		return false
	}
	return Allowed(h.prefix, u, topic, write) || DiscoveryAllowed(h.discovery, u, topic, write)
}

// DiscoveryAllowed reports whether a device user may publish (write) or
// subscribe to topic for Home Assistant discovery under prefix: publish
// and read back its own hosts's sensor configs, and hear Home Assistant's
// status (to announce again when it restarts).
func DiscoveryAllowed(prefix string, u User, topic string, write bool) bool {
	if u.Role != RoleDevice || prefix == "" {
		return false
	}
	own := prefix + "/sensor/" + schema.DiscoveryID(u.Host) + "/"
	if write {
		rest, ok := strings.CutPrefix(topic, own)
		sensor, last, ok2 := strings.Cut(rest, "/")
		return ok && ok2 && sensor != "" && last == "config" && !strings.ContainsAny(topic, "+#")
	}
	return topic == prefix+"/status" || topic == own+"+/config"
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
