package pgstore

import (
	"context"
	"errors"
	"fmt"
	"github.com/apd-telemetry/apd/internal/store"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Claims shares numbered partitions of work among the aggregators on one
// database. An aggregator holds a partition while it holds a session
// advisory lock on it, on a connection of its own: when it dies the
// database sees the connection close and the partition is free for
// another at once, with no lease to expire. Each aggregator also holds a
// lock on its name while it runs, so Live counts the aggregators running.
type Claims struct {
	url, name string

	mu   sync.Mutex
	conn *pgx.Conn // nil after its loss, until Live connects again
}

// Advisory lock keys: (7406, partition) for partitions, (7407, hash of
// the name) for an aggregator running, (7408, 0) for Alone.
const (
	partitionLockKey = 7406
	presenceLockKey  = 7407
	aloneLockKey     = 7408
)

// ErrNameTaken means another aggregator with the same name is running.
var ErrNameTaken = errors.New("another aggregator with this name uses the database")

// ErrClaimsLost means the connection holding the claims was lost, and
// with it every claim: the holder must stop working on its partitions.
var ErrClaimsLost = errors.New("connection holding the partitions lost")

// Claims implements store.Claimer: claims on the database s is open on.
func (s *Store) Claims(ctx context.Context, name string) (store.Claims, error) {
	return OpenClaims(ctx, s.url, name)
}

// OpenClaims connects to the database at url and registers the
// aggregator name as running.
func OpenClaims(ctx context.Context, url, name string) (*Claims, error) {
	c := &Claims{url: url, name: name}
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Claims) connect(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(c.url), err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, presenceLockKey, c.name).Scan(&ok); err != nil {
		conn.Close(ctx)
		return fmt.Errorf("register aggregator %s: %w", c.name, err)
	}
	if !ok {
		conn.Close(ctx)
		return fmt.Errorf("aggregator %s: %w", c.name, ErrNameTaken)
	}
	c.conn = conn
	return nil
}

// Live counts the aggregators running on this database. After the loss
// of its connection it connects again and returns ErrClaimsLost once.
func (c *Claims) Live(ctx context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		if err := c.connect(ctx); err != nil {
			return 0, err
		}
	}
	var n int
	err := c.conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, presenceLockKey).Scan(&n)
	if err != nil && c.conn.IsClosed() {
		c.conn = nil
		return 0, fmt.Errorf("%w: %v", ErrClaimsLost, err)
	}
	return n, err
}

// TryClaim takes partition p if no other aggregator holds it.
func (c *Claims) TryClaim(ctx context.Context, p int) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return false, ErrClaimsLost
	}
	var ok bool
	err := c.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, partitionLockKey, p).Scan(&ok)
	return ok, err
}

// Release gives partition p up.
func (c *Claims) Release(ctx context.Context, p int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil // lost with the connection
	}
	_, err := c.conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, partitionLockKey, p)
	return err
}

// Alone runs fn while no other aggregator on the database runs an Alone
// of its own: making shared things (a stream) one at a time.
func (c *Claims) Alone(ctx context.Context, fn func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return ErrClaimsLost
	}
	if _, err := c.conn.Exec(ctx, `SELECT pg_advisory_lock($1, 0)`, aloneLockKey); err != nil {
		return err
	}
	defer c.conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1, 0)`, aloneLockKey)
	return fn()
}

// Close releases every claim and the name.
func (c *Claims) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close(context.Background())
	c.conn = nil
	return err
}

var _ store.Claimer = (*Store)(nil)
