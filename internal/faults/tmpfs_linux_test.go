package faults

import (
	"syscall"
	"testing"
)

// tmpfsMagic is a tmpfs's f_type (linux/magic.h TMPFS_MAGIC).
const tmpfsMagic = 0x01021994

// onTmpfs reports whether dir is on a tmpfs: files in memory, of which
// the kernel's per-process I/O accounting counts no write.
func onTmpfs(t *testing.T, dir string) bool {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == tmpfsMagic
}
