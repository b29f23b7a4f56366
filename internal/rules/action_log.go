package rules

import (
	"context"

	"github.com/apd-telemetry/apd/schema"
)

// ActionLog writes each outcome to the log.
const ActionLog = "log"

func init() {
	registerAction(ActionKind{Name: ActionLog, Settings: func() ActionSettings { return &logSettings{} }})
}

// logSettings are empty: the log action takes no keys.
type logSettings struct{}

func (*logSettings) Check() error         { return nil }
func (*logSettings) New(deps Deps) Action { return logAction{deps} }

type logAction struct{ deps Deps }

func (a logAction) Run(_ context.Context, o Outcome) error {
	a.deps.Logger.Info("rule outcome", "rule", o.Rule, "host", o.Host, "ts", schema.FormatTime(o.Time), "value", string(o.Value),
		"reading", o.Trigger.Human)
	return nil
}
