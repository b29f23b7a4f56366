package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// ActionExec runs the rule's command with each outcome as JSON on stdin.
const ActionExec = "exec"

// DefaultExecTimeout bounds a run of the command when the rule sets no
// exec_timeout.
const DefaultExecTimeout = 10 * time.Second

func init() {
	registerAction(ActionKind{Name: ActionExec, Settings: func() ActionSettings { return &execSettings{Timeout: DefaultExecTimeout} }})
}

// execSettings are the exec action's keys of a rule's table.
type execSettings struct {
	// Command is the program and its arguments, run without a shell.
	Command []string      `toml:"exec"`
	Timeout time.Duration `toml:"exec_timeout"`
}

func (s *execSettings) Check() error {
	if len(s.Command) == 0 {
		return errors.New("exec: the exec action needs a command, exec = [\"program\", \"arg\"]")
	}
	return nil
}

func (s *execSettings) New(deps Deps) Action { return execAction{*s, deps} }

type execAction struct {
	s    execSettings
	deps Deps
}

// exec runs the command with the outcome as JSON on stdin.
func (a execAction) Run(ctx context.Context, o Outcome) error {
	ctx, cancel := context.WithTimeout(ctx, a.s.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.s.Command[0], a.s.Command[1:]...)
	cmd.Stdin = bytes.NewReader(payload(o))
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%s: no result within %s", a.s.Command[0], a.s.Timeout)
		}
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg != "" {
			return fmt.Errorf("%s: %w: %s", a.s.Command[0], err, msg)
		}
		return fmt.Errorf("%s: %w", a.s.Command[0], err)
	}
	return nil
}
