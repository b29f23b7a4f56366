package apdcmd

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
)

// openMode says how a command uses the store it opens.
type openMode int

const (
	readWrite openMode = iota
	readOnly
)

// locateStore resolves a store's location to its engine; a location
// no engine takes is a usage error.
func locateStore(location string) (engine.Location, error) {
	loc, err := engine.Parse(location)
	if err != nil {
		return engine.Location{}, cli.WithCode(cli.ExitUsage, err, "")
	}
	return loc, nil
}

// openStore opens the store at location through the engine its scheme
// names; a store held by another process is waited for at most a second.
func openStore(location string, mode openMode, limits store.Limits) (store.Store, error) {
	return openStoreWith(location, engine.Options{ReadOnly: mode == readOnly, Limits: limits})
}

// openStoreWith is openStore with every option of the engine.
func openStoreWith(location string, opts engine.Options) (store.Store, error) {
	loc, err := locateStore(location)
	if err != nil {
		return nil, err
	}
	opts.LockTimeout = time.Second
	st, err := loc.Open(opts)
	if errors.Is(err, store.ErrUnreachable) {
		return nil, cli.WithCode(cli.ExitUnreachable, err, "is the database server running, and the URL right?")
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// refuse is the one line of a command a store's engine cannot serve.
func refuse(command string, e engine.Engine, why string) error {
	return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s: %s %s", command, e.Name(), why), "")
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
