package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// An Action does something with each outcome of a rule: log it, publish
// it, post it. Actions run on the rule's own goroutine, one outcome at a
// time and in order; a slow one delays only its rule.
type Action interface {
	Run(ctx context.Context, o Outcome) error
}

// ActionKind is one value of a rule's actions list: its name, the check
// of the rule settings it needs, and how to make it for a rule.
type ActionKind struct {
	Name string
	// Check reports what is missing from a rule for this action (a
	// webhook URL); nil checks nothing.
	Check func(c Config) error
	New   func(c Config, deps Deps) Action
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

// checkActions checks that a rule names known actions and has what they
// need.
func checkActions(c Config) error {
	for _, a := range c.Actions {
		k, ok := actionKinds[a]
		if !ok {
			return fmt.Errorf("actions: unknown action %q (known: %s)", a, strings.Join(ActionNames(), ", "))
		}
		if k.Check != nil {
			if err := k.Check(c); err != nil {
				return err
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
	a := actions{deps: deps}
	for _, name := range c.Actions {
		if k, ok := actionKinds[name]; ok {
			a.names = append(a.names, name)
			a.list = append(a.list, k.New(c, deps))
		}
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
