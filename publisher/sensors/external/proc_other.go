//go:build !unix

package external

import (
	"context"
	"os/exec"
	"time"
)

func (s *Sensor) command(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.c.Command[0], s.c.Command[1:]...)
	cmd.WaitDelay = time.Second
	return cmd
}
