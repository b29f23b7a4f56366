package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"

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

// Formatter is implemented by sensors whose value needs a format of its
// own. Without it, [schema.Format] formats the value.
type Formatter interface {
	Format(value json.RawMessage) string
}

// Env is what a Factory gets to build a sensor.
type Env struct {
	// Root is prepended to every file path a sensor reads (/sys, /proc), so
	// tests can point sensors at a fixture tree. Empty means "/".
	Root string
	// Params are the sensor's settings from [sensors.<name>] in the config
	// file, without the keys the publisher itself uses (interval).
	Params map[string]any
	// Version is the apd version, for the version sensor.
	Version string
}

// Path returns p under Root.
func (e Env) Path(p string) string {
	if e.Root == "" {
		return p
	}
	return filepath.Join(e.Root, p)
}

// String returns the string parameter key, or def when it is not set.
func (e Env) String(key, def string) string {
	if v, ok := e.Params[key].(string); ok && v != "" {
		return v
	}
	return def
}

// Factory builds a sensor. It should not fail because the hardware is
// missing: the sensor's Read reports that as a persistent error, so users
// see it rather than a silently absent sensor.
type Factory func(env Env) (Sensor, error)

// Registry maps sensor names to factories. Its methods are safe for
// concurrent use.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// ErrUnknownSensor is returned (wrapped) by Registry.New for a name nobody
// registered.
var ErrUnknownSensor = errors.New("unknown sensor")

// Register adds a factory under name. Like database/sql's Register, it
// panics if the name is invalid or taken: both are programming errors found
// the first time the binary starts.
func (r *Registry) Register(name string, f Factory) {
	if err := schema.ValidateName(name); err != nil {
		panic(fmt.Sprintf("publisher: register sensor: %v", err))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.factories[name]; dup {
		panic("publisher: sensor registered twice: " + name)
	}
	r.factories[name] = f
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
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
