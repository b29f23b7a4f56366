package publisher

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// SpoolFS is the file system the spool works through: every file and
// directory operation it makes goes through one, so that tests can record
// them and play power cuts (what reached the disk, what only the page
// cache held). OSFS is the real one.
type SpoolFS interface {
	// OpenFile opens name with os.OpenFile's flags and permissions.
	OpenFile(name string, flag int, perm fs.FileMode) (SpoolFile, error)
	// Stat describes name; a missing name is an error satisfying
	// errors.Is(err, fs.ErrNotExist).
	Stat(name string) (fs.FileInfo, error)
	// ReadDir returns the names in directory name, sorted.
	ReadDir(name string) ([]string, error)
	MkdirAll(name string, perm fs.FileMode) error
	Rename(oldname, newname string) error
	Remove(name string) error
	RemoveAll(name string) error
	// SyncDir makes durable the creations, renames and removals of names
	// in directory name (fsync of the directory).
	SyncDir(name string) error
	// Lock takes an exclusive lock on directory name for this process, or
	// fails at once with ErrSpoolLocked when another process holds it;
	// release frees it. The lock goes with the process: a killed
	// apd-publish does not leave its spool locked.
	Lock(name string) (release func() error, err error)
}

// SpoolFile is an open file of a SpoolFS.
type SpoolFile interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes the file's data durable: fdatasync where the system has
	// it, since the spool's segments are preallocated and an append does
	// not change their size.
	Sync() error
	// Allocate reserves the file's first size bytes on disk (fallocate,
	// mode 0): the file grows to at least size, the new bytes read as
	// zeros. A file system that cannot preallocate is not an error.
	Allocate(size int64) error
	// Size returns the file's length.
	Size() (int64, error)
	Close() error
}

// ErrSpoolLocked is returned by SpoolFS.Lock when another process holds
// the spool.
var ErrSpoolLocked = errors.New("spool is locked by another process")

// OSFS is the operating system's file system, the spool's default.
type OSFS struct{}

var _ SpoolFS = OSFS{}

// OpenFile implements SpoolFS.
func (OSFS) OpenFile(name string, flag int, perm fs.FileMode) (SpoolFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Stat implements SpoolFS.
func (OSFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// ReadDir implements SpoolFS.
func (OSFS) ReadDir(name string) ([]string, error) {
	entries, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	slices.Sort(names)
	return names, nil
}

// MkdirAll implements SpoolFS.
func (OSFS) MkdirAll(name string, perm fs.FileMode) error { return os.MkdirAll(name, perm) }

// Rename implements SpoolFS.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements SpoolFS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// RemoveAll implements SpoolFS.
func (OSFS) RemoveAll(name string) error { return os.RemoveAll(name) }

// SyncDir implements SpoolFS.
func (OSFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
		// Some file systems (and systems) cannot sync a directory; their
		// directory operations are as durable as they will ever be.
		err = nil
	}
	return errors.Join(err, d.Close())
}

// Lock implements SpoolFS.
func (OSFS) Lock(name string) (func() error, error) { return lockDir(name) }

type osFile struct{ f *os.File }

func (o osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o osFile) Sync() error                              { return fdatasync(o.f) }
func (o osFile) Allocate(size int64) error                { return allocate(o.f, size) }
func (o osFile) Close() error                             { return o.f.Close() }
func (o osFile) Size() (int64, error) {
	fi, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
