package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/apd-telemetry/apd/internal/config"
)

// An Action does something with each outcome of a rule: log it, publish
// it, post it. Actions run on the rule's own goroutine, one outcome at a
// time and in order; a slow one delays only its rule.
type Action interface {
	Run(ctx context.Context, o Outcome) error
}

// ActionKind is one value of a rule's actions list: its name and its
// settings.
type ActionKind struct {
	Name string
	// Settings returns the action's settings with their defaults.
	Settings func() ActionSettings
}

// ActionSettings are what one action takes from a rule's table: a pointer
// to a struct whose fields' `toml` tags are its keys (webhook,
// webhook_timeout), decoded with the rule's own keys by
// config.DecodeTable. A rule's table may hold the keys of the actions it
// names and no others. An action without settings is an empty struct.
type ActionSettings interface {
	// Check reports what is missing or wrong once the keys are decoded
	// (a webhook URL).
	Check() error
	// New makes the action for one rule.
	New(deps Deps) Action
}

// actionKinds holds the actions by name, filled once by the init functions
// of this package's action_*.go files and only read after.
var actionKinds = map[string]ActionKind{}

func registerAction(k ActionKind) {
	if _, dup := actionKinds[k.Name]; dup {
		panic("rules: action " + k.Name + " registered twice")
	}
	actionKinds[k.Name] = k
}

// ActionNames returns the names of every action, sorted.
func ActionNames() []string {
	names := make([]string, 0, len(actionKinds))
	for n := range actionKinds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// newSettings makes the settings of each of c's actions, with their
// defaults, for the table t to fill. A key of an action c does not name
// is unknown in t; the error says whose key it is.
func (c *Config) newSettings(t map[string]any) error {
	c.settings = make([]ActionSettings, len(c.Actions))
	for i, name := range c.Actions {
		k, ok := actionKinds[name]
		if !ok {
			return fmt.Errorf("actions: unknown action %q (known: %s)", name, strings.Join(ActionNames(), ", "))
		}
		c.settings[i] = k.Settings()
	}
	for _, name := range ActionNames() {
		if slices.Contains(c.Actions, name) {
			continue
		}
		for _, key := range config.TableKeys(actionKinds[name].Settings()) {
			if _, set := t[key]; set {
				return fmt.Errorf("unknown key %s (a setting of the %s action, which actions = %q does not name)", key, name, c.Actions)
			}
		}
	}
	return nil
}

// actions are a rule's actions, made for it.
type actions struct {
	names []string
	list  []Action
	deps  Deps
}

func newActions(c Config, deps Deps) actions {
	a := actions{names: c.Actions, deps: deps}
	for _, s := range c.settings {
		a.list = append(a.list, s.New(deps))
	}
	return a
}

// run runs every action in order and reports whether all succeeded. A
// failure is logged and does not stop the actions after it.
func (a actions) run(ctx context.Context, o Outcome) bool {
	ok := true
	for i, act := range a.list {
		if err := act.Run(ctx, o); err != nil {
			ok = false
			a.deps.Logger.Warn("rule action failed", "rule", o.Rule, "action", a.names[i], "host", o.Host, "err", err)
		}
	}
	return ok
}
