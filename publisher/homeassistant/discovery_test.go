package homeassistant

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		host, sensor, value string
		want                map[string]any // members that must have these values
		absent              []string
	}{
		{"pi-kitchen", "temperature", `{"magnitude":21,"unit":"degC"}`, map[string]any{
			"state_topic": "apd/pi-kitchen/temperature", "unit_of_measurement": "°C", "device_class": "temperature",
			"state_class": "measurement", "availability_topic": "apd/pi-kitchen/$status", "unique_id": "apd_pi-kitchen_temperature",
			"value_template": "{{ value_json.value.magnitude if value_json.value is defined else None }}",
		}, nil},
		{"pi-kitchen", "relative_humidity", `{"magnitude":45.2,"unit":"percent"}`, map[string]any{"unit_of_measurement": "%", "device_class": "humidity"}, nil},
		{"pi", "battery_level", `{"magnitude":87,"unit":"percent"}`, map[string]any{"device_class": "battery"}, nil},
		{"pi", "cpu_load", `{"magnitude":0.098,"unit":"ratio"}`, map[string]any{"unit_of_measurement": "%",
			"value_template": "{{ (value_json.value.magnitude * 100) | round(1) if value_json.value is defined else None }}"}, []string{"device_class"}},
		{"pi", "solar", `{"magnitude":14070867,"unit":"Wh"}`, map[string]any{"device_class": "energy", "state_class": "total_increasing"}, nil},
		{"pi", "count", `42`, map[string]any{"value_template": "{{ value_json.value if value_json.value is defined else None }}"}, []string{"unit_of_measurement"}},
		{"pi", "ac_connected", `true`, map[string]any{"value_template": "{{ value_json.human[:255] if value_json.human is defined else None }}"}, []string{"unit_of_measurement", "state_class"}},
		{"pi.lab", "temp.probe", `1`, map[string]any{"unique_id": "apd_pi_lab_temp_probe", "state_topic": "apd/pi.lab/temp.probe"}, nil},
	}
	for _, tc := range tests {
		var got map[string]any
		if err := json.Unmarshal(Config(tc.host, tc.sensor, "Title", json.RawMessage(tc.value), schema.Topics{}, "0.3.0"), &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s %s: %s = %v, want %v", tc.host, tc.sensor, k, got[k], v)
			}
		}
		for _, k := range tc.absent {
			if _, ok := got[k]; ok {
				t.Errorf("%s %s: has %s", tc.host, tc.sensor, k)
			}
		}
		dev, _ := got["device"].(map[string]any)
		if dev["name"] != tc.host || dev["sw_version"] != "0.3.0" {
			t.Errorf("device block %v", dev)
		}
	}
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
