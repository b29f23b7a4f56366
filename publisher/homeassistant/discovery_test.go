package homeassistant

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func TestSensorConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		host, sensor, value string
		component           string
		want                map[string]any // members that must have these values
		absent              []string
	}{
		{"temperature", "pi-kitchen", "temperature", `{"magnitude":21,"unit":"degC"}`, ComponentSensor, map[string]any{
			"state_topic": "apd/pi-kitchen/temperature", "unit_of_measurement": "°C", "device_class": "temperature",
			"state_class": "measurement", "availability_topic": "apd/pi-kitchen/$status", "unique_id": "apd_pi-kitchen_temperature",
			"default_entity_id": "sensor.pi_kitchen_temperature", "suggested_display_precision": 1.0,
			"value_template": "{{ value_json.value.magnitude if value_json.value is defined else None }}",
		}, []string{"entity_category", "payload_on"}},
		{"humidity", "pi-kitchen", "relative_humidity", `{"magnitude":45.2,"unit":"percent"}`, ComponentSensor,
			map[string]any{"unit_of_measurement": "%", "device_class": "humidity", "suggested_display_precision": 1.0}, []string{"entity_category"}},
		{"battery", "pi", "battery_level", `{"magnitude":87,"unit":"percent"}`, ComponentSensor, map[string]any{"device_class": "battery"}, nil},
		{"cpu load as percent", "pi", "cpu_load", `{"magnitude":0.098,"unit":"ratio"}`, ComponentSensor, map[string]any{"unit_of_measurement": "%",
			"value_template":              "{{ value_json.value.magnitude * 100 if value_json.value is defined else None }}",
			"suggested_display_precision": 1.0, "entity_category": "diagnostic"}, []string{"device_class"}},
		{"disk usage as percent", "pi", "disk_usage", `{"magnitude":0.412,"unit":"ratio"}`, ComponentSensor,
			map[string]any{"unit_of_measurement": "%", "entity_category": "diagnostic"}, nil},
		{"RAM in GiB", "pi", "ram_available", `{"magnitude":716476416,"unit":"B"}`, ComponentSensor, map[string]any{
			"unit_of_measurement": "GiB", "device_class": "data_size", "suggested_display_precision": 2.0, "entity_category": "diagnostic",
			"value_template": "{{ value_json.value.magnitude / 1073741824 if value_json.value is defined else None }}"}, nil},
		{"uptime", "pi", "uptime", `{"magnitude":3600,"unit":"s"}`, ComponentSensor,
			map[string]any{"device_class": "duration", "unit_of_measurement": "s", "entity_category": "diagnostic"}, nil},
		{"load average", "pi", "load_average", `0.42`, ComponentSensor,
			map[string]any{"entity_category": "diagnostic", "suggested_display_precision": 2.0, "state_class": "measurement"}, []string{"unit_of_measurement"}},
		{"version", "pi", "version", `{"apd":"0.3.0","go":"go1.26.8","os":"linux","arch":"arm"}`, ComponentSensor,
			map[string]any{"entity_category": "diagnostic", "value_template": "{{ value_json.human[:255] if value_json.human is defined else None }}"},
			[]string{"unit_of_measurement", "state_class"}},
		{"ip addresses", "pi", "ip_addresses", `["192.168.1.246"]`, ComponentSensor, map[string]any{"entity_category": "diagnostic"}, nil},
		{"energy", "pi", "solar", `{"magnitude":14070867,"unit":"Wh"}`, ComponentSensor,
			map[string]any{"device_class": "energy", "state_class": "total_increasing"}, []string{"suggested_display_precision"}},
		{"plain number", "pi", "count", `42`, ComponentSensor,
			map[string]any{"value_template": "{{ value_json.value if value_json.value is defined else None }}"}, []string{"unit_of_measurement"}},
		{"boolean", "pi-kitchen", "ac_connected", `true`, ComponentBinarySensor, map[string]any{
			"value_template": BoolTemplate, "payload_on": "True", "payload_off": "False",
			"default_entity_id": "binary_sensor.pi_kitchen_ac_connected", "availability_topic": "apd/pi-kitchen/$status"},
			[]string{"unit_of_measurement", "state_class", "entity_category", "device_class"}},
		{"false is boolean too", "pi", "door_open", `false`, ComponentBinarySensor, map[string]any{"payload_off": "False"}, nil},
		{"dots in names", "pi.lab", "temp.probe", `1`, ComponentSensor, map[string]any{"unique_id": "apd_pi_lab_temp_probe",
			"state_topic": "apd/pi.lab/temp.probe", "default_entity_id": "sensor.pi_lab_temp_probe"}, nil},
		{"entity id slug", "Pi--Shed_", "Temp", `1`, ComponentSensor, map[string]any{"default_entity_id": "sensor.pi_shed_temp"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := Sensor(tc.host, tc.sensor, "Title", json.RawMessage(tc.value), schema.Topics{}, "0.3.0")
			if e.Component != tc.component {
				t.Errorf("component = %s, want %s", e.Component, tc.component)
			}
			got := decode(t, e.Payload)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			for _, k := range append(tc.absent, "object_id", "suggested_unit_of_measurement") {
				if _, ok := got[k]; ok {
					t.Errorf("has %s: %v", k, got[k])
				}
			}
			dev, _ := got["device"].(map[string]any)
			if ids, _ := dev["identifiers"].([]any); dev["name"] != tc.host || dev["sw_version"] != "0.3.0" || len(ids) != 1 || ids[0] != DeviceIdentifier(tc.host) {
				t.Errorf("device block %v", dev)
			}
			if o, _ := got["origin"].(map[string]any); o["name"] != OriginDevice {
				t.Errorf("origin %v", got["origin"])
			}
		})
	}
}

