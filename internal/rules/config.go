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
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/query"
	"github.com/apd-telemetry/apd/schema"
)

// Actions a rule can take with each outcome.
const (
	ActionLog     = "log"
	ActionPublish = "publish"
	ActionWebhook = "webhook"
	ActionExec    = "exec"
)

var actionNames = []string{ActionLog, ActionPublish, ActionWebhook, ActionExec}

// Defaults of Config.
const (
	DefaultWebhookTimeout = 10 * time.Second
	DefaultWebhookRetries = 3
	DefaultExecTimeout    = 10 * time.Second
	DefaultQueue          = 1000
)

// Config is one [[rules]] table.
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
}

var knownKeys = []string{"name", "sensor", "hosts", "when", "unit", "for", "on_change", "after", "actions",
	"webhook", "webhook_timeout", "webhook_retries", "exec", "exec_timeout", "queue"}

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
		ExecTimeout: DefaultExecTimeout, Queue: DefaultQueue, Actions: []string{ActionLog}}
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
			d, perr := query.ParseDuration(s)
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
	c.Sensor = str("sensor")
	if err == nil {
		if c.Sensor == "" {
			return c, errors.New("sensor: missing")
		}
		if verr := schema.ValidateName(c.Sensor); verr != nil {
			return c, fmt.Errorf("sensor: %w", verr)
		}
	}
	c.Hosts = strs("hosts")
	c.When = str("when")
	c.Unit = str("unit")
	dur("for", &c.For)
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
	if c.When == "" {
		return c, errors.New("when: missing (a condition like \"value < 18\")")
	}
	if c.Cond, err = query.ParseWhere(c.When); err != nil {
		return c, fmt.Errorf("when %q: %v", c.When, strings.TrimPrefix(err.Error(), "where: "))
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
	for _, a := range c.Actions {
		if !slices.Contains(actionNames, a) {
			return c, fmt.Errorf("actions: unknown action %q (known: %s)", a, strings.Join(actionNames, ", "))
		}
	}
	if slices.Contains(c.Actions, ActionWebhook) {
		u, perr := url.Parse(c.Webhook)
		if c.Webhook == "" || perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("webhook %q: the webhook action needs an http:// or https:// URL", c.Webhook)
		}
	}
	if slices.Contains(c.Actions, ActionExec) && len(c.Exec) == 0 {
		return c, errors.New("exec: the exec action needs a command, exec = [\"program\", \"arg\"]")
	}
	if c.Sensor == c.Name {
		return c, errors.New("sensor: a rule cannot watch its own outcomes")
	}
	return c, nil
}

// findCycle returns rule names that watch each other's outcomes in a loop,
// or nil.
func findCycle(rules []Config) []string {
	watches := map[string]string{}
	for _, r := range rules {
		watches[r.Name] = r.Sensor
	}
	for _, r := range rules {
		path := []string{r.Name}
		for next, ok := watches[r.Name]; ok; next, ok = watches[next] {
			path = append(path, next)
			if next == r.Name {
				return path
			}
			if len(path) > len(rules) {
				break
			}
		}
	}
	return nil
}
