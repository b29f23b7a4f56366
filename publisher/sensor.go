package publisher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/schema"
)

// Sensor reads one value from the machine. Implementations are created by a
// [Factory] registered under the sensor's name.
//
// Read returns a value that encodes to JSON: a [schema.Quantity] for a
// physical quantity, a number, a boolean, a string, a list or an object. A
// failed read returns an error made with [Intermittent] (worth retrying: a
// checksum failure) or [Persistent] (no such device); an unclassified error
// counts as intermittent. Read should return when ctx is done; a Read that
// does not is abandoned after its timeout and reported as intermittent.
type Sensor interface {
	Title() string
	Read(ctx context.Context) (any, error)
}

// Env is what a Factory gets to build a sensor.
type Env struct {
	// Root is prepended to every file path a sensor reads (/sys, /proc), so
	// tests can point sensors at a fixture tree. Empty means "/".
	Root string
	// Params are the sensor's settings from [sensors.<name>] in the config
	// file, without the keys the publisher itself uses (interval). Read
	// them with Decode, which refuses keys the sensor does not take.
	Params map[string]any
	// decoded, when not nil, records that the factory called Decode: the
	// keys of a sensor that takes none are refused too.
	decoded *bool
	// Version is the apd version, for the version sensor.
	Version string
	// Devices is shared by every sensor built from one configuration, so
	// sensors that read the same device can share one read (a DHT22 gives
	// temperature and humidity together). Nil shares nothing.
	Devices *Devices
}

// Device returns the device shared under key, made by open the first time
// the key is asked for.
func (e Env) Device(key string, open func() any) any {
	if e.Devices == nil {
		return open()
	}
	return e.Devices.get(key, open)
}

// Devices holds the devices sensors share; see [Env.Devices]. The zero
// value is ready to use.
type Devices struct {
	mu sync.Mutex
	m  map[string]any
}

func (d *Devices) get(key string, open func() any) any {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.m[key]; ok {
		return v
	}
	if d.m == nil {
		d.m = map[string]any{}
	}
	v := open()
	d.m[key] = v
	return v
}

// Path returns p under Root.
func (e Env) Path(p string) string {
	if e.Root == "" {
		return p
	}
	return filepath.Join(e.Root, p)
}

// Decode fills the struct v points to from the sensor's parameters, by
// its fields' `toml` tags, strictly: a misspelt key ([sensors.disk_usage]
// pth = "/") is an error naming it, not a setting silently ignored.
// Fields keep their values for keys that are not set, so set defaults
// first. Durations take "30s" or "1d".
func (e Env) Decode(v any) error {
	if e.decoded != nil {
		*e.decoded = true
	}
	return config.DecodeTable(e.Params, v)
}

// WithParams returns e with the parameters of one sensor's table, and a
// check that reports whether the keys were read: a factory that never
// calls Decode takes no parameters, so any key given to it is unknown.
func (e Env) WithParams(params map[string]any) (Env, func() error) {
	decoded := false
	e.Params, e.decoded = params, &decoded
	return e, func() error {
		if decoded || len(params) == 0 {
			return nil
		}
		return config.DecodeTable(params, &struct{}{})
	}
}

// Streamer is implemented by sensors that produce readings on their own
// schedule (a program printing a line per reading) rather than when asked.
// The publisher calls Stream instead of sampling on an interval: Stream
// calls emit for each value or failure until ctx ends. Read is still used
// for one-off samples (apd sensors, --once).
type Streamer interface {
	Stream(ctx context.Context, emit func(value any, err error))
}

// Member is one sensor of a family: a sensor type that stands for as many
// sensors as the machine has devices (one per 1-Wire probe).
type Member struct {
	Name   string
	Sensor Sensor
}

// FamilyFactory finds a family's devices and builds a sensor for each.
// Finding none is not an error: the family has no members.
type FamilyFactory func(env Env) ([]Member, error)

// Factory builds a sensor. It should not fail because the hardware is
// missing: a sensor that can tell implements [Prober], and its Read
// reports missing hardware as a persistent error, for when the sensor is
// configured explicitly.
type Factory func(env Env) (Sensor, error)

// Prober is implemented by sensors that can tell, without reading, whether
// their hardware is on this machine: an IIO device, a 1-Wire bus, a
// battery. A sensor whose Present fails is absent: listed as such (with
// the error as the reason) and not sampled, unless the configuration names
// it, in which case it is sampled and its failures are stored.
//
// Present returns nil when the hardware is there, or an error made with
// [NotPresent] that says what was looked for and where ("no battery under
// /sys/class/power_supply"). It is called once, at start, and must return
// quickly: a look at /sys, not a read of the device. A sensor that is not a
// Prober is always present.
type Prober interface {
	Present() error
}

// Present probes s if it is a [Prober], and reports nil for a sensor that
// is not one.
func Present(s Sensor) error {
	p, ok := s.(Prober)
	if !ok {
		return nil
	}
	return p.Present()
}

