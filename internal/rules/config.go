// Package rules watches readings as they arrive and acts on them: a rule
// has a condition on one sensor's values (the language of apd query
// --where), optionally a time it must hold (for), and actions run with its
// outcome — a boolean reading named after the rule, stamped with the host
// and time of the reading that decided it.
//
// Each rule runs on its own goroutine with its own bounded queue, so a
// slow action delays only its own rule and never ingestion; when a queue
// is full the oldest waiting reading is dropped and counted.
package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/schema"
)

// DefaultQueue is the bound of a rule's queue when the rule sets none.
const DefaultQueue = 1000

// Config is one [[rules]] table: a condition rule (sensor and when), or
// a derived rule (expr over inputs) whose outcome is the computed number.
// The tags are the table's own keys; each action named takes its own keys
// from the same table (ActionSettings). Configs are made by Parse.
type Config struct {
	Name   string `toml:"name"`
	Sensor string `toml:"sensor"`
	// Hosts limits the rule to these hosts; empty means every host.
	Hosts []string `toml:"hosts"`
	// When is the condition, as written; Cond is it compiled.
	When string `toml:"when"`
	Cond query.Cond
	// Unit converts quantities to this unit before the condition sees them
	// (when = "value > 70" with unit = "degF").
	Unit string `toml:"unit"`
	// For is how long the condition must hold before the outcome is true
	// (pending, then firing); 0 fires on the first reading that meets it.
	For time.Duration `toml:"for"`
	// OnChange emits only outcomes that differ from the previous one (the
	// first outcome always is emitted).
	OnChange bool `toml:"on_change"`
	// After ignores readings stamped before it.
	After time.Time `toml:"after"`
	// Actions run, in this order, for each outcome; settings holds the
	// settings of each.
	Actions  []string `toml:"actions"`
	settings []ActionSettings
	// Queue bounds the readings waiting for the rule.
	Queue int `toml:"queue"`

	// Expr computes a derived reading from Inputs (+ - * / and
	// parentheses over the input names); Calc is it compiled. Host is the
	// host of the derived readings. A derived reading is made when every
	// input has a reading newer than those of the last one and all of them
	// lie within MaxSkew.
	Expr    string `toml:"expr"`
	Calc    calc
	Inputs  Inputs        `toml:"inputs"`
	Host    string        `toml:"host"`
	MaxSkew time.Duration `toml:"max_skew"`
}

// Input is one series a derived rule reads: host/sensor.
type Input struct{ Host, Sensor string }

// Inputs are the series of a derived rule by the names its expr gives
// them: inputs = { kitchen = "pi-kitchen/temperature", … }.
type Inputs map[string]Input

// UnmarshalTOML implements config.Unmarshaler.
func (in *Inputs) UnmarshalTOML(v any) error {
	table, ok := v.(map[string]any)
	if !ok {
		return errors.New(`a derived rule needs inputs = { name = "host/sensor", … }`)
	}
	*in = make(Inputs, len(table))
	for name, v := range table {
		if !isIdent(name) {
			return fmt.Errorf("%q: an input name is a letter or _ followed by letters, digits or _", name)
		}
		s, _ := v.(string)
		host, sensor, found := strings.Cut(s, "/")
		if !found || schema.ValidateName(host) != nil || schema.ValidateName(sensor) != nil {
			return fmt.Errorf("%s = %v: want \"host/sensor\"", name, v)
		}
		(*in)[name] = Input{Host: host, Sensor: sensor}
	}
	return nil
}

// DefaultMaxSkew bounds how far apart in time the inputs of one derived
// reading may be.
const DefaultMaxSkew = time.Minute

// Derived reports whether c computes a value rather than a condition.
func (c Config) Derived() bool { return c.Expr != "" }

// watched lists the sensors whose readings the rule reads.
func (c Config) watched() []string {
	if !c.Derived() {
		return []string{c.Sensor}
	}
	var out []string
	for _, in := range c.Inputs {
		out = append(out, in.Sensor)
	}
	return out
}

// ErrInvalid is wrapped by every error about a rule's definition.
var ErrInvalid = errors.New("invalid rule")

// Parse reads the [[rules]] tables. The error names the rule (its position
// and name) and the problem.
func Parse(tables []map[string]any) ([]Config, error) {
	var out []Config
	names := map[string]bool{}
	for i, t := range tables {
		c, err := parseOne(t)
		where := fmt.Sprintf("rules[%d]", i)
		if c.Name != "" {
			where += fmt.Sprintf(" %q", c.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, where, err)
		}
		if names[c.Name] {
			return nil, fmt.Errorf("%w: %s: another rule has this name", ErrInvalid, where)
		}
		names[c.Name] = true
		out = append(out, c)
	}
	if cycle := findCycle(out); cycle != nil {
		return nil, fmt.Errorf("%w: rules feed each other's outcomes in a loop: %s", ErrInvalid, strings.Join(cycle, " → "))
	}
	return out, nil
}

