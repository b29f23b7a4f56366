//go:build !linux

package publisher

import (
	"errors"
	"io/fs"
	"os"
)

// fdatasync is fsync where the system has no fdatasync.
func fdatasync(f *os.File) error { return f.Sync() }

// allocate does nothing where the system has no fallocate: the segment
// grows as it is written.
func allocate(*os.File, int64) error { return nil }

// lockDir takes no lock where the system has no flock of a directory
// (apd-publish's devices run Linux).
func lockDir(string) (func() error, error) { return func() error { return nil }, nil }

// onTmpfs cannot tell the file system where the system has no statfs of
// Linux's: no staging directory is used there.
func onTmpfs(string) (bool, error) {
	return false, errors.New("cannot tell whether it is on a tmpfs on this system")
}

// ownedBySelf is true where the system does not say.
func ownedBySelf(fs.FileInfo) bool { return true }
