package engine

import (
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/pgstore"
)

// Postgres is the PostgreSQL engine (package pgstore): several
// aggregators may write one database. Its locations are postgres:// and
// postgresql:// URLs, as libpq takes them.
type Postgres struct{}

var _ Engine = Postgres{}

// Name implements Engine.
func (Postgres) Name() string { return "the PostgreSQL engine" }

// Schemes implements Engine.
func (Postgres) Schemes() []string { return []string{"postgres", "postgresql"} }

// SharedByAggregators implements Shared: the aggregators of one database
// divide work through its advisory locks (pgstore.Claims).
func (Postgres) SharedByAggregators() {}

// Open implements Engine: it connects to the database at url and brings
// its schema up to date.
func (Postgres) Open(url string, opts Options) (store.Store, error) {
	st, err := pgstore.Open(url, pgstore.Options{Limits: opts.Limits, Now: opts.Now, PackAfter: opts.PackAfter})
	if err != nil {
		return nil, err
	}
	return st, nil
}

var _ Shared = Postgres{}
