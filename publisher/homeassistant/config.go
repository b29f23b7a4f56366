package homeassistant

import (
	"encoding/json"
	"strings"

	"github.com/apd-telemetry/apd/schema"
)

// The Home Assistant platforms apd announces its entities as.
const (
	ComponentSensor       = "sensor"
	ComponentBinarySensor = "binary_sensor"
)

// PayloadOn and PayloadOff are what a boolean value renders as through
// the value template "{{ value_json.value }}": Home Assistant parses the
// state message with json.loads, so a JSON true is Python's True, and
// renders MQTT value templates to a string (str(True) is "True").
const (
	PayloadOn  = "True"
	PayloadOff = "False"
)

// Origin names: they tell a config the device published from one the
// server published for the same device (rule outcomes), so that neither
// removes the other's.
const (
	OriginDevice = "apd-publish"
	OriginServer = "apd"
)

// An Entity is one discovery config: the platform it is announced as and
// its JSON payload, retained at Topic(prefix, Component, host, name).
type Entity struct {
	Component string
	Payload   []byte
}

// Topic is the discovery topic of host's entity name as component:
// <prefix>/<component>/<host>/<name>/config, the host and name made ids
// Home Assistant accepts there (no dots).
func Topic(prefix, component, host, name string) string {
	return prefix + "/" + component + "/" + schema.DiscoveryID(host) + "/" + schema.DiscoveryID(name) + "/config"
}

// DeviceIdentifier is the identifier of host's device in Home Assistant,
// shared by the configs apd-publish and the server publish so that rule
// outcomes land on the device of the host's sensors.
func DeviceIdentifier(host string) string { return "apd_" + schema.DiscoveryID(host) }

// UniqueID is the unique_id of host's entity name.
func UniqueID(host, name string) string {
	return "apd_" + schema.DiscoveryID(host) + "_" + schema.DiscoveryID(name)
}

// DefaultEntityID is the entity id Home Assistant gives host's entity name
// when it first sees it (it keeps the unique_id's entity after that):
// <component>.<host>_<name> in the characters entity ids allow (lower
// case letters, digits, single underscores), so pi-kitchen's
// ac_connected is binary_sensor.pi_kitchen_ac_connected.
func DefaultEntityID(component, host, name string) string {
	return component + "." + slug(host+"_"+name)
}

func slug(s string) string {
	var b strings.Builder
	under := true // no leading underscore
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			under = false
		} else if !under {
			b.WriteByte('_')
			under = true
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}

// unit is how Home Assistant shows one of apd's units.
type unit struct {
	symbol      string
	deviceClass string
	total       bool   // a counter that only grows (energy)
	scale       string // arithmetic on the magnitude in the value template (" * 100"); empty for none
	precision   int    // suggested_display_precision; -1 leaves it to Home Assistant
}

// units maps apd's units to Home Assistant's. The MQTT sensor refuses a
// unit its device class does not allow, so every pair here is one Home
// Assistant lists for that class. Bytes are announced in GiB, scaled by
// the value template: Home Assistant's MQTT sensor has no
// suggested_unit_of_measurement (its discovery schema drops the key), and
// 716476416 B is no way to show RAM; data_size still lets a user pick MiB
// or GB in the entity's settings.
var units = map[string]unit{
	schema.UnitCelsius:     {"°C", "temperature", false, "", 1},
	schema.UnitFahrenheit:  {"°F", "temperature", false, "", 1},
	schema.UnitKelvin:      {"K", "temperature", false, "", 1},
	schema.UnitPercent:     {"%", "", false, "", 1},
	schema.UnitRatio:       {"%", "", false, " * 100", 1},
	schema.UnitBytes:       {"GiB", "data_size", false, " / 1073741824", 2},
	schema.UnitWatt:        {"W", "power", false, "", -1},
	"Wh":                   {"Wh", "energy", true, "", -1},
	schema.UnitJoule:       {"J", "energy", true, "", -1},
	schema.UnitVolt:        {"V", "voltage", false, "", -1},
	schema.UnitAmpere:      {"A", "current", false, "", -1},
	schema.UnitPascal:      {"Pa", "pressure", false, "", -1},
	schema.UnitHectopascal: {"hPa", "pressure", false, "", 1},
	schema.UnitLux:         {"lx", "illuminance", false, "", 0},
	"ppm":                  {"ppm", "", false, "", 0},
	schema.UnitSecond:      {"s", "duration", false, "", 0},
	schema.UnitDegree:      {"°", "", false, "", -1},
}

// diagnostic are the built-in sensors that describe the machine apd-publish
// runs on rather than what it measures around it: Home Assistant files
// them under the device's Diagnostic section and leaves them off
// generated dashboards. ac_connected stays a primary entity: mains power
// lost is news about the house, not about the computer.
var diagnostic = map[string]bool{
	"version":         true,
	"ip_addresses":    true,
	"uptime":          true,
	"cpu_load":        true,
	"cpu_temperature": true,
	"ram_available":   true,
	"load_average":    true,
	"disk_usage":      true,
}

