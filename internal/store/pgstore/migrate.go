package pgstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations bring the schema from version i to i+1 (index i).
var migrations = []string{
	`CREATE TABLE apd_series (id bigserial PRIMARY KEY, sensor text NOT NULL, host text NOT NULL, UNIQUE (sensor, host));
	 CREATE TABLE apd_readings (series_id bigint NOT NULL, ts bigint NOT NULL, seq bigint NOT NULL, payload bytea NOT NULL,
		PRIMARY KEY (series_id, ts)) PARTITION BY RANGE (ts);
	 CREATE TABLE apd_hosts (host text PRIMARY KEY, record bytea NOT NULL);
	 CREATE TABLE apd_pending (host text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (host, seq));
	 CREATE TABLE apd_dead (id bigserial PRIMARY KEY, record bytea NOT NULL, cost bigint NOT NULL);
	 CREATE TABLE apd_dead_stats (id int PRIMARY KEY CHECK (id = 1), count bigint NOT NULL, bytes bigint NOT NULL, dropped bigint NOT NULL);
	 INSERT INTO apd_dead_stats VALUES (1, 0, 0, 0);`,
	// Version 2: the packed layout of finished days (see packed.go).
	`CREATE TABLE apd_packed (series_id bigint NOT NULL, hour bigint NOT NULL, n int NOT NULL, chunk bytea NOT NULL,
		PRIMARY KEY (series_id, hour)) PARTITION BY RANGE (hour);
	 ALTER TABLE apd_packed ALTER COLUMN chunk SET STORAGE EXTERNAL;
	 CREATE TABLE apd_packing (day bigint PRIMARY KEY, done boolean NOT NULL);`,
	// Version 3: each block's count and sum of numeric readings per
	// store.SummaryPeriod (chunk.Summary), for long means.
	`ALTER TABLE apd_packed ADD COLUMN summary bytea;`,
}

// SchemaVersion is the version migrate brings a database to.
var SchemaVersion = len(migrations)

// migrate applies the migrations a database lacks, under a lock so that
// aggregators starting together apply each once.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7405, 0)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS apd_meta (key text PRIMARY KEY, value text NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	version := 0
	var v string
	if err := tx.QueryRow(ctx, `SELECT value FROM apd_meta WHERE key = 'schema'`).Scan(&v); err == nil {
		if version, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("migrate: schema version %q", v)
		}
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema %d is newer than this apd's %d: upgrade apd", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate to schema %d: %w", i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO apd_meta (key, value) VALUES ('schema', $1) ON CONFLICT (key) DO UPDATE SET value = $1`, strconv.Itoa(len(migrations))); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return tx.Commit(ctx)
}
