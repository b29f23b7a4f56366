package publisher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdatasync flushes f's data, and its size only when that changed: a
// preallocated segment's appends need no inode write on the card.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// allocate preallocates f's first size bytes (mode 0: the size grows, the
// new bytes read as zeros), so that appends neither grow the file nor
// allocate blocks one by one. A file system that cannot (tmpfs of old
// kernels, some FUSE ones) is left to grow the file as it is written.
func allocate(f *os.File, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return nil
	}
	return err
}

// lockDir takes an exclusive flock on the directory itself: no lock file
// to leave behind, and the kernel drops it with the process.
func lockDir(name string) (func() error, error) {
	d, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrSpoolLocked
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return d.Close, nil
}

// onTmpfs reports whether path is on a tmpfs: memory, which a power cut
// empties and which is never written to storage.
func onTmpfs(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return st.Type == unix.TMPFS_MAGIC, nil
}

// ownedBySelf reports whether fi's owner is this process's user.
func ownedBySelf(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
