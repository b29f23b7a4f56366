package rules

import (
	"context"
	"fmt"

	"github.com/apd-telemetry/apd/schema"
)

// ActionPublish publishes each outcome as a reading on
// <prefix>/<host>/<rule>, so it is stored and other rules can use it;
// with Deps.HADiscovery, it announces the rule's outcomes on each host to
// Home Assistant first (discovery.go).
const ActionPublish = "publish"

func init() {
	registerAction(ActionKind{Name: ActionPublish, Settings: func() ActionSettings { return &publishSettings{} }})
}

// publishSettings are empty: the topic follows from the outcome.
type publishSettings struct{}

func (*publishSettings) Check() error { return nil }
func (*publishSettings) New(deps Deps) Action {
	return publishAction{deps: deps, ha: newAnnouncer(deps)}
}

type publishAction struct {
	deps Deps
	ha   *announcer // nil without Home Assistant discovery
}

func (a publishAction) Run(_ context.Context, o Outcome) error {
	if a.deps.Publish == nil {
		return fmt.Errorf("no broker to publish to")
	}
	// The config goes first, so Home Assistant has the entity when the
	// state arrives; a config that failed does not hold the outcome back.
	if err := a.ha.announce(o); err != nil {
		a.deps.Logger.Warn("rule outcome not announced to home assistant", "rule", o.Rule, "host", o.Host, "err", err)
	}
	r := o.Reading()
	return a.deps.Publish(a.deps.Topics.Reading(o.Host, o.Rule), r.AppendJSON(nil, schema.WithIdentity))
}