func TestRuleConfig(t *testing.T) {
	t.Parallel()
	e := Rule("pi-kitchen", "kitchen-cold", schema.Topics{}, "0.3.0")
	if e.Component != ComponentBinarySensor {
		t.Fatalf("component = %s", e.Component)
	}
	got := decode(t, e.Payload)
	want := map[string]any{
		"name": "kitchen-cold", "state_topic": "apd/pi-kitchen/kitchen-cold", "unique_id": "apd_pi-kitchen_kitchen-cold",
		"default_entity_id": "binary_sensor.pi_kitchen_kitchen_cold", "value_template": BoolTemplate,
		"payload_on": "True", "payload_off": "False",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, k := range []string{"object_id", "availability_topic", "entity_category"} {
		if _, ok := got[k]; ok {
			t.Errorf("has %s", k)
		}
	}
	// Only what links it to the host's device: the device's model and
	// version are apd-publish's to say.
	dev, _ := got["device"].(map[string]any)
	if ids, _ := dev["identifiers"].([]any); len(dev) != 2 || len(ids) != 1 || ids[0] != "apd_pi-kitchen" || dev["name"] != "pi-kitchen" {
		t.Errorf("device block %v", dev)
	}
	if Origin(e.Payload) != OriginServer {
		t.Errorf("origin %v", got["origin"])
	}
	if topic := Topic("homeassistant", e.Component, "pi.kitchen", "kitchen-cold"); topic != "homeassistant/binary_sensor/pi_kitchen/kitchen-cold/config" {
		t.Errorf("topic %s", topic)
	}
}

func decode(t *testing.T, payload []byte) map[string]any {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatalf("config %s: %v", payload, err)
	}
	return got
}

// fakeClient is a broker of retained messages with one subscriber.
type fakeClient struct {
	mu        sync.Mutex
	retained  map[string][]byte
	published []string
	subs      map[string]func(string, []byte)
}

func (f *fakeClient) Publish(_ context.Context, topic string, payload []byte, retain bool) error {
	f.mu.Lock()
	f.published = append(f.published, topic)
	if retain {
		f.retained[topic] = payload
	}
	var handlers []func(string, []byte)
	for filter, h := range f.subs {
		if mqttc.Match(filter, topic) {
			handlers = append(handlers, h)
		}
	}
	f.mu.Unlock()
	for _, h := range handlers {
		h(topic, payload)
	}
	return nil
}

func (f *fakeClient) PublishAll(ctx context.Context, topics []string, payloads [][]byte) []error {
	errs := make([]error, len(topics))
	for i := range topics {
		errs[i] = f.Publish(ctx, topics[i], payloads[i], false)
	}
	return errs
}

// SubscribeLatest is Subscribe: the fake has no QoS.
func (f *fakeClient) SubscribeLatest(filter string, fn func(string, []byte)) error {
	return f.Subscribe(filter, fn)
}

func (f *fakeClient) Subscribe(filter string, fn func(string, []byte)) error {
	f.mu.Lock()
	f.subs[filter] = fn
	var deliver [][2]string
	for topic, p := range f.retained {
		if mqttc.Match(filter, topic) {
			deliver = append(deliver, [2]string{topic, string(p)})
		}
	}
	f.mu.Unlock()
	for _, d := range deliver {
		fn(d[0], []byte(d[1]))
	}
	return nil
}

