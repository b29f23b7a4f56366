// Package engine is the one place a storage engine is chosen: a store's
// location names its engine by URL scheme — a path or a file: URL is the
// embedded engine (one bbolt file), postgres:// or postgresql:// is
// PostgreSQL — and Open opens it. Commands, servers and tests ask here
// and never name an engine's package, so a new engine is one more entry
// in Engines and nothing else changes.
//
// What an open store can do beyond store.Store is asked of the store by
// type assertion, with the interfaces of package store (store.Backuper,
// store.Packer, store.Claimer, store.Sealer, store.HostRestorer,
// store.Summarizer). What an engine can do with a location it has not
// opened is asked of the Engine the same way, with Compacter and
// Verifier: rewriting or checking a bbolt file needs the file not held
// by anyone, this process included, so those are no methods of a store.
package engine

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
)

// Engine is a storage engine apd can open by location.
type Engine interface {
	// Name names the engine in messages: "the embedded engine", "the
	// PostgreSQL engine".
	Name() string
	// Schemes are the URL schemes its locations use, without the colon;
	// the engine that lists "file" also takes plain paths.
	Schemes() []string
	// Open opens the store at target (Location.Target), creating it or
	// migrating its schema as the engine does and opts allow.
	Open(target string, opts Options) (store.Store, error)
}

// Compacter is an engine whose stores are files that grow and never
// give space back by themselves (a bbolt file after deletes). Compact
// rewrites the file at path without its free space and returns its size
// before and after; no process may have it open, this one included.
type Compacter interface {
	Compact(path string) (before, after int64, err error)
}

// Verifier is an engine whose stores are files it can check without
// trusting them (a backup, a copy from another machine): their
// structure page by page and that this apd can read them. A badly
// damaged file may still crash the process checking it; a caller that
// must survive that checks in a child process.
type Verifier interface {
	Verify(path string) error
}

// Shared is an engine whose stores several aggregators write to at
// once, each store a store.Claimer on which they divide work (the
// partitions of a NATS stream). It is asked of a location before its
// store is opened, so that a command that needs it refuses before it
// creates anything.
type Shared interface {
	Engine
	// SharedByAggregators marks the engine; its stores are Claimers.
	SharedByAggregators()
}

// Options configure Open. The zero value opens read-write, waits as long
// as it takes for another process to let go of the store, and keeps the
// default limits.
type Options struct {
	// ReadOnly opens an existing store for reading only, refusing one that
	// needs a migration. PostgreSQL leaves this to its roles and ignores
	// it.
	ReadOnly bool
	// LockTimeout bounds the wait for another process holding the store
	// (the embedded file's lock); past it Open fails with an error
	// wrapping store.ErrLocked. 0 waits as long as it takes.
	LockTimeout time.Duration
	// Limits bound the dead letters kept.
	Limits store.Limits
	// Now is the clock the store stamps itself with; nil means time.Now.
	Now func() time.Time
	// NoSync skips the embedded engine's fsync on commit, for tests and
	// loads that can be redone: a crash may lose committed batches.
	NoSync bool
	// HeadAge is how long the embedded engine keeps a series' newest
	// readings in its head before sealing them; 0 means its default.
	HeadAge time.Duration
	// CheckpointEvery turns on the embedded engine's deferred commits
	// (boltdb.Options.CheckpointEvery); PostgreSQL ignores it.
	CheckpointEvery time.Duration
	// PackAfter is how long after a day ends PostgreSQL writes its
	// readings straight into packed blocks; 0 means
	// store.DefaultPackAfter.
	PackAfter time.Duration
}

// ErrUnknownScheme means a location's URL scheme names no engine apd
// links.
var ErrUnknownScheme = errors.New("unknown storage scheme")

// Engines returns the engines apd links, in the order their schemes are
// listed to people.
func Engines() []Engine { return []Engine{Embedded{}, Postgres{}} }

// Location is where a store is, resolved to its engine.
type Location struct {
	Engine Engine
	// Target is what the engine opens there: a file's path for the
	// embedded engine (a file: URL's path), the URL for PostgreSQL.
	Target string
}

// Open opens the store at the location.
func (l Location) Open(opts Options) (store.Store, error) { return l.Engine.Open(l.Target, opts) }

// urlScheme matches the scheme of a location written as a URL. One
// letter is a Windows drive (C:\data), not a scheme, and a colon
// without "//" leaves a path a path, except for file: (file:apd.db).
var urlScheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]+)://`)

// Parse resolves location to its engine: a plain path belongs to the
// engine of file: URLs. It returns an error wrapping ErrUnknownScheme,
// listing the known schemes, when no engine takes it.
func Parse(location string) (Location, error) {
	if location == "" {
		return Location{}, errors.New("no storage location given")
	}
	scheme, target := "file", location
	if m := urlScheme.FindStringSubmatch(location); m != nil {
		scheme = strings.ToLower(m[1])
	}
	if len(location) >= len("file:") && strings.EqualFold(location[:len("file:")], "file:") {
		path, err := filePath(location)
		if err != nil {
			return Location{}, err
		}
		target = path
	}
	for _, e := range Engines() {
		if slices.Contains(e.Schemes(), scheme) {
			return Location{Engine: e, Target: target}, nil
		}
	}
	return Location{}, fmt.Errorf("%w %q in %s; apd stores in %s", ErrUnknownScheme, scheme+":", redacted(location), known())
}

// redacted is location without its password, if it has one.
func redacted(location string) string {
	if u, err := url.Parse(location); err == nil {
		return u.Redacted()
	}
	return location
}

// Open resolves location and opens the store there.
func Open(location string, opts Options) (store.Store, error) {
	loc, err := Parse(location)
	if err != nil {
		return nil, err
	}
	return loc.Open(opts)
}

// known lists the locations apd takes, for an error.
func known() string {
	var forms []string
	for _, e := range Engines() {
		for _, s := range e.Schemes() {
			if s == "file" {
				forms = append(forms, "a file (a path or file:PATH)")
			} else {
				forms = append(forms, s+"://")
			}
		}
	}
	last := len(forms) - 1
	return strings.Join(forms[:last], ", ") + " or " + forms[last]
}

// filePath is the path a file: URL names: file:apd.db and
// file:///srv/apd.db, or file://localhost/srv/apd.db.
func filePath(location string) (string, error) {
	u, err := url.Parse(location)
	if err != nil {
		return "", fmt.Errorf("storage location %s: %w", location, err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("storage location %s: a file: URL takes no query or fragment", location)
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("storage location %s: a file: URL names a file on this machine, not on %s", location, u.Host)
	}
	path := u.Path
	if u.Opaque != "" {
		if path, err = url.PathUnescape(u.Opaque); err != nil {
			return "", fmt.Errorf("storage location %s: %w", location, err)
		}
	}
	if path == "" {
		return "", fmt.Errorf("storage location %s: no file named", location)
	}
	return path, nil
}
