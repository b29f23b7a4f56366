package broker

import (
	"bytes"
	"crypto/tls"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/schema"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// accessHook decides who may connect and what each client may publish and
// subscribe to. With a users file every client logs in and is held to its
// role; without one it admits only clients connecting from a loopback
// address (any address with insecure), which is what the
// zero-configuration default is safe for.
//
// Everything about a CONNECT is decided in OnConnect, where a refusal can
// still carry its own reason code: the credentials, the last will (checked
// like a publish by the same user, because mochi publishes wills without
// asking OnACLCheck) and the client id (a session belongs to the user that
// made it). OnConnectAuthenticate then only reports the outcome.
type accessHook struct {
	mqtt.HookBase
	srv       *mqtt.Server
	prefix    string
	discovery string                // Home Assistant discovery prefix
	insecure  bool                  // without users, admit any address
	users     atomic.Pointer[Users] // nil: no authentication
	passwords *passwordCheck
	queues    *queueBudget

	admitted sync.Map // *mqtt.Client → struct{}: passed OnConnect

	claimMu sync.Mutex
	claims  map[string]claim // client id → the user admitted with it, until its session exists

	mu       sync.Mutex
	connects map[string]*connWindow // by remote IP
}

// claim is a client id taken by an admitted CONNECT whose session mochi
// has not made yet: a second user racing for the same id is refused too.
type claim struct {
	user string
	at   time.Time
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

func newAccessHook(srv *mqtt.Server, opts Options, queues *queueBudget) *accessHook {
	h := &accessHook{srv: srv, prefix: opts.Prefix, discovery: opts.DiscoveryPrefix, insecure: opts.Insecure,
		passwords: newPasswordCheck(opts.MaxLogins, opts.LoginWait), queues: queues}
	h.users.Store(opts.Users)
	return h
}

// setUsers replaces the users; passwords verified under the old set are
// forgotten.
func (h *accessHook) setUsers(us *Users) {
	h.users.Store(us)
	h.passwords.forget()
}

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

// publishable reports whether a client may publish to topic at all,
// whatever its role: not empty, no wildcards, and not under a '$' first
// level ($SYS and the like belong to the broker).
func publishable(topic string) bool {
	return topic != "" && topic[0] != '$' && !strings.ContainsAny(topic, "+#\x00") && topicWithinLimits(topic)
}

// stripShare returns the filter of a shared subscription
// ($share/<group>/<filter>), or filter itself.
func stripShare(filter string) string {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return filter
	}
	if _, f, ok := strings.Cut(rest, "/"); ok {
		return f
	}
	return filter
}

func (h *accessHook) ID() string { return "apd-access" }

func (h *accessHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketRead,
		mqtt.OnSessionEstablished}, []byte{b})
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OnConnect admits or refuses a CONNECT, answering a refusal with a
// CONNACK that says why.
func (h *accessHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	code := h.admit(cl, pk)
	if code != packets.CodeSuccess {
		refuse(h.srv, cl, code)
		return code
	}
	h.admitted.Store(cl, struct{}{})
	return nil
}

// OnConnectAuthenticate reports what OnConnect decided.
func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := h.admitted.LoadAndDelete(cl)
	return ok
}

// admit decides a CONNECT.
//
// A client presenting a certificate verified against the TLS listener's
// client CA is the user named by the certificate's common name, without a
// password. More than MaxConnects attempts per ConnectWindow from one
// address are refused, so password guessing and reconnect storms are slow.
func (h *accessHook) admit(cl *mqtt.Client, pk packets.Packet) packets.Code {
	if !h.connectAllowed(cl.Net.Remote, time.Now()) {
		return packets.ErrConnectionRateExceeded
	}
	us := h.users.Load()
	var user *User
	if us == nil {
		if !h.insecure && !isLoopback(cl.Net.Remote) {
			return packets.ErrNotAuthorized
		}
	} else {
		u, code := h.authenticate(us, cl, pk)
		if code != packets.CodeSuccess {
			return code
		}
		user = &u
		// A session belongs to the user that made it: another user
		// reusing its client id would inherit its queue (and acknowledge
		// messages meant for it) and kick it off.
		if !h.claim(cl.ID, u.Name) {
			return packets.ErrClientIdentifierNotValid
		}
		cl.Properties.Username = []byte(u.Name)
	}
	if pk.Connect.WillFlag && !h.mayPublish(user, pk.Connect.WillTopic) {
		return packets.ErrNotAuthorized
	}
	return packets.CodeSuccess
}

