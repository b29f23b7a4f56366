package pgstore

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configure a Store.
type Options struct {
	Limits store.Limits
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// PackAfter: readings of a day that ended longer ago than this and
	// has no rows go straight into blocks (an import of old readings
	// never makes rows to pack); 0 means store.DefaultPackAfter.
	PackAfter time.Duration
}

// Store is the PostgreSQL engine.
type Store struct {
	pool   *pgxpool.Pool
	limits store.Limits
	now    func() time.Time
	url    string
	// packBudget bounds the readings one packing transaction moves.
	packBudget int64
	packAfter  time.Duration

	mu         sync.Mutex
	series     map[seriesKey]int64 // ids of series known to exist
	partitions map[int64]bool      // days (ms of their start) with a partition
	packedDays map[int64]bool      // old days known packed or with rows
}

type seriesKey struct{ sensor, host string }

// Open connects to the database at url and brings its schema up to date.
func Open(url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, unreachable{fmt.Errorf("store URL: %w", err)}
	}
	if !strings.Contains(url, "pool_max_conns") {
		// A scan holds its connection while its reader reads (an export to
		// a slow client): leave the commits room.
		cfg.MaxConns = max(cfg.MaxConns, 16)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, unreachable{fmt.Errorf("connect to %s: %w", redact(url), err)}
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, unreachable{fmt.Errorf("connect to %s: %w", redact(url), err)}
	}
	s := &Store{pool: pool, limits: opts.Limits.WithDefaults(), now: opts.Now, url: url, packBudget: defaultPackBudget, packAfter: cmp.Or(opts.PackAfter, store.DefaultPackAfter),
		series: map[seriesKey]int64{}, partitions: map[int64]bool{}, packedDays: map[int64]bool{}}
	if s.now == nil {
		s.now = time.Now
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// unreachable is an error of reaching the database: it wraps
// store.ErrUnreachable besides its cause, and reads as one line (pgconn
// gives a line to each address it tried).
type unreachable struct{ err error }

func (u unreachable) Error() string {
	first, rest, _ := strings.Cut(u.err.Error(), "\n")
	var tried []string
	for _, line := range strings.Split(rest, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			tried = append(tried, line)
		}
	}
	if len(tried) == 0 {
		return first
	}
	return first + " " + strings.Join(tried, "; ")
}

func (u unreachable) Unwrap() []error { return []error{u.err, store.ErrUnreachable} }

// redact leaves a URL's password out of messages.
func redact(url string) string {
	if cfg, err := pgx.ParseConfig(url); err == nil && cfg.Password != "" {
		return strings.Replace(url, cfg.Password, "xxxxx", 1)
	}
	return url
}

// Path names the database, for the log.
func (s *Store) Path() string { return redact(s.url) }

// Close closes the connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Size is the database's size in bytes.
func (s *Store) Size() (int64, error) {
	var n int64
	err := s.pool.QueryRow(context.Background(), "SELECT pg_database_size(current_database())").Scan(&n)
	return n, err
}
