// Package config loads apd's TOML configuration and resolves command-line
// flags from it and from the environment.
//
// Precedence, lowest first: built-in defaults, the config file, environment
// variables APD_<SECTION>_<KEY>, flags. A flag takes part when its kong tag
// names its key: `config:"publisher.interval"` is read from [publisher]
// interval in the file and from APD_PUBLISHER_INTERVAL.
package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/alecthomas/kong"
)

// ErrBadConfig is wrapped by every error about the configuration's content.
var ErrBadConfig = errors.New("bad configuration")

// File is a loaded configuration file.
type File struct {
	Path string
	tree map[string]any
}

// SensorTables holds the [sensors.<name>] tables; these are not flags.
type SensorTables map[string]map[string]any

// sectionsWithoutFlags are top-level tables read by code, not by flags.
var sectionsWithoutFlags = map[string]bool{"sensors": true, "rules": true}

// Load reads and parses path. A missing or unparsable file is an error
// wrapping ErrBadConfig that names the file and, for syntax errors, the line.
func Load(path string) (*File, error) {
	f := &File{Path: path, tree: map[string]any{}}
	if path == "" {
		return f, nil
	}
	if _, err := toml.DecodeFile(path, &f.tree); err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("%w: %s line %d: %s", ErrBadConfig, path, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	return f, nil
}

// lookup returns the value at a dotted key ("publisher.interval").
func (f *File) lookup(key string) (any, bool) {
	var cur any = f.tree
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Sensors returns the [sensors.<name>] tables.
func (f *File) Sensors() (SensorTables, error) {
	out := SensorTables{}
	raw, ok := f.tree["sensors"]
	if !ok {
		return out, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: sensors must be a table", ErrBadConfig, f.Path)
	}
	for name, v := range m {
		if name == "exec" {
			continue // [[sensors.exec]]: external-program sensors, see ExecSensors
		}
		t, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s: sensors.%s must be a table", ErrBadConfig, f.Path, name)
		}
		out[name] = t
	}
	return out, nil
}

// ExecSensors returns the [[sensors.exec]] tables of external-program
// sensors, in file order.
func (f *File) ExecSensors() ([]map[string]any, error) {
	m, _ := f.tree["sensors"].(map[string]any)
	return f.arrayOfTables(m, "sensors.exec")
}

// Rules returns the [[rules]] tables, in file order.
func (f *File) Rules() ([]map[string]any, error) {
	return f.arrayOfTables(f.tree, "rules")
}

// arrayOfTables returns the [[key]] tables under the last part of the
// dotted key in m: none when absent, an error when it is something else.
func (f *File) arrayOfTables(m map[string]any, key string) ([]map[string]any, error) {
	raw, ok := m[key[strings.LastIndexByte(key, '.')+1:]]
	if !ok {
		return nil, nil
	}
	tables, ok := raw.([]map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: %s must be an array of tables ([[%s]])", ErrBadConfig, f.Path, key, key)
	}
	return tables, nil
}

// Resolver returns a kong resolver for the flags tagged with config keys:
// environment first, then the file. Its Validate rejects keys in the file
// that are not in known (see Keys); with known nil, the keys of the
// application being parsed are the known ones. A key "section.*" admits a
// whole section without checking it.
func (f *File) Resolver(known map[string]bool) kong.Resolver { return resolver{f, known} }

type resolver struct {
	f     *File
	known map[string]bool
}

// Keys adds the config keys of every flag of app to keys. One file serves
// both binaries, so callers collect the keys of both.
func Keys(app *kong.Application, keys map[string]bool) {
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, fl := range n.Flags {
			if k := flagKey(fl); k != "" {
				keys[k] = true
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(app.Node)
}

// EnvName returns the environment variable of a config key:
// publisher.interval → APD_PUBLISHER_INTERVAL.
func EnvName(key string) string {
	return "APD_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

func (r resolver) Validate(app *kong.Application) error {
	known := r.known
	if known == nil {
		known = map[string]bool{}
		Keys(app, known)
	}
	var unknown []string
	for section, v := range r.f.tree {
		if sectionsWithoutFlags[section] {
			continue
		}
		if known[section+".*"] {
			continue // a section the other binary checks
		}
		m, ok := v.(map[string]any)
		if !ok {
			unknown = append(unknown, section)
			continue
		}
		for k := range m {
			if !known[section+"."+k] {
				unknown = append(unknown, section+"."+k)
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("%w: %s: unknown key %s", ErrBadConfig, r.f.Path, strings.Join(unknown, ", "))
	}
	return nil
}

// flagKey returns the config key of a flag: its config tag, or for a flag
// of a struct embedded with an envprefix (one struct serving several
// sections) the key its variable names: APD_PUBLISHER_TLS_CA →
// publisher.tls_ca.
func flagKey(flag *kong.Flag) string {
	if k := flag.Tag.Get("config"); k != "" {
		return k
	}
	for _, env := range flag.Envs {
		if rest, ok := strings.CutPrefix(env, "APD_"); ok {
			if section, key, ok := strings.Cut(strings.ToLower(rest), "_"); ok {
				return section + "." + key
			}
		}
	}
	return ""
}

func (r resolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	key := flagKey(flag)
	if key == "" {
		return nil, nil
	}
	if v, ok := os.LookupEnv(EnvName(key)); ok {
		return v, nil
	}
	for _, alias := range strings.Split(flag.Tag.Get("envalias"), ",") {
		if v, ok := os.LookupEnv(alias); ok && alias != "" {
			return v, nil
		}
	}
	v, ok := r.f.lookup(key)
	if !ok {
		return nil, nil
	}
	switch x := v.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ","), nil
	case time.Time:
		return x.Format(time.RFC3339), nil
	}
	return fmt.Sprint(v), nil
}

// FindPath returns the value of --config (or -c) in args, or $APD_CONFIG.
// It runs before flag parsing because the file feeds the parser.
func FindPath(args []string) string {
	for i, a := range args {
		switch {
		case a == "--":
			return os.Getenv("APD_CONFIG")
		case a == "--config" && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "--config="):
			return strings.TrimPrefix(a, "--config=")
		}
	}
	return os.Getenv("APD_CONFIG")
}