// parseOne reads one [[rules]] table: the rule's own keys and those of the
// actions it names, strictly, then checks them.
func parseOne(t map[string]any) (Config, error) {
	c := Config{Queue: DefaultQueue, Actions: []string{ActionLog}, MaxSkew: DefaultMaxSkew}
	c.Name, _ = t["name"].(string)
	// The actions named decide which keys the table may have besides the
	// rule's own, so they are read first.
	if v, ok := t["actions"]; ok {
		if err := config.DecodeTable(map[string]any{"actions": v}, &c); err != nil {
			return c, err
		}
	}
	if err := c.newSettings(t); err != nil {
		return c, err
	}
	targets := []any{&c}
	for _, s := range c.settings {
		targets = append(targets, s)
	}
	if err := config.DecodeTable(t, targets...); err != nil {
		return c, err
	}
	if err := schema.ValidateName(c.Name); err != nil {
		return c, fmt.Errorf("name: %w (the name is the sensor of the rule's outcomes)", err)
	}
	if c.Derived() {
		for _, k := range []string{"sensor", "hosts", "when", "for"} {
			if _, ok := t[k]; ok {
				return c, fmt.Errorf("%s: not for a derived rule (expr): it reads its inputs", k)
			}
		}
		if err := c.checkDerived(); err != nil {
			return c, err
		}
	} else if err := c.checkCondition(); err != nil {
		return c, err
	}
	if c.Unit != "" {
		u, ok := schema.CanonicalUnit(c.Unit)
		if !ok {
			return c, fmt.Errorf("unit %q: not a unit apd knows", c.Unit)
		}
		c.Unit = u
	}
	if c.Queue <= 0 {
		return c, errors.New("queue: want a positive whole number")
	}
	for _, s := range c.settings {
		if err := s.Check(); err != nil {
			return c, err
		}
	}
	if slices.Contains(c.watched(), c.Name) {
		return c, errors.New("sensor: a rule cannot watch its own outcomes")
	}
	return c, nil
}

// checkCondition checks and compiles a condition rule.
func (c *Config) checkCondition() error {
	if c.Sensor == "" {
		return errors.New("sensor: missing (or expr and inputs for a derived reading)")
	}
	if err := schema.ValidateName(c.Sensor); err != nil {
		return fmt.Errorf("sensor: %w", err)
	}
	for _, h := range c.Hosts {
		if err := schema.ValidateName(h); err != nil {
			return fmt.Errorf("hosts: %w", err)
		}
	}
	if c.When == "" {
		return errors.New("when: missing (a condition like \"value < 18\")")
	}
	cond, err := query.ParseWhere(c.When)
	if err != nil {
		return fmt.Errorf("when %q: %v", c.When, strings.TrimPrefix(err.Error(), "where: "))
	}
	c.Cond = cond
	return nil
}

// checkDerived checks a derived rule's inputs and host, and compiles its
// expr.
func (c *Config) checkDerived() error {
	if len(c.Inputs) == 0 {
		return errors.New(`inputs: a derived rule needs inputs = { name = "host/sensor", … }`)
	}
	names := map[string]bool{}
	hosts := map[string]bool{}
	for name, in := range c.Inputs {
		names[name] = true
		hosts[in.Host] = true
	}
	if c.Host == "" {
		if len(hosts) > 1 {
			return errors.New("host: the inputs are on several hosts; say which host the derived readings belong to")
		}
		for h := range hosts {
			c.Host = h
		}
	}
	if err := schema.ValidateName(c.Host); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	calc, err := parseArith(c.Expr, names)
	if err != nil {
		return fmt.Errorf("expr %q: %v", c.Expr, err)
	}
	c.Calc = calc
	return nil
}

func isIdent(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// findCycle returns rule names that watch each other's outcomes in a loop,
// or nil.
func findCycle(rules []Config) []string {
	watches := map[string][]string{}
	for _, r := range rules {
		watches[r.Name] = r.watched()
	}
	var walk func(path []string) []string
	walk = func(path []string) []string {
		if len(path) > len(rules)+1 {
			return nil
		}
		for _, next := range watches[path[len(path)-1]] {
			p := append(slices.Clone(path), next)
			if next == path[0] {
				return p
			}
			if _, isRule := watches[next]; isRule {
				if c := walk(p); c != nil {
					return c
				}
			}
		}
		return nil
	}
	for _, r := range rules {
		if c := walk([]string{r.Name}); c != nil {
			return c
		}
	}
	return nil
}