func TestDiscovery(t *testing.T) {
	c := &fakeClient{retained: map[string][]byte{
		"homeassistant/sensor/pi/old_sensor/config":  []byte(`{"name":"gone"}`),
		"homeassistant/sensor/pi/temperature/config": []byte(`{"name":"stale but configured"}`),
		"homeassistant/sensor/other/x/config":        []byte(`{"name":"another host's"}`),
		// The server's config of a rule's outcomes on this device.
		"homeassistant/binary_sensor/pi/too_cold/config": Rule("pi", "too_cold", schema.Topics{}, "v").Payload,
	}, subs: map[string]func(string, []byte){}}
	d := New(Options{Host: "pi", Sensors: []string{"temperature", "cpu_load"}, Version: "v"})
	ctx := context.Background()
	d.Connected(ctx, c)
	temp := publisher.Sample{Name: "temperature", Title: "Ambient Temperature", Value: json.RawMessage(`{"magnitude":21,"unit":"degC"}`)}
	d.Sampled(ctx, c, temp)
	d.Sampled(ctx, c, temp)
	d.Sampled(ctx, c, publisher.Sample{Name: "cpu_load", Err: publisher.Intermittent(context.DeadlineExceeded)})
	d.Flush(ctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.retained["homeassistant/sensor/pi/old_sensor/config"]; !ok || len(p) != 0 {
		t.Errorf("config of a sensor no longer configured = %q, want removed (empty)", p)
	}
	if p := c.retained["homeassistant/sensor/other/x/config"]; len(p) == 0 {
		t.Error("another host's config was removed")
	}
	if p := c.retained["homeassistant/binary_sensor/pi/too_cold/config"]; len(p) == 0 {
		t.Error("the server's config of a rule outcome was removed")
	}
	var cfg map[string]any
	if err := json.Unmarshal(c.retained["homeassistant/sensor/pi/temperature/config"], &cfg); err != nil || cfg["name"] != "Ambient Temperature" {
		t.Errorf("temperature config = %s (%v)", c.retained["homeassistant/sensor/pi/temperature/config"], err)
	}
	if _, ok := c.retained["homeassistant/sensor/pi/cpu_load/config"]; ok {
		t.Error("a sensor that never had a value was announced")
	}
	n := 0
	for _, topic := range c.published {
		if topic == "homeassistant/sensor/pi/temperature/config" {
			n++
		}
	}
	// Once for the first value (not again for the same shape), once more
	// after the connection's settle time.
	if n != 2 {
		t.Errorf("temperature config published %d times, want 2: %v", n, c.published)
	}
}

func TestReannounceWhenHomeAssistantRestarts(t *testing.T) {
	c := &fakeClient{retained: map[string][]byte{}, subs: map[string]func(string, []byte){}}
	d := New(Options{Host: "pi", Sensors: []string{"temperature"}})
	d.settle = time.Millisecond
	ctx := context.Background()
	d.Connected(ctx, c)
	d.Flush(ctx)
	d.Sampled(ctx, c, publisher.Sample{Name: "temperature", Value: json.RawMessage(`{"magnitude":21,"unit":"degC"}`)})
	delete(c.retained, "homeassistant/sensor/pi/temperature/config") // Home Assistant's broker lost it
	_ = c.Publish(ctx, "homeassistant/status", []byte("online"), false)
	d.Flush(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !strings.Contains(string(c.retained["homeassistant/sensor/pi/temperature/config"]), "apd/pi/temperature") {
		t.Fatalf("not announced again after homeassistant/status online: %v", c.retained)
	}
}

// A sensor announced as one component and now as another leaves no
// entity behind: its old retained config is cleared with an empty
// retained message, whether an earlier version published it (seen
// retained at connection) or this process did.
func TestComponentChangeClearsOldConfig(t *testing.T) {
	const (
		oldSensor = "homeassistant/sensor/pi/ac_connected/config"
		binary    = "homeassistant/binary_sensor/pi/ac_connected/config"
		tempOld   = "homeassistant/sensor/pi/door/config"
		tempNew   = "homeassistant/binary_sensor/pi/door/config"
	)
	c := &fakeClient{retained: map[string][]byte{
		// What versions before binary sensors announced.
		oldSensor: []byte(`{"name":"AC Connected","origin":{"name":"apd"}}`),
	}, subs: map[string]func(string, []byte){}}
	d := New(Options{Host: "pi", Sensors: []string{"ac_connected", "door"}})
	d.settle = time.Millisecond
	ctx := context.Background()
	d.Connected(ctx, c)
	d.Flush(ctx)
	d.Sampled(ctx, c, publisher.Sample{Name: "ac_connected", Title: "AC Connected", Value: json.RawMessage(`true`)})
	d.Sampled(ctx, c, publisher.Sample{Name: "door", Value: json.RawMessage(`1`)})
	d.Sampled(ctx, c, publisher.Sample{Name: "door", Value: json.RawMessage(`false`)})
	d.Flush(ctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, topic := range []string{oldSensor, tempOld} {
		if p, ok := c.retained[topic]; !ok || len(p) != 0 {
			t.Errorf("%s = %q, want cleared (empty retained)", topic, p)
		}
	}
	for _, topic := range []string{binary, tempNew} {
		cfg := map[string]any{}
		if err := json.Unmarshal(c.retained[topic], &cfg); err != nil || cfg["payload_on"] != PayloadOn {
			t.Errorf("%s = %s (%v), want a binary_sensor config", topic, c.retained[topic], err)
		}
	}
	// The old config goes before the new one arrives.
	if i, j := slices.Index(c.published, oldSensor), slices.Index(c.published, binary); i < 0 || j < i {
		t.Errorf("published %v: clearing %s should come before %s", c.published, oldSensor, binary)
	}
}
