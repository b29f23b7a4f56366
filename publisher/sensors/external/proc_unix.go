//go:build unix

package external

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// command makes the program's process and its children one group, killed
// together when ctx ends: a shell script's sleep must not outlive it.
func (s *Sensor) command(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.c.Command[0], s.c.Command[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd
}
