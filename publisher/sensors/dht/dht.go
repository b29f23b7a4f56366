// Package dht provides the temperature and relative_humidity sensors of a
// DHT22 (AM2302) or DHT11 read through the Linux kernel's IIO driver
// (dtoverlay=dht11,gpiopin=N), from in_temp_input and
// in_humidityrelative_input in milli-units.
//
// The sensor answers at most every two seconds and its driver often fails
// a read with EIO or ETIMEDOUT (a missed edge, a bad checksum). Both
// sensors share one device: one read serves both within a tick, a retry
// waits out the sensor's pause, and those errors count as intermittent.
// Values outside the sensor's physical range are errors, never readings.
//
// Parameters, in [sensors.temperature] or [sensors.relative_humidity]
// (one device serves both, so a setting in either table applies to both):
//
//	iio_device = "/sys/bus/iio/devices/iio:device0"  # default: found by name
//	model = "dht22"                                   # or "dht11": the valid ranges
package dht

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func init() {
	publisher.Register("temperature", func(env publisher.Env) (publisher.Sensor, error) {
		return newSensor(env, temperature)
	})
	publisher.Register("relative_humidity", func(env publisher.Env) (publisher.Sensor, error) {
		return newSensor(env, humidity)
	})
}

// MinGap is the shortest time between two reads the sensor tolerates.
const MinGap = 2 * time.Second

// quantity is one of the two things the device measures.
type quantity struct {
	file  string
	title string
	unit  string
}

var (
	temperature = quantity{"in_temp_input", "Ambient Temperature", schema.UnitCelsius}
	humidity    = quantity{"in_humidityrelative_input", "Relative Humidity", schema.UnitPercent}
)

// Range is the interval of values a model can measure.
type Range struct{ Min, Max float64 }

// Model is the measuring range of a sensor model.
type Model struct {
	Temperature, Humidity Range
}

// Models by the name of the model parameter.
var Models = map[string]Model{
	"dht22": {Temperature: Range{-40, 80}, Humidity: Range{0, 100}},
	"dht11": {Temperature: Range{0, 50}, Humidity: Range{20, 90}},
}

// Sensor is one quantity of a shared Device.
type Sensor struct {
	dev *Device
	q   quantity
}

func newSensor(env publisher.Env, q quantity) (publisher.Sensor, error) {
	dev := env.Device("dht", func() any {
		return &Device{Search: env.Path("/sys/bus/iio/devices"), Model: Models["dht22"], sem: make(chan struct{}, 1)}
	}).(*Device)
	var p struct {
		IIODevice string `toml:"iio_device"`
		Model     string `toml:"model"` // dht22 (default) or dht11
	}
	if err := env.Decode(&p); err != nil {
		return nil, err
	}
	if dir := p.IIODevice; dir != "" {
		if dev.Dir != "" && dev.Dir != dir {
			return nil, fmt.Errorf("iio_device: %s and %s; temperature and relative_humidity come from one device", dev.Dir, dir)
		}
		dev.Dir = dir
	}
	if name := p.Model; name != "" {
		m, ok := Models[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("model %q: want dht22 or dht11", name)
		}
		dev.Model = m
	}
	return Sensor{dev: dev, q: q}, nil
}

// Title implements publisher.Sensor.
func (s Sensor) Title() string { return s.q.title }

// Present implements publisher.Prober: the DHT's IIO device is there.
func (s Sensor) Present() error {
	_, err := s.dev.dir()
	return err
}

// Read implements publisher.Sensor.
func (s Sensor) Read(ctx context.Context) (any, error) {
	v, err := s.dev.Read(ctx, s.q.file)
	if err != nil {
		return nil, err
	}
	r := s.dev.Model.Temperature
	if s.q == humidity {
		r = s.dev.Model.Humidity
	}
	if v < r.Min || v > r.Max {
		return nil, publisher.Intermittent(fmt.Errorf("%s %.1f is outside the sensor's range [%g, %g]", strings.ToLower(s.q.title), v, r.Min, r.Max))
	}
	return schema.Quantity{Magnitude: v, Unit: s.q.unit}, nil
}

// Device is one DHT sensor behind the IIO driver. Its methods are safe for
// concurrent use.
type Device struct {
	// Dir is the device's directory; empty means the first device under
	// Search whose name starts with "dht".
	Dir    string
	Search string
	Model  Model
	// ReadFile reads one attribute; nil means os.ReadFile. Tests use it to
	// fail reads the way the driver does.
	ReadFile func(path string) ([]byte, error)

	sem     chan struct{} // one read round at a time, abandoned on ctx
	last    time.Time     // start of the last read round
	results map[string]result
}

type result struct {
	v   float64
	err error
}

// Read returns the attribute file in units (the driver gives milli-units).
// A fresh round reads both attributes; a round younger than MinGap is
// served from memory when it succeeded, and waited out when it failed.
func (d *Device) Read(ctx context.Context, file string) (float64, error) {
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-d.sem }()
	if r, ok := d.results[file]; ok && r.err == nil && time.Since(d.last) < MinGap {
		return r.v, nil
	}
	if wait := MinGap - time.Since(d.last); !d.last.IsZero() && wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		}
	}
	dir, err := d.dir()
	if err != nil {
		return 0, err
	}
	d.last = time.Now()
	d.results = map[string]result{}
	for _, f := range []string{temperature.file, humidity.file} {
		v, err := d.readAttr(filepath.Join(dir, f))
		d.results[f] = result{v, err}
	}
	r := d.results[file]
	return r.v, r.err
}

func (d *Device) dir() (string, error) {
	if d.Dir != "" {
		if _, err := os.Stat(d.Dir); err != nil {
			return "", publisher.NotPresent("no IIO device %s (iio_device)", d.Dir)
		}
		return d.Dir, nil
	}
	devs, _ := filepath.Glob(filepath.Join(d.Search, "iio:device*"))
	sort.Strings(devs)
	for _, dev := range devs {
		name, _ := os.ReadFile(filepath.Join(dev, "name"))
		if strings.HasPrefix(strings.TrimSpace(string(name)), "dht") {
			return dev, nil
		}
	}
	return "", publisher.NotPresent("no DHT11/DHT22 IIO device under %s (dtoverlay=dht11,gpiopin=N)", d.Search)
}

func (d *Device) readAttr(path string) (float64, error) {
	read := d.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	b, err := read(path)
	switch {
	case errors.Is(err, syscall.EIO), errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EAGAIN):
		// What the driver says when the sensor did not answer cleanly.
		return 0, publisher.Intermittent(fmt.Errorf("read %s: %w", filepath.Base(path), err))
	case err != nil:
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	text := strings.TrimSpace(string(b))
	milli, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, publisher.Intermittent(fmt.Errorf("%s: not a number: %q", filepath.Base(path), text))
	}
	return float64(milli) / 1000, nil
}