// Diagnostic reports whether sensor is announced with entity_category
// diagnostic.
func Diagnostic(sensor string) bool { return diagnostic[sensor] }

// orNone ends a value template: a failed reading has no value, and None
// makes Home Assistant show "unknown" (for a binary sensor too: "None" is
// its PAYLOAD_NONE) rather than log a template error.
const orNone = " if value_json.value is defined else None }}"

// BoolTemplate is the value template of a boolean reading; it renders
// PayloadOn or PayloadOff.
const BoolTemplate = "{{ value_json.value" + orNone

// Sensor returns the config of a device's sensor whose value looks like
// value: a binary_sensor for a boolean, a sensor for anything else. It
// depends on nothing but its arguments, so announcing the same shape again
// gives the same bytes.
func Sensor(host, sensor, title string, value json.RawMessage, topics schema.Topics, version string) Entity {
	component := ComponentSensor
	if isBool(value) {
		component = ComponentBinarySensor
	}
	cfg := common(component, host, sensor, title, topics)
	cfg["availability_topic"] = topics.Status(host)
	cfg["availability_template"] = "{{ 'online' if value_json.state == 'online' else 'offline' }}"
	cfg["payload_available"] = "online"
	cfg["payload_not_available"] = "offline"
	cfg["device"] = map[string]any{
		"identifiers":  []string{DeviceIdentifier(host)},
		"name":         host,
		"manufacturer": "apd",
		"model":        "apd-publish",
		"sw_version":   version,
	}
	cfg["origin"] = map[string]any{"name": OriginDevice, "sw_version": version}
	if Diagnostic(sensor) {
		cfg["entity_category"] = "diagnostic"
	}
	if component == ComponentBinarySensor {
		boolConfig(cfg)
		return Entity{Component: component, Payload: marshal(cfg)}
	}
	if q, ok := schema.ParseQuantity(value); ok {
		u, known := units[q.Unit]
		if !known {
			u = unit{symbol: q.Unit, precision: -1}
		}
		cfg["value_template"] = "{{ value_json.value.magnitude" + u.scale + orNone
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
		if u.precision >= 0 {
			cfg["suggested_display_precision"] = u.precision
		}
	} else if isNumber(value) {
		cfg["value_template"] = "{{ value_json.value" + orNone
		cfg["state_class"] = "measurement"
		if sensor == "load_average" {
			cfg["suggested_display_precision"] = 2
		}
	} else {
		// Anything else shows as its human form; Home Assistant keeps at
		// most 255 characters of a state.
		cfg["value_template"] = "{{ value_json.human[:255] if value_json.human is defined else None }}"
	}
	return Entity{Component: component, Payload: marshal(cfg)}
}

// Rule returns the config of a rule's outcomes on host: a binary_sensor
// reading apd/<host>/<rule>, on host's device. It names the device by its
// identifier only (and its name, should the rule's config arrive first),
// so it never overwrites what apd-publish says of the device. It has no
// availability: a rule on a host's silence fires exactly when the host
// is gone, and must not turn unavailable then.
func Rule(host, rule string, topics schema.Topics, version string) Entity {
	cfg := common(ComponentBinarySensor, host, rule, rule, topics)
	cfg["device"] = map[string]any{"identifiers": []string{DeviceIdentifier(host)}, "name": host}
	cfg["origin"] = map[string]any{"name": OriginServer, "sw_version": version}
	boolConfig(cfg)
	return Entity{Component: ComponentBinarySensor, Payload: marshal(cfg)}
}

// common is what every config has.
func common(component, host, name, title string, topics schema.Topics) map[string]any {
	return map[string]any{
		"name":              title,
		"unique_id":         UniqueID(host, name),
		"default_entity_id": DefaultEntityID(component, host, name),
		"state_topic":       topics.Reading(host, name),
	}
}

func boolConfig(cfg map[string]any) {
	cfg["value_template"] = BoolTemplate
	cfg["payload_on"] = PayloadOn
	cfg["payload_off"] = PayloadOff
}

// Origin returns the origin name of a config payload, "" if it has none.
func Origin(payload []byte) string {
	var cfg struct {
		Origin struct {
			Name string `json:"name"`
		} `json:"origin"`
		O struct {
			Name string `json:"name"`
		} `json:"o"`
	}
	if json.Unmarshal(payload, &cfg) != nil {
		return ""
	}
	if cfg.Origin.Name != "" {
		return cfg.Origin.Name
	}
	return cfg.O.Name
}

func marshal(cfg map[string]any) []byte {
	b, err := json.Marshal(cfg)
	if err != nil {
		panic("homeassistant: config of plain values does not marshal: " + err.Error())
	}
	return b
}

func isBool(v json.RawMessage) bool {
	s := strings.TrimSpace(string(v))
	return s == "true" || s == "false"
}

func isNumber(v json.RawMessage) bool {
	var f float64
	return json.Unmarshal(v, &f) == nil
}
