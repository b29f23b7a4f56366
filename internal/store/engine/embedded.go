package engine

import (
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/boltdb"
)

// Embedded is the embedded engine: one bbolt file (package boltdb), the
// default. Its locations are paths and file: URLs.
type Embedded struct{}

var (
	_ Engine    = Embedded{}
	_ Compacter = Embedded{}
	_ Verifier  = Embedded{}
)

// Name implements Engine.
func (Embedded) Name() string { return "the embedded engine" }

// Schemes implements Engine.
func (Embedded) Schemes() []string { return []string{"file"} }

// Open implements Engine: it opens or creates the file at path.
func (Embedded) Open(path string, opts Options) (store.Store, error) {
	st, err := boltdb.Open(path, boltdb.Options{
		ReadOnly: opts.ReadOnly,
		Timeout:  opts.LockTimeout,
		NoSync:   opts.NoSync,
		Limits:   opts.Limits,
		Now:      opts.Now,
		HeadAge:  opts.HeadAge,

		CheckpointEvery: opts.CheckpointEvery,
	})
	if err != nil {
		return nil, err // a *boltdb.Store nil in a store.Store would not be nil
	}
	return st, nil
}

// Compact implements Compacter (boltdb.Compact).
func (Embedded) Compact(path string) (before, after int64, err error) {
	return boltdb.Compact(path)
}

// Verify implements Verifier (boltdb.Verify).
func (Embedded) Verify(path string) error { return boltdb.Verify(path) }
