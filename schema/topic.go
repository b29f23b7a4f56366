package schema

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the first level of every apd topic unless configured
// otherwise.
const DefaultPrefix = "apd"

// Reserved last levels of a host's topics. They start with '$', which no
// sensor name can, so they never collide with a reading's topic.
const (
	StatusLevel = "$status"
	AckLevel    = "$ack"
)

// TopicKind tells what a topic under the prefix carries.
type TopicKind int

// The kinds of apd topics.
const (
	KindReading TopicKind = iota + 1 // <prefix>/<host>/<sensor>
	KindStatus                       // <prefix>/<host>/$status
	KindAck                          // <prefix>/<host>/$ack
)

// ErrNotApdTopic is returned (wrapped) by [Topics.Parse] for a topic that is
// not one of apd's.
var ErrNotApdTopic = errors.New("not an apd topic")

// Topic is a parsed apd topic.
type Topic struct {
	Kind   TopicKind
	Host   string
	Sensor string // empty unless Kind is KindReading
}

// Topics builds and parses topics under one prefix. The zero value uses
// [DefaultPrefix].
type Topics struct {
	// Prefix is the first level (or levels) of every topic, without a
	// trailing slash. Empty means DefaultPrefix.
	Prefix string
}

func (t Topics) prefix() string {
	if t.Prefix == "" {
		return DefaultPrefix
	}
	return t.Prefix
}

// Reading returns the topic of host's readings of sensor. It does not
// validate the names.
func (t Topics) Reading(host, sensor string) string {
	return t.prefix() + "/" + host + "/" + sensor
}

// Status returns the topic of host's retained status.
func (t Topics) Status(host string) string { return t.prefix() + "/" + host + "/" + StatusLevel }

// Ack returns the topic of host's retained storage acknowledgement.
func (t Topics) Ack(host string) string { return t.prefix() + "/" + host + "/" + AckLevel }

// Under reports whether topic lies under the prefix, whatever its levels.
func (t Topics) Under(topic string) bool { return strings.HasPrefix(topic, t.prefix()+"/") }

// All returns the filter that matches every apd topic.
func (t Topics) All() string { return t.prefix() + "/#" }

// Parse splits an apd topic into its kind, host and sensor. It returns an
// error wrapping [ErrNotApdTopic] when the topic is outside the prefix or has
// the wrong number of levels, and one wrapping [ErrInvalidName] when a level
// is not a valid name.
func (t Topics) Parse(topic string) (Topic, error) {
	p := t.prefix()
	if len(topic) <= len(p)+1 || topic[:len(p)] != p || topic[len(p)] != '/' {
		return Topic{}, fmt.Errorf("%w: %q is outside %q", ErrNotApdTopic, topic, p+"/")
	}
	rest := topic[len(p)+1:]
	host, last, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(last, "/") {
		return Topic{}, fmt.Errorf("%w: %q is not %s/<host>/<sensor>", ErrNotApdTopic, topic, p)
	}
	if err := ValidateName(host); err != nil {
		return Topic{}, fmt.Errorf("host: %w", err)
	}
	switch last {
	case StatusLevel:
		return Topic{Kind: KindStatus, Host: host}, nil
	case AckLevel:
		return Topic{Kind: KindAck, Host: host}, nil
	}
	if err := ValidateName(last); err != nil {
		return Topic{}, fmt.Errorf("sensor: %w", err)
	}
	return Topic{Kind: KindReading, Host: host, Sensor: last}, nil
}

// DefaultDiscoveryPrefix is Home Assistant's MQTT discovery prefix.
const DefaultDiscoveryPrefix = "homeassistant"

// DiscoveryID turns a host or sensor name into a Home Assistant id, which
// may not contain dots.
func DiscoveryID(name string) string { return strings.ReplaceAll(name, ".", "_") }

// DiscoveryTopic is the Home Assistant MQTT discovery topic of a sensor's
// config: <prefix>/sensor/<host>/<sensor>/config.
func DiscoveryTopic(prefix, host, sensor string) string {
	return prefix + "/sensor/" + DiscoveryID(host) + "/" + DiscoveryID(sensor) + "/config"
}
