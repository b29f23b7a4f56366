// Package homeassistant announces a device's sensors to Home Assistant
// through MQTT discovery: a retained config message per sensor at
// <prefix>/sensor/<host>/<sensor>/config that points Home Assistant at the
// reading's topic, tells it how to get the number out of the payload, its
// unit and device class, and the host's $status topic for availability.
//
// A sensor is announced with its first reading (its unit is known only
// then) and again when its shape changes, after every reconnection, and
// when Home Assistant says <prefix>/status "online" (it restarted and may
// have lost its entities). Retained configs of this host's sensors that are
// no longer configured are removed with an empty retained message.
package homeassistant

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

// Discovery is a [publisher.Announcer] for Home Assistant.
type Discovery struct {
	prefix  string
	host    string
	topics  schema.Topics
	version string
	sensors map[string]bool // configured, by discovery id
	log     *slog.Logger
	// Settle is how long after subscribing to this host's configs the
	// retained ones are collected before stale ones are removed.
	settle time.Duration

	mu        sync.Mutex
	announced map[string][]byte // sensor name → config published
	stale     map[string]bool   // config topics seen for sensors not configured
	wg        sync.WaitGroup
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
		announced: map[string][]byte{}, stale: map[string]bool{}}
	for _, s := range opts.Sensors {
		d.sensors[schema.DiscoveryID(s)] = true
	}
	return d
}

// Sampled implements publisher.Announcer: the first value of a sensor, or a
// value of a new shape, publishes its config before the reading goes out.
func (d *Discovery) Sampled(ctx context.Context, c publisher.Client, s publisher.Sample) {
	if s.Err != nil || s.Value == nil {
		return // nothing tells the unit yet
	}
	cfg := Config(d.host, s.Name, s.Title, s.Value, d.topics, d.version)
	d.mu.Lock()
	same := string(d.announced[s.Name]) == string(cfg)
	d.announced[s.Name] = cfg
	d.mu.Unlock()
	if same {
		return
	}
	d.publish(ctx, c, schema.DiscoveryTopic(d.prefix, d.host, s.Name), cfg)
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
		filter := d.prefix + "/sensor/" + schema.DiscoveryID(d.host) + "/+/config"
		err = c.Subscribe(filter, func(topic string, payload []byte) {
			if len(payload) == 0 {
				return
			}
			levels := strings.Split(topic, "/")
			if len(levels) < 2 || d.sensors[levels[len(levels)-2]] {
				return
			}
			d.mu.Lock()
			d.stale[topic] = true
			d.mu.Unlock()
		})
		if err != nil {
			d.log.Warn("subscribe to home assistant configs", "err", err)
		}
		// Retained messages follow the subscription at once; there is no
		// end-of-retained marker, so give them a moment.
		select {
		case <-time.After(d.settle):
		case <-ctx.Done():
		}
		d.mu.Lock()
		stale := d.stale
		d.stale = map[string]bool{}
		d.mu.Unlock()
		for topic := range stale {
			d.log.Info("removing home assistant config of a sensor no longer configured", "topic", topic)
			d.publish(ctx, c, topic, nil)
		}
		d.announceAll(ctx, c)
	}()
}

func (d *Discovery) announceAll(ctx context.Context, c publisher.Client) {
	d.mu.Lock()
	configs := make(map[string][]byte, len(d.announced))
	for name, cfg := range d.announced {
		configs[name] = cfg
	}
	d.mu.Unlock()
	for name, cfg := range configs {
		d.publish(ctx, c, schema.DiscoveryTopic(d.prefix, d.host, name), cfg)
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

// unit is how Home Assistant shows one of apd's units.
type unit struct {
	symbol      string
	deviceClass string
	total       bool    // a counter that only grows (energy)
	scale       float64 // multiply the magnitude by this; 0 means 1
}

var units = map[string]unit{
	schema.UnitCelsius: {"°C", "temperature", false, 0},
	"degF":             {"°F", "temperature", false, 0},
	"K":                {"K", "temperature", false, 0},
	schema.UnitPercent: {"%", "", false, 0},
	"ratio":            {"%", "", false, 100},
	"B":                {"B", "data_size", false, 0},
	"W":                {"W", "power", false, 0},
	"Wh":               {"Wh", "energy", true, 0},
	"J":                {"J", "energy", true, 0},
	"V":                {"V", "voltage", false, 0},
	"A":                {"A", "current", false, 0},
	"Pa":               {"Pa", "pressure", false, 0},
	"hPa":              {"hPa", "pressure", false, 0},
	"lx":               {"lx", "illuminance", false, 0},
	"ppm":              {"ppm", "", false, 0},
	"s":                {"s", "duration", false, 0},
	"deg":              {"°", "", false, 0},
}

// Config returns the discovery config of a sensor whose value looks like
// value.
func Config(host, sensor, title string, value json.RawMessage, topics schema.Topics, version string) []byte {
	id := schema.DiscoveryID(host) + "_" + schema.DiscoveryID(sensor)
	status := topics.Status(host)
	cfg := map[string]any{
		"name":                  title,
		"unique_id":             "apd_" + id,
		"object_id":             id,
		"state_topic":           topics.Reading(host, sensor),
		"availability_topic":    status,
		"availability_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}",
		"payload_available":     "online",
		"payload_not_available": "offline",
		"device": map[string]any{
			"identifiers":  []string{"apd_" + schema.DiscoveryID(host)},
			"name":         host,
			"manufacturer": "apd",
			"model":        "apd-publish",
			"sw_version":   version,
		},
		"origin": map[string]any{"name": "apd", "sw_version": version},
	}
	// A failed reading has no value: None makes Home Assistant show
	// "unknown" rather than log a template error.
	const orNone = " if value_json.value is defined else None }}"
	if q, ok := schema.ParseQuantity(value); ok {
		u, known := units[q.Unit]
		if !known {
			u = unit{symbol: q.Unit}
		}
		if u.scale != 0 {
			cfg["value_template"] = "{{ (value_json.value.magnitude * " + formatFloat(u.scale) + ") | round(1)" + orNone
		} else {
			cfg["value_template"] = "{{ value_json.value.magnitude" + orNone
		}
		cfg["unit_of_measurement"] = u.symbol
		cfg["state_class"] = "measurement"
		if u.total {
			cfg["state_class"] = "total_increasing"
		}
		class := u.deviceClass
		if q.Unit == schema.UnitPercent {
			switch {
			case strings.Contains(sensor, "humidity"):
				class = "humidity"
			case strings.Contains(sensor, "battery"):
				class = "battery"
			}
		}
		if class != "" {
			cfg["device_class"] = class
		}
	} else if isNumber(value) {
		cfg["value_template"] = "{{ value_json.value" + orNone
		cfg["state_class"] = "measurement"
	} else {
		// Anything else shows as its human form; Home Assistant keeps at
		// most 255 characters of a state.
		cfg["value_template"] = "{{ value_json.human[:255] if value_json.human is defined else None }}"
	}
	b, _ := json.Marshal(cfg)
	return b
}

func isNumber(v json.RawMessage) bool {
	var f float64
	return json.Unmarshal(v, &f) == nil
}

func formatFloat(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}