// claim reports whether user may use client id: no other user's session
// holds it, and no other user's CONNECT is being admitted with it.
func (h *accessHook) claim(id, user string) bool {
	h.claimMu.Lock()
	defer h.claimMu.Unlock()
	if existing, ok := h.srv.Clients.Get(id); ok && string(existing.Properties.Username) != user {
		return false
	}
	now := time.Now()
	if c, ok := h.claims[id]; ok && c.user != user && now.Sub(c.at) < 30*time.Second {
		return false
	}
	if h.claims == nil || len(h.claims) > 10000 {
		h.claims = map[string]claim{}
	}
	h.claims[id] = claim{user: user, at: now}
	return true
}

// OnSessionEstablished drops the client's claim: its session now holds
// the id.
func (h *accessHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.claimMu.Lock()
	delete(h.claims, cl.ID)
	h.claimMu.Unlock()
}

// authenticate finds the user a CONNECT logs in as.
func (h *accessHook) authenticate(us *Users, cl *mqtt.Client, pk packets.Packet) (User, packets.Code) {
	if cn, ok := certificateName(cl.Net.Conn); ok {
		if u, ok := us.Lookup(cn); ok {
			return u, packets.CodeSuccess
		}
		return User{}, packets.ErrBadUsernameOrPassword
	}
	u, known := us.Lookup(string(pk.Connect.Username))
	switch h.passwords.check(u, known, pk.Connect.Password) {
	case passwordOK:
		return u, packets.CodeSuccess
	case passwordBusy:
		return User{}, packets.ErrServerBusy
	}
	return User{}, packets.ErrBadUsernameOrPassword
}

// mayPublish reports whether user (nil: no users file) may publish to
// topic: the check of every publish, applied to last wills too.
func (h *accessHook) mayPublish(user *User, topic string) bool {
	if !publishable(topic) {
		return false
	}
	if user == nil {
		return true
	}
	return Allowed(h.prefix, *user, topic, true) || DiscoveryAllowed(h.discovery, *user, topic, true)
}

// certificateName returns the common name of the client certificate the
// connection was verified with, over TLS or WebSocket over TLS.
func certificateName(c net.Conn) (string, bool) {
	for range 3 {
		switch v := c.(type) {
		case *tls.Conn:
			chains := v.ConnectionState().VerifiedChains
			if len(chains) > 0 && len(chains[0]) > 0 {
				return chains[0][0].Subject.CommonName, true
			}
			return "", false
		case *guardedConn:
			c = v.Conn
			continue
		}
		// mochi's WebSocket connection embeds the underlying connection
		// in an unexported type: reach it by its field name.
		rv := reflect.ValueOf(c)
		if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
			return "", false
		}
		f := rv.Elem().FieldByName("Conn")
		if !f.IsValid() || !f.CanInterface() {
			return "", false
		}
		inner, ok := f.Interface().(net.Conn)
		if !ok || inner == nil {
			return "", false
		}
		c = inner
	}
	return "", false
}

// refuse answers a refused CONNECT with code, in the client's protocol
// version (MQTT 3.1.1 has only five return codes).
func refuse(srv *mqtt.Server, cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion < 5 {
		switch code {
		case packets.ErrBadUsernameOrPassword:
			code = packets.Code{Code: 0x04} // bad user name or password
		case packets.ErrClientIdentifierNotValid:
			code = packets.Err3ClientIdentifierNotValid
		case packets.ErrServerBusy, packets.ErrConnectionRateExceeded, packets.ErrServerUnavailable:
			code = packets.Err3ServerUnavailable
		default:
			code = packets.Err3NotAuthorized
		}
	}
	_ = srv.SendConnack(cl, code, false, nil)
}

