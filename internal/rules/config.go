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

// Defaults of Config.
const (
	DefaultWebhookTimeout = 10 * time.Second
	DefaultWebhookRetries = 3
	DefaultExecTimeout    = 10 * time.Second
	DefaultQueue          = 1000
)

// Config is one [[rules]] table: a condition rule (sensor and when), or
// a derived rule (expr over inputs) whose outcome is the computed number.
type Config struct {
	Name   string
	Sensor string
	// Hosts limits the rule to these hosts; empty means every host.
	Hosts []string
	// When is the condition, as written; Cond is it compiled.
	When string
	Cond query.Cond
	// Unit converts quantities to this unit before the condition sees them
	// (when = "value > 70" with unit = "degF").
	Unit string
	// For is how long the condition must hold before the outcome is true
	// (pending, then firing); 0 fires on the first reading that meets it.
	For time.Duration
	// OnChange emits only outcomes that differ from the previous one (the
	// first outcome always is emitted).
	OnChange bool
	// After ignores readings stamped before it.
	After time.Time
	// Actions run, in this order, for each outcome.
	Actions        []string
	Webhook        string
	WebhookTimeout time.Duration
	WebhookRetries int
	Exec           []string
	ExecTimeout    time.Duration
	// Queue bounds the readings waiting for the rule.
	Queue int

	// Expr computes a derived reading from Inputs (+ - * / and
	// parentheses over the input names); Calc is it compiled. Host is the
	// host of the derived readings. A derived reading is made when every
	// input has a reading newer than those of the last one and all of them
	// lie within MaxSkew.
	Expr    string
	Calc    calc
	Inputs  map[string]Input
	Host    string
	MaxSkew time.Duration
}

// Input is one series a derived rule reads: host/sensor.
type Input struct{ Host, Sensor string }

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

var knownKeys = []string{"name", "sensor", "hosts", "when", "unit", "for", "on_change", "after", "actions",
	"webhook", "webhook_timeout", "webhook_retries", "exec", "exec_timeout", "queue", "expr", "inputs", "host", "max_skew"}

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

