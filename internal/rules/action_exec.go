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

func init() {
	registerAction(ActionKind{Name: ActionExec, Check: func(c Config) error {
		if len(c.Exec) == 0 {
			return errors.New("exec: the exec action needs a command, exec = [\"program\", \"arg\"]")
		}
		return nil
	}, New: func(c Config, deps Deps) Action { return execAction{c, deps} }})
}

type execAction struct {
	c    Config
	deps Deps
}

// exec runs the command with the outcome as JSON on stdin.
func (a execAction) Run(ctx context.Context, o Outcome) error {
	ctx, cancel := context.WithTimeout(ctx, a.c.ExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.c.Exec[0], a.c.Exec[1:]...)
	cmd.Stdin = bytes.NewReader(payload(o))
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%s: no result within %s", a.c.Exec[0], a.c.ExecTimeout)
		}
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg != "" {
			return fmt.Errorf("%s: %w: %s", a.c.Exec[0], err, msg)
		}
		return fmt.Errorf("%s: %w", a.c.Exec[0], err)
	}
	return nil
}