// Registry maps sensor names to factories. Its methods are safe for
// concurrent use.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
	families  map[string]FamilyFactory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{factories: map[string]Factory{}, families: map[string]FamilyFactory{}}
}

// ErrUnknownSensor is returned (wrapped) by Registry.New for a name nobody
// registered.
var ErrUnknownSensor = errors.New("unknown sensor")

// Register adds a factory under name. Like database/sql's Register, it
// panics if the name is invalid or taken: both are programming errors found
// the first time the binary starts.
func (r *Registry) Register(name string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.claim(name)
	r.factories[name] = f
}

// RegisterFamily adds a family of sensors under name; it panics like
// Register. Selecting the name selects every member.
func (r *Registry) RegisterFamily(name string, f FamilyFactory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.claim(name)
	r.families[name] = f
}

// claim checks that name is valid and free; r.mu is held.
func (r *Registry) claim(name string) {
	if err := schema.ValidateName(name); err != nil {
		panic(fmt.Sprintf("publisher: register sensor: %v", err))
	}
	_, dup := r.factories[name]
	_, dupFamily := r.families[name]
	if dup || dupFamily {
		panic("publisher: sensor registered twice: " + name)
	}
}

// Names returns the registered names of sensors and families, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories)+len(r.families))
	for n := range r.factories {
		names = append(names, n)
	}
	for n := range r.families {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Has reports whether name is registered, as a sensor or a family.
func (r *Registry) Has(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.factories[name]
	_, family := r.families[name]
	return ok || family
}

// IsFamily reports whether name is a registered family.
func (r *Registry) IsFamily(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.families[name]
	return ok
}

// Expand builds the sensors a name stands for: the one sensor registered
// under it, or every member of the family registered under it.
func (r *Registry) Expand(name string, env Env) ([]Member, error) {
	r.mu.RLock()
	fam, ok := r.families[name]
	r.mu.RUnlock()
	if !ok {
		s, err := r.New(name, env)
		if err != nil {
			return nil, err
		}
		return []Member{{Name: name, Sensor: s}}, nil
	}
	members, err := fam(env)
	if err != nil {
		return nil, fmt.Errorf("sensor family %s: %w", name, err)
	}
	for _, m := range members {
		if err := schema.ValidateName(m.Name); err != nil {
			return nil, fmt.Errorf("sensor family %s: %w", name, err)
		}
	}
	return members, nil
}

// New builds the sensor registered under name.
func (r *Registry) New(name string, env Env) (Sensor, error) {
	r.mu.RLock()
	f, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownSensor, name, strings.Join(r.Names(), ", "))
	}
	s, err := f(env)
	if err != nil {
		return nil, fmt.Errorf("sensor %s: %w", name, err)
	}
	return s, nil
}

// builtins is the registry that sensor packages add themselves to from
// init, the way database/sql drivers do. It is the one package-level
// registry: init functions have nowhere else to register.
var builtins = NewRegistry()

// Register adds a sensor to the default registry. Call it from the init
// function of a sensor package; a custom apd-publish build imports the
// package for its side effect.
func Register(name string, f Factory) { builtins.Register(name, f) }

// RegisterFamily adds a family of sensors to the default registry, from an
// init function like Register.
func RegisterFamily(name string, f FamilyFactory) { builtins.RegisterFamily(name, f) }

// DefaultRegistry returns the registry that Register fills.
func DefaultRegistry() *Registry { return builtins }

// SensorError carries the kind of a failed read.
type SensorError struct {
	Kind schema.ErrorKind
	Err  error
}

func (e *SensorError) Error() string { return e.Err.Error() }
func (e *SensorError) Unwrap() error { return e.Err }

// Intermittent marks err as worth retrying.
func Intermittent(err error) error {
	return &SensorError{Kind: schema.Intermittent, Err: err}
}

// Persistent marks err as not worth retrying: the hardware is absent or
// misconfigured.
func Persistent(err error) error {
	return &SensorError{Kind: schema.Persistent, Err: err}
}

// ErrNotPresent is the error of a sensor whose hardware this machine does
// not have; KindOf reports it as persistent.
var ErrNotPresent = errors.New("not present on this machine")

// NotPresent returns an error that is [ErrNotPresent] and reads as the
// reason alone ("no battery under /sys/class/power_supply"), for
// [Prober.Present] and for reads of missing hardware.
func NotPresent(format string, args ...any) error {
	return notPresent{reason: fmt.Sprintf(format, args...)}
}

type notPresent struct{ reason string }

func (e notPresent) Error() string      { return e.reason }
func (notPresent) Is(target error) bool { return target == ErrNotPresent }

// KindOf classifies a read error: the kind it was marked with, persistent
// for missing hardware or files, intermittent otherwise.
func KindOf(err error) schema.ErrorKind {
	var se *SensorError
	if errors.As(err, &se) {
		return se.Kind
	}
	if errors.Is(err, ErrNotPresent) || errors.Is(err, fs.ErrNotExist) {
		return schema.Persistent
	}
	return schema.Intermittent
}
