//go:build !linux

package boltdb

import "os"

// fdatasync is fsync where the system has no fdatasync.
func fdatasync(f *os.File) error { return f.Sync() }

// preallocate does nothing where the system has no fallocate.
func preallocate(*os.File, int64) error { return nil }
