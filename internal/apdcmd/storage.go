package apdcmd

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/boltdb"
	"github.com/apd-telemetry/apd/internal/store/pgstore"
)

// openMode says how a command uses the store it opens.
type openMode int

const (
	readWrite openMode = iota
	readOnly
)

// openStore opens the storage engine at location — the one place a
// command picks an engine: a postgres:// URL is the PostgreSQL engine,
// anything else the embedded file, which waits at most a second for
// another process to let go of it.
func openStore(location string, mode openMode, limits store.Limits) (store.Store, error) {
	if pgstore.IsURL(location) {
		st, err := pgstore.Open(location, pgstore.Options{Limits: limits})
		if err != nil {
			return nil, cli.WithCode(cli.ExitUnreachable, err, "is PostgreSQL running, and the URL right?")
		}
		return st, nil
	}
	return boltdb.Open(location, boltdb.Options{ReadOnly: mode == readOnly, Timeout: time.Second, Limits: limits})
}

// backup writes a consistent copy of st to w, if its engine makes them.
func backup(st store.Store, w io.Writer) (int64, error) {
	b, ok := st.(store.Backuper)
	if !ok {
		return 0, errors.New("this storage engine makes no file backups")
	}
	return b.WriteBackup(w, nil)
}

// storeLocation describes where a store is, for the log.
func storeLocation(st store.Store) string {
	if p, ok := st.(interface{ Path() string }); ok {
		return p.Path()
	}
	return fmt.Sprintf("%T", st)
}