func parseOne(t map[string]any) (Config, error) {
	c := Config{WebhookTimeout: DefaultWebhookTimeout, WebhookRetries: DefaultWebhookRetries,
		ExecTimeout: DefaultExecTimeout, Queue: DefaultQueue, Actions: []string{ActionLog}, MaxSkew: DefaultMaxSkew}
	c.Name, _ = t["name"].(string)
	for k := range t {
		if !slices.Contains(knownKeys, k) {
			return c, fmt.Errorf("unknown key %s (known: %s)", k, strings.Join(knownKeys, ", "))
		}
	}
	var err error
	str := func(key string) string {
		if err != nil {
			return ""
		}
		v, ok := t[key]
		if !ok {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			err = fmt.Errorf("%s: want a string, not %v", key, v)
		}
		return s
	}
	strs := func(key string) []string {
		if err != nil {
			return nil
		}
		v, ok := t[key]
		if !ok {
			return nil
		}
		list, ok := v.([]any)
		if !ok {
			err = fmt.Errorf("%s: want a list of strings", key)
			return nil
		}
		out := make([]string, len(list))
		for i, e := range list {
			if out[i], ok = e.(string); !ok {
				err = fmt.Errorf("%s: want a list of strings", key)
				return nil
			}
		}
		return out
	}
	dur := func(key string, into *time.Duration) {
		if s := str(key); s != "" && err == nil {
			d, perr := config.ParseDuration(s)
			if perr != nil || d < 0 {
				err = fmt.Errorf("%s %q: want a duration like 5m", key, s)
				return
			}
			*into = d
		}
	}
	if err := schema.ValidateName(c.Name); err != nil {
		return c, fmt.Errorf("name: %w (the name is the sensor of the rule's outcomes)", err)
	}
	c.Expr = str("expr")
	if c.Expr == "" {
		c.Sensor = str("sensor")
		if err == nil {
			if c.Sensor == "" {
				return c, errors.New("sensor: missing (or expr and inputs for a derived reading)")
			}
			if verr := schema.ValidateName(c.Sensor); verr != nil {
				return c, fmt.Errorf("sensor: %w", verr)
			}
		}
		c.Hosts = strs("hosts")
		c.When = str("when")
		dur("for", &c.For)
	} else {
		for _, k := range []string{"sensor", "hosts", "when", "for"} {
			if _, ok := t[k]; ok {
				return c, fmt.Errorf("%s: not for a derived rule (expr): it reads its inputs", k)
			}
		}
		c.Host = str("host")
		dur("max_skew", &c.MaxSkew)
	}
	c.Unit = str("unit")
	dur("webhook_timeout", &c.WebhookTimeout)
	dur("exec_timeout", &c.ExecTimeout)
	c.Webhook = str("webhook")
	c.Exec = strs("exec")
	if _, ok := t["actions"]; ok {
		c.Actions = strs("actions")
	}
	if err != nil {
		return c, err
	}
	if c.Derived() {
		if err := parseDerived(&c, t["inputs"]); err != nil {
			return c, err
		}
	} else {
		if c.When == "" {
			return c, errors.New("when: missing (a condition like \"value < 18\")")
		}
		if c.Cond, err = query.ParseWhere(c.When); err != nil {
			return c, fmt.Errorf("when %q: %v", c.When, strings.TrimPrefix(err.Error(), "where: "))
		}
	}
	if c.Unit != "" {
		u, ok := schema.CanonicalUnit(c.Unit)
		if !ok {
			return c, fmt.Errorf("unit %q: not a unit apd knows", c.Unit)
		}
		c.Unit = u
	}
	if v, ok := t["on_change"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return c, errors.New("on_change: want true or false")
		}
		c.OnChange = b
	}
	switch v := t["after"].(type) {
	case nil:
	case time.Time:
		c.After = v
	case string:
		at, perr := time.Parse(time.RFC3339, v)
		if perr != nil {
			return c, fmt.Errorf("after %q: want an RFC 3339 time like 2026-12-01T00:00:00Z", v)
		}
		c.After = at
	default:
		return c, fmt.Errorf("after: want an RFC 3339 time")
	}
	for _, key := range []string{"webhook_retries", "queue"} {
		v, ok := t[key]
		if !ok {
			continue
		}
		n, isInt := v.(int64)
		if !isInt || n < 0 || (key == "queue" && n == 0) {
			return c, fmt.Errorf("%s: want a positive whole number", key)
		}
		if key == "queue" {
			c.Queue = int(n)
		} else {
			c.WebhookRetries = int(n)
		}
	}
	for _, h := range c.Hosts {
		if verr := schema.ValidateName(h); verr != nil {
			return c, fmt.Errorf("hosts: %w", verr)
		}
	}
	if err := checkActions(c); err != nil {
		return c, err
	}
	if slices.Contains(c.watched(), c.Name) {
		return c, errors.New("sensor: a rule cannot watch its own outcomes")
	}
	return c, nil
}

// parseDerived reads the inputs of a derived rule, its host and its expr.
func parseDerived(c *Config, raw any) error {
	table, ok := raw.(map[string]any)
	if !ok || len(table) == 0 {
		return errors.New(`inputs: a derived rule needs inputs = { name = "host/sensor", … }`)
	}
	c.Inputs = map[string]Input{}
	names := map[string]bool{}
	hosts := map[string]bool{}
	for name, v := range table {
		if !isIdent(name) {
			return fmt.Errorf("inputs: %q: an input name is a letter or _ followed by letters, digits or _", name)
		}
		s, _ := v.(string)
		host, sensor, found := strings.Cut(s, "/")
		if !found || schema.ValidateName(host) != nil || schema.ValidateName(sensor) != nil {
			return fmt.Errorf("inputs: %s = %v: want \"host/sensor\"", name, v)
		}
		c.Inputs[name] = Input{Host: host, Sensor: sensor}
		names[name] = true
		hosts[host] = true
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
