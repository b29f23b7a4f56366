package broker

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// shareHook chooses which member of a shared subscription group
// ($share/GROUP/filter) gets a message. mochi's own choice is random per
// message and counts a disconnected member with a persistent session as a
// member, so a host's readings were split across aggregators and queued
// for one that had gone. Here the member is chosen by the host the topic
// names (apd/<host>/…), among the members connected, by rendezvous
// hashing: each host stays with one aggregator while it is connected;
// when one leaves, only its hosts move, spread over the rest; when one
// joins, it takes about its share. With no member connected the choice
// is among all, so the message waits in a session rather than being lost.
type shareHook struct {
	mqtt.HookBase
	connected func(clientID string) bool
}

func (h *shareHook) ID() string { return "apd-share" }

func (h *shareHook) Provides(b byte) bool { return b == mqtt.OnSelectSubscribers }

// OnSelectSubscribers picks one member of every group the message matches.
func (h *shareHook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	key := shareKey(pk.TopicName)
	selected := make(map[string]packets.Subscription, len(subs.Shared))
	for _, members := range subs.Shared {
		id, ok := pickMember(key, members, h.connected)
		if !ok {
			continue
		}
		sub := members[id]
		if prev, ok := selected[id]; ok {
			sub = prev.Merge(sub)
		}
		selected[id] = sub
	}
	subs.SharedSelected = selected
	return subs
}

// shareKey is what keeps messages together: the host level of an apd
// topic (the second), or the whole topic for one without it.
func shareKey(topic string) string {
	_, rest, ok := strings.Cut(topic, "/")
	if !ok {
		return topic
	}
	host, _, _ := strings.Cut(rest, "/")
	return host
}

// pickMember returns the member with the highest weight for key among
// those connected, or among all when none is.
func pickMember(key string, members map[string]packets.Subscription, connected func(string) bool) (string, bool) {
	best, bestAll := "", ""
	var w, wAll uint64
	for id := range members {
		s := weight(key, id)
		if bestAll == "" || s > wAll || s == wAll && id < bestAll {
			bestAll, wAll = id, s
		}
		if connected(id) && (best == "" || s > w || s == w && id < best) {
			best, w = id, s
		}
	}
	if best == "" {
		return bestAll, bestAll != ""
	}
	return best, true
}

// weight is a well-mixed hash of (key, member): FNV-1a, then the
// splitmix64 finaliser, so similar host names spread evenly.
func weight(key, member string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	h = (h ^ 0xff) * 1099511628211
	for i := 0; i < len(member); i++ {
		h = (h ^ uint64(member[i])) * 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