// OnPacketRead resolves MQTT 5 topic aliases before any check sees the
// publish (mochi checks the ACL against the empty topic of an alias
// reuse), and answers publishes to topics nobody may publish to instead
// of leaving a QoS 1 sender waiting for a PUBACK that mochi never sends.
func (h *accessHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline {
		return pk, nil
	}
	if pk.Properties.TopicAliasFlag && pk.Properties.TopicAlias > 0 {
		pk.TopicName = cl.State.TopicAliases.Inbound.Set(pk.Properties.TopicAlias, pk.TopicName)
	}
	if publishable(pk.TopicName) || pk.FixedHeader.Qos == 0 {
		return pk, nil
	}
	if cl.Properties.ProtocolVersion < 5 {
		// MQTT 3.1.1 has no negative PUBACK, so the connection is closed
		// (MQTT-3.3.5-2). Returning an error is not enough: mochi acts
		// only on ErrRejectPacket, which drops the publish and would
		// leave the sender waiting for its PUBACK.
		cl.Stop(packets.ErrTopicNameInvalid)
		return pk, packets.ErrRejectPacket
	}
	ackType := packets.Puback
	if pk.FixedHeader.Qos == 2 {
		ackType = packets.Pubrec
	}
	if err := cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: ackType}, PacketID: pk.PacketID,
		ReasonCode: packets.ErrTopicNameInvalid.Code}); err != nil {
		return pk, err
	}
	pk.FixedHeader.Qos = 0 // answered: mochi drops it without another reply
	pk.TopicName = ""
	return pk, nil
}

// OnACLCheck allows what the client's role allows (see Role); topic is a
// topic for publishes and a filter for subscriptions. mochi asks it too
// before each delivery to a subscriber, which the queue bounds refuse
// when the subscriber's user holds too much already.
func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !topicWithinLimits(topic) || write && !publishable(topic) {
		return false
	}
	ownBoundsOnly := false
	if us := h.users.Load(); us != nil {
		u, ok := us.Lookup(string(cl.Properties.Username))
		if !ok {
			return false
		}
		if !write {
			topic = stripShare(topic)
		}
		if !Allowed(h.prefix, u, topic, write) && !DiscoveryAllowed(h.discovery, u, topic, write) {
			return false
		}
		ownBoundsOnly = u.Role == RoleAggregator || u.Role == RoleAdmin
	}
	return write || h.queues.allowDelivery(cl, ownBoundsOnly)
}

// DiscoveryAllowed reports whether a device user may publish (write) or
// subscribe to topic for Home Assistant discovery under prefix: publish
// and read back its own host's configs (sensor and binary_sensor, the
// components apd-publish announces), and hear Home Assistant's status (to
// announce again when it restarts).
func DiscoveryAllowed(prefix string, u User, topic string, write bool) bool {
	if u.Role != RoleDevice || prefix == "" {
		return false
	}
	if !write && topic == prefix+"/status" {
		return true
	}
	for _, component := range discoveryComponents {
		own := prefix + "/" + component + "/" + schema.DiscoveryID(u.Host) + "/"
		if !write {
			if topic == own+"+/config" {
				return true
			}
			continue
		}
		rest, ok := strings.CutPrefix(topic, own)
		name, last, ok2 := strings.Cut(rest, "/")
		if ok && ok2 && name != "" && last == "config" && !strings.ContainsAny(topic, "+#") {
			return true
		}
	}
	return false
}

// discoveryComponents are the Home Assistant platforms a device may
// announce its sensors as.
var discoveryComponents = [...]string{"sensor", "binary_sensor"}

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
			// Its readings and its status, nothing else: not its $ack,
			// not deeper levels that no part of apd reads.
			rest, ok := strings.CutPrefix(topic, own)
			return ok && (rest == schema.StatusLevel || schema.ValidateName(rest) == nil)
		}
		return topic == own+schema.AckLevel
	case RoleReader:
		return !write && strings.HasPrefix(topic, under)
	case RoleAggregator:
		if !write {
			return strings.HasPrefix(topic, under)
		}
		rest, ok := strings.CutPrefix(topic, under)
		host, last, ok2 := strings.Cut(rest, "/")
		return ok && ok2 && schema.ValidateName(host) == nil && last == schema.AckLevel
	}
	return false
}
