// Package demo is apd demo's simulated fleet: a dozen hosts in one city
// (the rooms of a house, an allotment with a greenhouse and a shed, a
// workshop, a few servers) with names, colours and locations; a model of
// their readings with daily cycles, weather and noise; a week of that
// history written to a store; and devices that publish the same model
// live over MQTT, as apd-publish would.
//
// Everything follows from a seed: the same seed and timestamp give the
// same reading, so the README's examples and screenshots can be made
// again.
package demo

import (
	"math"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// DefaultSeed is the seed of the README's examples and screenshots.
const DefaultSeed = 1

// Sensors of the fleet.
const (
	Temperature = "temperature"
	Humidity    = "relative_humidity"
	CPULoad     = "cpu_load"
	RAM         = "ram_available"
	Energy      = "energy"
)

// The story the history tells.
const (
	// OfflineHost lost its power this long before the history ends: its
	// readings stop there and its status is lost.
	OfflineHost = "studio"
	OfflineAgo  = 5 * time.Hour
	// FailingHost's DHT22 hangs on a long cable: some of its reads fail
	// with an intermittent error, more of them in bad spells.
	FailingHost = "shed"
	// RuleName is the demo's rule: the greenhouse below 5 °C for ten
	// minutes (without the wait, noise around 5 °C would flap it).
	RuleName = "greenhouse-cold"
	RuleHost = "greenhouse"
)

// Rules is the demo's rules configuration, in the form of apd serve's
// config file.
const Rules = `# apd demo's rules: the same [[rules]] apd serve reads from its config file.
[[rules]]
name = "` + RuleName + `"
sensor = "temperature"
hosts = ["` + RuleHost + `"]
when = "value < 5"
for = "10m"
on_change = true
actions = ["log", "publish"]
`

// kind is what a host is, which decides how its readings behave.
type kind int

const (
	room       kind = iota // a heated room of the house
	attic                  // under the roof: follows the weather
	greenhouse             // the sun heats it by day; nights are cold
	shed                   // unheated, sheltered
	outdoor                // a weather station
	workshop               // heated in working hours on weekdays
	nas                    // a home server with a nightly backup
	web                    // a web server with evening traffic
	build                  // a build server busy in working hours
)

// Host is one simulated device.
type Host struct {
	Name    string
	Meta    store.HostMeta
	Sensors []string
	kind    kind
	// base is a room's heated temperature, °C.
	base float64
	// ram is the device's memory in bytes.
	ram float64
}

// Fleet is the demo's hosts and their model.
type Fleet struct {
	Seed  uint64
	Hosts []*Host
}

// lon is the city's longitude, for the sun's time.
const lon = 4.9

var (
	climate = []string{Temperature, Humidity, CPULoad, RAM}
	server  = []string{CPULoad, RAM}
)

const (
	gib = 1 << 30
	mib = 1 << 20
)

func at(lat, lon float64) *store.Location { return &store.Location{Lat: lat, Lon: lon} }

// New returns the fleet of seed.
func New(seed uint64) *Fleet {
	pi := 1.0 * gib // a Raspberry Pi 3's memory
	return &Fleet{Seed: seed, Hosts: []*Host{
		{Name: "kitchen", Meta: store.HostMeta{Display: "Kitchen", Colour: "#e6550d", Location: at(52.36012, 4.92611)}, Sensors: climate, kind: room, base: 20.5, ram: pi},
		{Name: "living-room", Meta: store.HostMeta{Display: "Living room", Colour: "#3182bd", Location: at(52.36020, 4.92630)}, Sensors: climate, kind: room, base: 21, ram: pi},
		{Name: "bedroom", Meta: store.HostMeta{Display: "Bedroom", Colour: "#756bb1", Location: at(52.36028, 4.92598)}, Sensors: climate, kind: room, base: 18.5, ram: pi},
		{Name: "bathroom", Meta: store.HostMeta{Display: "Bathroom", Colour: "#17becf", Location: at(52.36004, 4.92590)}, Sensors: climate, kind: room, base: 21.5, ram: pi},
		{Name: "attic", Meta: store.HostMeta{Display: "Attic", Colour: "#8c564b", Location: at(52.36016, 4.92620)}, Sensors: climate, kind: attic, ram: pi},
		{Name: "greenhouse", Meta: store.HostMeta{Display: "Greenhouse", Colour: "#31a354", Location: at(52.39210, 4.92480)}, Sensors: climate, kind: greenhouse, ram: pi},
		{Name: "shed", Meta: store.HostMeta{Display: "Shed", Colour: "#bcbd22", Location: at(52.39245, 4.92530)}, Sensors: climate, kind: shed, ram: pi},
		{Name: "garden", Meta: store.HostMeta{Display: "Garden", Colour: "#e377c2", Location: at(52.39190, 4.92390)}, Sensors: climate, kind: outdoor, ram: pi},
		{Name: "studio", Meta: store.HostMeta{Display: "Studio", Colour: "#d62728", Location: at(52.37650, 4.86950)}, Sensors: climate, kind: workshop, base: 19, ram: pi},
		{Name: "nas", Meta: store.HostMeta{Display: "NAS", Colour: "#636363", Location: at(52.36000, 4.92640)}, Sensors: []string{CPULoad, RAM, Energy}, kind: nas, ram: 8 * gib},
		{Name: "web-1", Meta: store.HostMeta{Display: "Web server", Colour: "#9467bd", Location: at(52.35600, 4.95550)}, Sensors: server, kind: web, ram: 4 * gib},
		{Name: "build-1", Meta: store.HostMeta{Display: "Build server", Colour: "#ff7f0e", Location: at(52.35620, 4.95510)}, Sensors: server, kind: build, ram: 16 * gib},
	}}
}

// Host returns the host called name, or nil.
func (f *Fleet) Host(name string) *Host {
	for _, h := range f.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// titles are the titles apd-publish's sensors give their readings.
var titles = map[string]string{
	Temperature: "Ambient Temperature",
	Humidity:    "Relative Humidity",
	CPULoad:     "CPU Usage",
	RAM:         "RAM Available",
	Energy:      "Energy",
}

// Reading returns what host h's sensor reads at t: a quantity, or for
// the failing sensor sometimes an intermittent error. Seq and Human are
// left empty: the live devices add them; the history goes without, as a
// logger's import does (readers format the value), which halves the
// time it takes to write.
func (f *Fleet) Reading(h *Host, sensor string, t time.Time) schema.Reading {
	t = t.UTC().Truncate(time.Millisecond)
	r := schema.Reading{Host: h.Name, Sensor: sensor, Title: titles[sensor], Time: t}
	if h.Name == FailingHost && (sensor == Temperature || sensor == Humidity) && f.failing(h, t) {
		r.Error = &schema.SampleError{Kind: schema.Intermittent, Message: "read DHT22: checksum mismatch"}
		return r
	}
	var q schema.Quantity
	switch sensor {
	case Temperature:
		q = schema.Quantity{Magnitude: round(f.temperature(h, t), 0.1), Unit: schema.UnitCelsius}
	case Humidity:
		q = schema.Quantity{Magnitude: round(clamp(f.humidity(h, t), 0, 100), 0.1), Unit: schema.UnitPercent}
	case CPULoad:
		q = schema.Quantity{Magnitude: round(clamp(f.cpu(h, t), 0, 1), 0.001), Unit: schema.UnitRatio}
	case RAM:
		q = schema.Quantity{Magnitude: round(clamp(f.ram(h, t), 0, h.ram), 4096), Unit: schema.UnitBytes}
	case Energy:
		q = schema.Quantity{Magnitude: round(f.energy(t), 0.1), Unit: schema.UnitWattHour}
	}
	r.Value = q.Raw()
	return r
}

// failing decides whether the shed's DHT22 fails at t: now and then,
// and often during bad spells of a few hours (damp, a loose contact).
func (f *Fleet) failing(h *Host, t time.Time) bool {
	spell := wander(key(f.Seed, h.Name, "spell"), t, 3*time.Hour)
	p := 0.03
	if spell > 0.55 {
		p = 0.5
	}
	return unit(key(f.Seed, h.Name, "fail"), t.UnixMilli()/1000) < p
}

// outdoor is the air temperature of the city at t: a daily cycle over
// weather that changes from day to day, clouds damping the cycle.
func (f *Fleet) outdoor(t time.Time) float64 {
	hr := solarHour(t, lon)
	clouds := f.clouds(t)
	return 8 + 3*wander(key(f.Seed, "weather"), t, 24*time.Hour) +
		5*(1-0.5*clouds)*diurnal(hr) + 0.5*wander(key(f.Seed, "gusts"), t, 40*time.Minute)
}

// clouds is the cloud cover at t in [0, 1].
func (f *Fleet) clouds(t time.Time) float64 {
	return 0.5 + 0.5*wander(key(f.Seed, "clouds"), t, 18*time.Hour)
}

// heating is 1 while the house's heating runs (06:30–22:30).
func heating(hr float64) float64 { return between(hr, 6.5, 22.5) }

func (f *Fleet) temperature(h *Host, t time.Time) float64 {
	hr := solarHour(t, lon)
	out := f.outdoor(t)
	drift := wander(key(f.Seed, h.Name, "drift"), t, 90*time.Minute)
	white := 0.05 * gauss(key(f.Seed, h.Name, "t-noise"), t.UnixMilli()/1000)
	var v float64
	switch h.kind {
	case room:
		v = h.base - 1.5*(1-heating(hr)) + 0.08*(out-8) + 0.3*drift
		if h.Name == "kitchen" { // cooking
			v += 1.6*bump(hr, 18.5, 0.5) + 0.6*bump(hr, 7.5, 0.3) + 0.5*bump(hr, 12.5, 0.3)
		}
	case attic:
		v = 13 + 0.5*(out-8) + 3*(1-0.6*f.clouds(t))*sun(hr-1) + 0.4*drift
	case greenhouse:
		v = out + 1.5 + 14*(1-0.7*f.clouds(t))*sun(hr) + 0.4*drift
	case shed:
		v = 0.75*out + 2.5 + 1.5*sun(hr-1) + 0.3*drift
	case outdoor:
		v = out
	case workshop:
		open := between(hr, 8, 18)
		if wd := weekday(t, lon); wd == time.Saturday || wd == time.Sunday {
			open = 0
		}
		v = 13 + 0.2*(out-8) + (h.base-13)*open + 0.3*drift
	}
	return v + white
}

func (f *Fleet) humidity(h *Host, t time.Time) float64 {
	hr := solarHour(t, lon)
	out := f.outdoor(t)
	days := wander(key(f.Seed, "damp"), t, 24*time.Hour)
	white := 0.4 * gauss(key(f.Seed, h.Name, "h-noise"), t.UnixMilli()/1000)
	outRH := 76 - 14*diurnal(hr) + 8*days + 6*f.clouds(t)
	var v float64
	switch h.kind {
	case room, workshop:
		v = 47 + 4*days - 0.15*(out-8) + 1.5*wander(key(f.Seed, h.Name, "h-drift"), t, 2*time.Hour)
		switch h.Name {
		case "bathroom": // the morning shower, and some evenings a bath
			v += 32 * math.Exp(-math.Max(0, hr-7.2)/0.6) * between(hr, 7, 24)
			if unit(key(f.Seed, "bath"), solarDay(t, lon)) < 0.4 {
				v += 25 * math.Exp(-math.Max(0, hr-21.5)/0.5) * between(hr, 21.3, 24)
			}
		case "kitchen":
			v += 8*bump(hr, 18.5, 0.5) + 4*bump(hr, 7.5, 0.3)
		}
	case attic:
		v = 0.6*outRH + 10 - 8*sun(hr-1)
	case greenhouse:
		v = outRH + 10 - 30*(1-0.7*f.clouds(t))*sun(hr)
	case shed:
		v = 0.8*outRH + 14
	case outdoor:
		v = outRH
	default:
		v = 45
	}
	return v + white
}

func (f *Fleet) cpu(h *Host, t time.Time) float64 {
	hr := solarHour(t, lon)
	k := key(f.Seed, h.Name, "cpu")
	s := t.UnixMilli() / 1000
	noise := math.Abs(gauss(k, s))
	switch h.kind {
	case nas:
		return 0.03 + 0.02*noise + 0.55*between(hr, 2, 3)
	case web:
		traffic := 0.5 + 0.5*math.Cos(2*math.Pi*(hr-20.5)/24)
		return 0.1 + 0.3*traffic + 0.04*noise
	case build:
		return 0.02 + 0.02*noise + 0.85*f.building(h, t)
	}
	v := 0.04 + 0.025*noise
	if unit(mix(k), s) < 0.01 { // apt, a cron job
		v += 0.3
	}
	return v
}

// building is 1 while the build server runs a job: a nightly build, and
// in working hours on weekdays, jobs in about half the quarter hours.
func (f *Fleet) building(h *Host, t time.Time) float64 {
	hr := solarHour(t, lon)
	if between(hr, 1, 1.7) > 0.5 {
		return 1
	}
	wd := weekday(t, lon)
	if wd == time.Saturday || wd == time.Sunday || hr < 9 || hr >= 18.5 {
		return 0
	}
	if unit(key(f.Seed, h.Name, "jobs"), t.UnixMilli()/int64(15*time.Minute/time.Millisecond)) < 0.5 {
		return 1
	}
	return 0
}

func (f *Fleet) ram(h *Host, t time.Time) float64 {
	noise := wander(key(f.Seed, h.Name, "ram"), t, 20*time.Minute)
	load := f.cpu(h, t)
	switch h.kind {
	case nas:
		return 5.6*gib - 2*gib*between(solarHour(t, lon), 2, 3) + 0.1*gib*noise
	case web:
		return 2.6*gib - 1.4*gib*load + 0.05*gib*noise
	case build:
		return 13.5*gib - 10*gib*f.building(h, t) + 0.2*gib*noise
	}
	return 640*mib - 80*mib*load + 12*mib*noise
}

// energy is the NAS's smart plug: a Wh counter since the start of 2025,
// 30 W on average and 18 W more during the nightly backup.
func (f *Fleet) energy(t time.Time) float64 {
	origin := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	hours := t.Sub(origin).Hours()
	days := solarDay(t, lon) - solarDay(origin, lon)
	backup := float64(days) + clamp(solarHour(t, lon)-2, 0, 1)
	return 120000 + 30*hours + 18*backup
}
