package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
	"github.com/jackc/pgx/v5"
)

// hostSet is the host records one transaction reads and writes.
type hostSet struct {
	recs    map[string]*store.HostRecord
	pending map[string]*memPending
}

func decodeRecord(b []byte) (*store.HostRecord, error) {
	h := &store.HostRecord{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, h); err != nil {
			return nil, err
		}
	}
	if h.Sensors == nil {
		h.Sensors = map[string]*store.SensorStats{}
	}
	return h, nil
}

// lockHosts makes and locks the rows of hosts, in order, and reads their
// records and pending seqs.
func lockHosts(ctx context.Context, tx pgx.Tx, hosts []string) (*hostSet, error) {
	hs := &hostSet{recs: map[string]*store.HostRecord{}, pending: map[string]*memPending{}}
	if len(hosts) == 0 {
		return hs, nil
	}
	hosts = slices.Clone(hosts)
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	if _, err := tx.Exec(ctx, `INSERT INTO apd_hosts (host, record) SELECT h, '' FROM unnest($1::text[]) AS h ORDER BY h ON CONFLICT DO NOTHING`, hosts); err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT host, record FROM apd_hosts WHERE host = ANY($1) ORDER BY host COLLATE "C" FOR UPDATE`, hosts)
	if err != nil {
		return nil, fmt.Errorf("hosts: %w", err)
	}
	for rows.Next() {
		var name string
		var b []byte
		if err := rows.Scan(&name, &b); err != nil {
			rows.Close()
			return nil, err
		}
		h, err := decodeRecord(b)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		hs.recs[name] = h
		hs.pending[name] = &memPending{stored: map[uint64]bool{}}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = tx.Query(ctx, `SELECT host, seq FROM apd_pending WHERE host = ANY($1) ORDER BY host, seq`, hosts)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var seq int64
		if err := rows.Scan(&name, &seq); err != nil {
			return nil, err
		}
		p := hs.pending[name]
		p.stored[uint64(seq)] = true
		p.seqs = append(p.seqs, uint64(seq))
	}
	return hs, rows.Err()
}

func (hs *hostSet) lookup(name string) (*store.HostRecord, error) {
	h, ok := hs.recs[name]
	if !ok {
		return nil, fmt.Errorf("host %s: not locked by this commit", name)
	}
	return h, nil
}

// write puts back every record and the changes of every pending set.
func (hs *hostSet) write(ctx context.Context, tx pgx.Tx) error {
	var names []string
	var recs [][]byte
	var delHosts, addHosts []string
	var delSeqs, addSeqs []int64
	var cleared []string
	for name, h := range hs.recs {
		b, err := h.AppendJSON(nil)
		if err != nil {
			return err
		}
		names, recs = append(names, name), append(recs, b)
		p := hs.pending[name]
		if p.cleared {
			cleared = append(cleared, name)
		}
		now := map[uint64]bool{}
		for _, q := range p.seqs {
			now[q] = true
			if !p.stored[q] || p.cleared {
				addHosts, addSeqs = append(addHosts, name), append(addSeqs, int64(q))
			}
		}
		if !p.cleared {
			for q := range p.stored {
				if !now[q] {
					delHosts, delSeqs = append(delHosts, name), append(delSeqs, int64(q))
				}
			}
		}
	}
	if len(names) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE apd_hosts h SET record = v.r FROM unnest($1::text[], $2::bytea[]) AS v(host, r) WHERE h.host = v.host`, names, recs); err != nil {
			return fmt.Errorf("hosts: %w", err)
		}
	}
	if len(cleared) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM apd_pending WHERE host = ANY($1)`, cleared); err != nil {
			return err
		}
	}
	if len(delHosts) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM apd_pending p USING unnest($1::text[], $2::bigint[]) AS d(host, seq) WHERE p.host = d.host AND p.seq = d.seq`, delHosts, delSeqs); err != nil {
			return err
		}
	}
	if len(addHosts) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO apd_pending (host, seq) SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING`, addHosts, addSeqs); err != nil {
			return err
		}
	}
	return nil
}

// memPending is a host's pending seqs as one commit changes them: read
// at the start, written back as a difference at the end.
type memPending struct {
	stored  map[uint64]bool // in the database when the commit began
	seqs    []uint64        // now, sorted
	cleared bool            // all of stored deleted (a new spool)
}

func (p *memPending) Min() (uint64, bool, error) {
	if len(p.seqs) == 0 {
		return 0, false, nil
	}
	return p.seqs[0], true, nil
}

func (p *memPending) DeleteMin() error {
	if len(p.seqs) > 0 {
		p.seqs = p.seqs[1:]
	}
	return nil
}

func (p *memPending) Add(seq uint64) error {
	i, found := slices.BinarySearch(p.seqs, seq)
	if !found {
		p.seqs = slices.Insert(p.seqs, i, seq)
	}
	return nil
}

func (p *memPending) clear() {
	p.seqs, p.cleared = nil, true
}

// Hosts returns every host seen, sorted by name.
func (s *Store) Hosts() ([]store.Host, error) {
	ctx := context.Background()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	committed := map[string]uint64{}
	rows, err := tx.Query(ctx, `SELECT host, count(*) FROM apd_pending GROUP BY host`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var h string
		var n int64
		if err := rows.Scan(&h, &n); err != nil {
			rows.Close()
			return nil, err
		}
		committed[h] = uint64(n)
	}
	rows.Close()
	rows, err = tx.Query(ctx, `SELECT host, record FROM apd_hosts ORDER BY host COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Host
	for rows.Next() {
		var name string
		var b []byte
		if err := rows.Scan(&name, &b); err != nil {
			return nil, err
		}
		rec, err := decodeRecord(b)
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		h := rec.Host(name)
		if rec.MaxSeq > rec.Watermark {
			h.Awaited = rec.MaxSeq - rec.Watermark - min(committed[name], rec.MaxSeq-rec.Watermark)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// RestoreHost replaces a host's record; see store.HostRestorer.
func (s *Store) RestoreHost(name string, rec store.HostRecord) error {
	return s.changeHost(name, func(h *store.HostRecord) {
		if rec.Sensors == nil {
			rec.Sensors = map[string]*store.SensorStats{}
		}
		*h = rec
	})
}

// changeHost changes one host's record in a transaction of its own.
func (s *Store) changeHost(host string, change func(*store.HostRecord)) error {
	if err := schema.ValidateName(host); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	hs, err := lockHosts(ctx, tx, []string{host})
	if err != nil {
		return err
	}
	change(hs.recs[host])
	if err := hs.write(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// SetHostMeta replaces how host is shown; see store.Store.
func (s *Store) SetHostMeta(host string, m store.HostMeta) error {
	if err := schema.ValidateName(host); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	if err := m.Validate(); err != nil {
		return err
	}
	return s.changeHost(host, func(h *store.HostRecord) { h.Meta = m })
}
