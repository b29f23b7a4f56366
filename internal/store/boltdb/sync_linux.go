package boltdb

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data, and its size only when that changed: the
// write-ahead file's records need no inode time stamps on the card.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// preallocate reserves the first size bytes of f: writing into allocated
// blocks does not change the file's size, and appending past the end of a
// file was measured to cost a second page per write.
func preallocate(f *os.File, size int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if err == syscall.EOPNOTSUPP {
		return nil
	}
	return err
}
