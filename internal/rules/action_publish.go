package rules

import (
	"context"
	"fmt"

	"github.com/apd-telemetry/apd/schema"
)

// ActionPublish publishes each outcome as a reading on
// <prefix>/<host>/<rule>, so it is stored and other rules can use it.
const ActionPublish = "publish"

func init() {
	registerAction(ActionKind{Name: ActionPublish, Settings: func() ActionSettings { return &publishSettings{} }})
}

// publishSettings are empty: the topic follows from the outcome.
type publishSettings struct{}

func (*publishSettings) Check() error         { return nil }
func (*publishSettings) New(deps Deps) Action { return publishAction{deps} }

type publishAction struct{ deps Deps }

func (a publishAction) Run(_ context.Context, o Outcome) error {
	if a.deps.Publish == nil {
		return fmt.Errorf("no broker to publish to")
	}
	r := o.Reading()
	return a.deps.Publish(a.deps.Topics.Reading(o.Host, o.Rule), r.AppendJSON(nil, schema.WithIdentity))
}
