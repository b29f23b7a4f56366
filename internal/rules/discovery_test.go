package rules

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/publisher/homeassistant"
	"github.com/apd-telemetry/apd/schema"
)

// recorder keeps the last message of every topic a client heard.
type recorder struct {
	mu   sync.Mutex
	last map[string][]byte
	all  map[string][][]byte
}

func (r *recorder) record(topic string, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[topic] = append([]byte(nil), payload...)
	r.all[topic] = append(r.all[topic], append([]byte(nil), payload...))
}

func (r *recorder) get(topic string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[topic]
}

func (r *recorder) history(topic string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all[topic]
}

// TestHomeAssistantDiscovery runs the embedded broker with Home Assistant's
// side played by a client subscribed to homeassistant/# and apd/#: a
// device announces a boolean sensor and two of the machine's own, the
// publish action announces a rule's outcomes, and the states each entity's
// value template makes of the payloads published are its payload_on and
// payload_off.
func TestHomeAssistantDiscovery(t *testing.T) {
	brk, err := broker.New(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := brk.Start(); err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	url := "tcp://" + brk.Addr()
	ha := &recorder{last: map[string][]byte{}, all: map[string][][]byte{}}
	watcher, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: "home-assistant"})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	for _, filter := range []string{"homeassistant/#", "apd/#"} {
		if err := watcher.Subscribe(filter, ha.record); err != nil {
			t.Fatal(err)
		}
	}

	// The device: an earlier version's retained config of ac_connected as
	// a sensor, then this version's discovery and readings.
	device, err := mqttc.Dial(mqttc.Options{URL: url, ClientID: "apd-publish-pi", QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer device.Close()
	ctx := context.Background()
	const oldConfig = "homeassistant/sensor/pi/ac_connected/config"
	if err := device.Publish(ctx, oldConfig, []byte(`{"name":"AC Connected","state_topic":"apd/pi/ac_connected","origin":{"name":"apd"}}`), true); err != nil {
		t.Fatal(err)
	}
	d := homeassistant.New(homeassistant.Options{Host: "pi", Sensors: []string{"ac_connected", "cpu_load", "version"}, Version: "0.3.0"})
	d.Connected(ctx, device)
	d.Flush(ctx) // the retained configs collected, the stale ones handled
	seq := uint64(0)
	publish := func(c *mqttc.Client, host, sensor, value string) {
		t.Helper()
		seq++
		r := schema.Reading{Host: host, Sensor: sensor, Time: time.Now().UTC(), Seq: seq, Value: json.RawMessage(value), Human: schema.Format(sensor, json.RawMessage(value))}
		d.Sampled(ctx, c, publisher.Sample{Name: sensor, Title: sensor, Value: r.Value})
		if err := c.Publish(ctx, schema.Topics{}.Reading(host, sensor), r.AppendJSON(nil, schema.WithIdentity), false); err != nil {
			t.Fatal(err)
		}
	}
	publish(device, "pi", "ac_connected", "true")
	publish(device, "pi", "ac_connected", "false")
	publish(device, "pi", "cpu_load", `{"magnitude":0.098,"unit":"ratio"}`)
	publish(device, "pi", "version", `{"apd":"0.3.0","go":"go1.26.8","os":"linux","arch":"arm"}`)

	// The server: a rule with the publish action, publishing through the
	// broker in its process as apd serve does.
	rules := mustParse(t, map[string]any{"name": "warm", "sensor": "temperature", "when": "value > 20", "on_change": true, "actions": []any{"publish"}})
	e := NewEngine(rules, Deps{
		Publish:         func(topic string, payload []byte) error { return brk.Publish(topic, payload, false) },
		PublishRetained: func(topic string, payload []byte) error { return brk.Publish(topic, payload, true) },
		HADiscovery:     &HADiscovery{Version: "0.3.0"},
	})
	defer e.Close()
	e.Submit(series("pi", "temperature", time.Hour, 19, 18, 21, 22, 21))

	const (
		acTopic   = "homeassistant/binary_sensor/pi/ac_connected/config"
		ruleTopic = "homeassistant/binary_sensor/pi/warm/config"
		cpuTopic  = "homeassistant/sensor/pi/cpu_load/config"
		verTopic  = "homeassistant/sensor/pi/version/config"
	)
	waitFor(t, "the configs, both outcomes and both ac_connected states", func() bool {
		return len(ha.get(acTopic)) > 0 && len(ha.get(ruleTopic)) > 0 && len(ha.get(cpuTopic)) > 0 && len(ha.get(verTopic)) > 0 &&
			len(ha.history("apd/pi/warm")) == 2 && len(ha.history("apd/pi/ac_connected")) == 2
	})
	waitFor(t, "the old sensor config of ac_connected cleared", func() bool {
		h := ha.history(oldConfig)
		return len(h) > 1 && len(h[len(h)-1]) == 0
	})

	ha.mu.Lock()
	for topic, p := range ha.last {
		if strings.HasPrefix(topic, "homeassistant/") && strings.Contains(string(p), `"object_id"`) {
			t.Errorf("%s has object_id: %s", topic, p)
		}
	}
	ha.mu.Unlock()

	for _, tc := range []struct{ config, state, entityID string }{
		{acTopic, "apd/pi/ac_connected", "binary_sensor.pi_ac_connected"},
		{ruleTopic, "apd/pi/warm", "binary_sensor.pi_warm"},
	} {
		var cfg map[string]any
		if err := json.Unmarshal(ha.get(tc.config), &cfg); err != nil {
			t.Fatalf("%s: %v", tc.config, err)
		}
		if cfg["state_topic"] != tc.state || cfg["default_entity_id"] != tc.entityID || cfg["entity_category"] != nil {
			t.Errorf("%s: %v", tc.config, cfg)
		}
		if ids := cfg["device"].(map[string]any)["identifiers"].([]any); len(ids) != 1 || ids[0] != "apd_pi" {
			t.Errorf("%s: device identifiers %v, want the device's [apd_pi]", tc.config, ids)
		}
		tpl, _ := cfg["value_template"].(string)
		// The states seen, in order: false then true for the rule,
		// true then false for ac_connected.
		var got []string
		for _, payload := range ha.history(tc.state) {
			got = append(got, renderTemplate(t, tpl, payload))
		}
		on, off := cfg["payload_on"], cfg["payload_off"]
		if len(got) != 2 || !(got[0] == on && got[1] == off || got[0] == off && got[1] == on) {
			t.Errorf("%s: value template %q renders %q of %s, want payload_on %q and payload_off %q", tc.config, tpl, got, tc.state, on, off)
		}
	}
	for _, topic := range []string{cpuTopic, verTopic} {
		var cfg map[string]any
		if err := json.Unmarshal(ha.get(topic), &cfg); err != nil || cfg["entity_category"] != "diagnostic" {
			t.Errorf("%s: %s (%v), want entity_category diagnostic", topic, ha.get(topic), err)
		}
	}
}

// renderTemplate renders a value template the way Home Assistant renders
// an MQTT state (value the payload, value_json its JSON, the output a
// stripped string), with Jinja2 when python3 has it, else by the rule
// Home Assistant's renderer follows for the boolean template: Python's
// str() of the value, None when it is missing.
func renderTemplate(t *testing.T, tpl string, payload []byte) string {
	t.Helper()
	const script = `import json, sys, jinja2
tpl, payload = sys.argv[1], sys.argv[2]
variables = {"value": payload}
try:
    variables["value_json"] = json.loads(payload)
except ValueError:
    pass
sys.stdout.write(jinja2.Environment().from_string(tpl).render(**variables).strip())`
	if out, err := exec.Command("python3", "-c", script, tpl, string(payload)).Output(); err == nil {
		return string(out)
	}
	if tpl != homeassistant.BoolTemplate {
		t.Fatalf("no Jinja2 here to render %q", tpl)
	}
	var r struct {
		Value *bool `json:"value"`
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		t.Fatal(err)
	}
	switch {
	case r.Value == nil:
		return "None"
	case *r.Value:
		return "True"
	default:
		return "False"
	}
}
