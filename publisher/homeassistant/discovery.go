// Package homeassistant announces apd's entities to Home Assistant through
// MQTT discovery: a retained config message per entity at
// <prefix>/<component>/<host>/<name>/config that points Home Assistant at
// the reading's topic and tells it how to get the state out of the
// payload, its unit, device and entity category.
//
// Config builds those configs (pure functions): Sensor for a device's
// sensors, a binary_sensor for booleans and a sensor for the rest; Rule
// for a rule's outcomes, which the server announces on the same device.
// Discovery is apd-publish's announcer of its own sensors.
//
// One config per entity rather than Home Assistant's device-based
// discovery (one config with every component): apd-publish learns a
// sensor's shape only from its first value, so a device config would be
// published again, larger each time, as sensors come in, and rule outcomes,
// announced by the server, would have to be merged into a message the
// device owns. Per-entity configs need neither, and are what earlier
// versions published, so upgrading moves no entity.
package homeassistant

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

// Discovery is a [publisher.Announcer] for Home Assistant.
//
// A sensor is announced with its first reading (its unit and whether it is
// a boolean are known only then) and again when its shape changes, after
// every reconnection, and when Home Assistant says <prefix>/status
// "online" (it restarted and may have lost its entities). A config of this
// host's that the broker retains is removed with an empty retained message
// when its sensor is no longer configured, or when the sensor is now
// announced as another component (a boolean that earlier versions
// announced as a sensor is a binary_sensor now): Home Assistant would
// otherwise keep both entities. Configs the server publishes for this
// host's rule outcomes are left alone.
type Discovery struct {
	prefix  string
	host    string
	topics  schema.Topics
	version string
	sensors map[string]bool // configured, by discovery id
	log     *slog.Logger
	// settle is how long after subscribing to this host's configs the
	// retained ones are collected before stale ones are removed.
	settle time.Duration

	mu        sync.Mutex
	announced map[string]announcement // sensor name → config published
	held      map[string]string       // config topics of this host's the broker holds → the sensor's discovery id
	wg        sync.WaitGroup
}

// announcement is a config published.
type announcement struct {
	topic   string
	payload []byte
}

// Options configure a Discovery.
type Options struct {
	// Prefix is Home Assistant's discovery prefix; empty means
	// "homeassistant".
	Prefix  string
	Host    string
	Topics  schema.Topics
	Version string
	// Sensors are the names of every configured sensor.
	Sensors []string
	Logger  *slog.Logger
}

// New returns the announcer of opts.
func New(opts Options) *Discovery {
	if opts.Prefix == "" {
		opts.Prefix = schema.DefaultDiscoveryPrefix
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Discovery{prefix: opts.Prefix, host: opts.Host, topics: opts.Topics, version: opts.Version,
		sensors: map[string]bool{}, log: opts.Logger, settle: 500 * time.Millisecond,
		announced: map[string]announcement{}, held: map[string]string{}}
	for _, s := range opts.Sensors {
		d.sensors[schema.DiscoveryID(s)] = true
	}
	return d
}

// Sampled implements publisher.Announcer: the first value of a sensor, or a
// value of a new shape, publishes its config before the reading goes out.
func (d *Discovery) Sampled(ctx context.Context, c publisher.Client, s publisher.Sample) {
	if s.Err != nil || s.Value == nil {
		return // nothing tells the shape yet
	}
	e := Sensor(d.host, s.Name, s.Title, s.Value, d.topics, d.version)
	a := announcement{topic: Topic(d.prefix, e.Component, d.host, s.Name), payload: e.Payload}
	d.mu.Lock()
	prev := d.announced[s.Name]
	d.announced[s.Name] = a
	clear := d.othersLocked(s.Name, a.topic)
	d.mu.Unlock()
	if prev.topic != "" && prev.topic != a.topic && !slices.Contains(clear, prev.topic) {
		clear = append(clear, prev.topic)
	}
	d.clear(ctx, c, clear, "its sensor is announced as another component now")
	if prev.topic == a.topic && bytes.Equal(prev.payload, a.payload) {
		return
	}
	d.publish(ctx, c, a.topic, a.payload)
}

// othersLocked takes from held the configs of sensor name at another topic
// than keep.
func (d *Discovery) othersLocked(name, keep string) []string {
	id := schema.DiscoveryID(name)
	var out []string
	for topic, held := range d.held {
		if held == id && topic != keep {
			out = append(out, topic)
			delete(d.held, topic)
		}
	}
	return out
}

func (d *Discovery) clear(ctx context.Context, c publisher.Client, topics []string, why string) {
	for _, topic := range topics {
		d.log.Info("removing a home assistant config", "topic", topic, "why", why)
		d.publish(ctx, c, topic, nil)
	}
}

func (d *Discovery) publish(ctx context.Context, c publisher.Client, topic string, payload []byte) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Publish(ctx, topic, payload, true); err != nil {
		d.log.Warn("home assistant discovery", "topic", topic, "err", err)
	}
}

// Connected implements publisher.Announcer: it listens for Home
// Assistant's restarts and for this host's retained configs, removes the
// stale ones and announces every known sensor again.
func (d *Discovery) Connected(ctx context.Context, c publisher.Client) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := c.Subscribe(d.prefix+"/status", func(_ string, payload []byte) {
			if strings.TrimSpace(string(payload)) == "online" {
				d.wg.Add(1)
				go func() { defer d.wg.Done(); d.announceAll(ctx, c) }()
			}
		})
		if err != nil {
			d.log.Warn("subscribe to home assistant status", "err", err)
		}
		for _, component := range []string{ComponentSensor, ComponentBinarySensor} {
			filter := d.prefix + "/" + component + "/" + schema.DiscoveryID(d.host) + "/+/config"
			if err := c.Subscribe(filter, d.heard(component)); err != nil {
				d.log.Warn("subscribe to home assistant configs", "filter", filter, "err", err)
			}
		}
		// Retained messages follow the subscription at once; there is no
		// end-of-retained marker, so give them a moment.
		select {
		case <-time.After(d.settle):
		case <-ctx.Done():
		}
		d.mu.Lock()
		var stale []string
		for topic, id := range d.held {
			if !d.sensors[id] {
				stale = append(stale, topic)
				delete(d.held, topic)
			}
		}
		d.mu.Unlock()
		d.clear(ctx, c, stale, "its sensor is no longer configured")
		d.announceAll(ctx, c)
	}()
}

// heard returns the handler of this host's retained configs of component.
func (d *Discovery) heard(component string) func(string, []byte) {
	return func(topic string, payload []byte) {
		levels := strings.Split(topic, "/")
		if len(levels) < 2 {
			return
		}
		id := levels[len(levels)-2]
		d.mu.Lock()
		defer d.mu.Unlock()
		switch {
		case len(payload) == 0:
			delete(d.held, topic)
		case component == ComponentBinarySensor && Origin(payload) != OriginDevice:
			// The server's: a rule outcome on this host's device.
		default:
			d.held[topic] = id
		}
	}
}

func (d *Discovery) announceAll(ctx context.Context, c publisher.Client) {
	d.mu.Lock()
	configs := make([]announcement, 0, len(d.announced))
	var clear []string
	for name, a := range d.announced {
		configs = append(configs, a)
		clear = append(clear, d.othersLocked(name, a.topic)...)
	}
	d.mu.Unlock()
	d.clear(ctx, c, clear, "its sensor is announced as another component now")
	for _, a := range configs {
		d.publish(ctx, c, a.topic, a.payload)
	}
}

// Flush implements publisher.Announcer.
func (d *Discovery) Flush(ctx context.Context) {
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
