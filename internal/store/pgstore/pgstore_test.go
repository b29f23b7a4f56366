package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/storetest"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestConformance runs the storage contract's suite on a throwaway
// PostgreSQL cluster, a new database for each test.
func TestConformance(t *testing.T) {
	pg := testutil.StartPostgres(t)
	storetest.Run(t, func(t *testing.T, l store.Limits) store.Store {
		return openTest(t, pg, Options{Limits: l, PackAfter: rowsForever})
	})
}

// rowsForever keeps every day in rows until packed by hand.
const rowsForever = 100 * 365 * 24 * time.Hour

// TestConformanceOldDays runs the suite with the default PackAfter: the
// suite's readings are of days long over, so they go straight into
// blocks.
func TestConformanceOldDays(t *testing.T) {
	pg := testutil.StartPostgres(t)
	storetest.Run(t, func(t *testing.T, l store.Limits) store.Store {
		return openTest(t, pg, Options{Limits: l})
	})
}

// openTest opens a store on a new database of pg, closed when t ends.
func openTest(t *testing.T, pg *testutil.Postgres, opts Options) *Store {
	t.Helper()
	s, err := Open(pg.NewDatabase(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// packEveryCommit is the engine with every day packed right after each
// commit, so the conformance suite runs on blocks, late readings merged
// into them, and deletes that cut them.
type packEveryCommit struct{ *Store }

func (p packEveryCommit) Commit(b *store.Batch) (store.CommitResult, error) {
	res, err := p.Store.Commit(b)
	if err == nil {
		_, err = p.Pack(context.Background(), -48*time.Hour)
	}
	return res, err
}

// TestConformancePacked runs the suite with every day written as rows
// and packed after each commit.
func TestConformancePacked(t *testing.T) {
	pg := testutil.StartPostgres(t)
	storetest.Run(t, func(t *testing.T, l store.Limits) store.Store {
		return packEveryCommit{openTest(t, pg, Options{Limits: l, PackAfter: rowsForever})}
	})
}

// TestRetentionDropsPartitions: a delete of every series up to a time
// drops the days wholly before it as partitions, deletes rows only in the
// day it cuts, counts right, and readings of a dropped day can be stored
// again afterwards.
func TestRetentionDropsPartitions(t *testing.T) {
	pg := testutil.StartPostgres(t)
	s := openTest(t, pg, Options{PackAfter: rowsForever})
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var b store.Batch
	for h := 0; h < 3; h++ {
		for i := 0; i < 5*24; i++ { // five days, hourly
			b.Readings = append(b.Readings, storetest.Reading(fmt.Sprintf("h%d", h), "temperature", 0, float64(i), 0))
			b.Readings[len(b.Readings)-1].Time = t0.Add(time.Duration(i) * time.Hour)
		}
	}
	if _, err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	partitions := func() int {
		tx, _ := s.pool.Begin(context.Background())
		defer tx.Rollback(context.Background())
		days, err := partitionDays(context.Background(), tx, "apd_readings")
		if err != nil {
			t.Fatal(err)
		}
		return len(days)
	}
	if n := partitions(); n != 5 {
		t.Fatalf("%d partitions for five days", n)
	}
	n, err := s.Delete(store.Query{Until: t0.Add(2*24*time.Hour + 6*time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3*(2*24+6) {
		t.Errorf("deleted %d, want %d", n, 3*(2*24+6))
	}
	if p := partitions(); p != 3 {
		t.Errorf("%d partitions after dropping two days", p)
	}
	hosts, _ := s.Hosts()
	if c := hosts[0].Sensors["temperature"].Count; c != 5*24-(2*24+6) {
		t.Errorf("count after retention %d", c)
	}
	// A late reading of a dropped day makes its partition again.
	late := storetest.Reading("h0", "temperature", 0, 1, 0)
	late.Time = t0.Add(time.Hour)
	res, err := s.Commit(&store.Batch{Readings: []schema.Reading{late}})
	if err != nil || res.Stored != 1 {
		t.Fatalf("a reading of a dropped day: %+v %v", res, err)
	}
}

// scanAll returns every reading of s as JSON lines, in scan order.
func scanAll(t *testing.T, s store.Store) []string {
	t.Helper()
	var out []string
	if err := s.Scan(store.Query{}, func(r *schema.Reading) error {
		b, err := json.Marshal(r)
		out = append(out, r.Host+" "+string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func countRows(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// fleetDay is hosts × sensors readings every 10 s through one day from
// start, temperatures wandering in hundredths, seqs counting per host.
func fleetDay(hosts, sensors int, start time.Time, seq map[string]uint64) []schema.Reading {
	var rs []schema.Reading
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 8640; i++ {
		for h := 0; h < hosts; h++ {
			host := fmt.Sprintf("pi%02d", h)
			for k := 0; k < sensors; k++ {
				seq[host]++
				v := 20 + float64(h) + math.Round(rng.Float64()*100)/100
				rs = append(rs, schema.Reading{Host: host, Sensor: fmt.Sprintf("s%d", k), Time: start.Add(time.Duration(i) * 10 * time.Second),
					Seq: seq[host], Value: json.RawMessage(`{"magnitude":` + strconv.FormatFloat(v, 'f', -1, 64) + `,"unit":"°C"}`)})
			}
		}
	}
	return rs
}

func commitAll(t *testing.T, s store.Store, rs []schema.Reading, per int) store.CommitResult {
	t.Helper()
	var total store.CommitResult
	for len(rs) > 0 {
		n := min(per, len(rs))
		res, err := s.Commit(&store.Batch{Readings: rs[:n]})
		if err != nil {
			t.Fatal(err)
		}
		total.Stored += res.Stored
		total.Duplicates += res.Duplicates
		rs = rs[n:]
	}
	return total
}

// TestPack: finished days move from rows into blocks and read the same;
// the day being written stays rows; late readings of a packed day are
// merged (duplicates refused); the blocks cost at most 10 bytes a
// reading; retention drops packed days whole.
func TestPack(t *testing.T) {
	pg := testutil.StartPostgres(t)
	now := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	s := openTest(t, pg, Options{Now: func() time.Time { return now }, PackAfter: rowsForever})
	seq := map[string]uint64{}
	d1 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	old := append(fleetDay(3, 2, d1, seq), fleetDay(3, 2, d1.Add(24*time.Hour), seq)...)
	today := fleetDay(3, 2, d1.Add(48*time.Hour), seq)[:3*2*100]
	commitAll(t, s, old, 20000)
	commitAll(t, s, today, 20000)
	before := scanAll(t, s)
	hostsBefore, _ := s.Hosts()

	st, err := s.Pack(context.Background(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if st.Days != 2 || st.Readings != len(old) {
		t.Fatalf("packed %+v, want 2 days, %d readings", st, len(old))
	}
	if n := countRows(t, s, "apd_readings"); n != len(today) {
		t.Errorf("%d rows left, want today's %d", n, len(today))
	}
	if n := countRows(t, s, "apd_packed"); n != 3*2*48 {
		t.Errorf("%d blocks, want %d (series × hours)", n, 3*2*48)
	}
	after := scanAll(t, s)
	if !slices.Equal(before, after) {
		t.Fatalf("scan differs after packing: %d vs %d readings", len(before), len(after))
	}
	var size int64
	if err := s.pool.QueryRow(context.Background(), `SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'apd_packed'::regclass`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	perReading := float64(size) / float64(len(old))
	t.Logf("packed: %.2f bytes per reading (%d bytes, %d readings)", perReading, size, len(old))
	if perReading > 10 {
		t.Errorf("packed layout costs %.2f bytes per reading, more than 10", perReading)
	}
	if st, err := s.Pack(context.Background(), time.Hour); err != nil || st.Days != 0 {
		t.Errorf("second pack: %+v %v", st, err)
	}

	// Late: every old reading again, and one new between two.
	res := commitAll(t, s, old[:5000], 5000)
	if res.Stored != 0 || res.Duplicates != 5000 {
		t.Errorf("duplicates of packed readings: %+v", res)
	}
	late := old[7]
	late.Time = late.Time.Add(5 * time.Second)
	late.Seq = 0
	late.Value = json.RawMessage("99.5")
	if res := commitAll(t, s, []schema.Reading{late, late}, 2); res.Stored != 1 || res.Duplicates != 1 {
		t.Errorf("a late reading of a packed day: %+v", res)
	}
	var got []schema.Reading
	if err := s.Scan(store.Query{Sensor: late.Sensor, Hosts: []string{late.Host}, Since: late.Time.Add(-5 * time.Second), Until: late.Time.Add(10 * time.Second)}, func(r *schema.Reading) error {
		got = append(got, *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[1].Value) != "99.5" {
		t.Errorf("around the late reading: %+v", got)
	}
	hosts, _ := s.Hosts()
	if hosts[0].Sensors != nil && hostsBefore[0].Sensors[late.Sensor].Count+1 != hosts[0].Sensors[late.Sensor].Count {
		t.Errorf("count after a late reading: %d then %d", hostsBefore[0].Sensors[late.Sensor].Count, hosts[0].Sensors[late.Sensor].Count)
	}

	// A delete cutting an hour's block in two, then retention.
	cut := store.Query{Hosts: []string{"pi01"}, Since: d1.Add(90 * time.Minute), Until: d1.Add(150 * time.Minute)}
	n, err := s.Delete(cut)
	if err != nil || n != 2*360 {
		t.Errorf("delete of an hour across two blocks: %d %v", n, err)
	}
	n, err = s.Delete(store.Query{Until: d1.Add(24 * time.Hour)})
	if want := len(old)/2 - 2*360 + 1; err != nil || n != want {
		t.Errorf("retention of the first packed day: %d %v, want %d", n, err, want)
	}
	if n := countRows(t, s, "apd_packed"); n != 3*2*24 {
		t.Errorf("%d blocks after retention, want %d", n, 3*2*24)
	}
	if n := countRows(t, s, "apd_packing"); n != 1 {
		t.Errorf("%d packing days after retention, want 1", n)
	}
}

// TestPackBesideCommits: commits of a day's readings again and of new
// ones between them run while the day is packed, in many small packing
// transactions; afterwards every reading is there exactly once and every
// new one was counted stored once.
func TestPackBesideCommits(t *testing.T) {
	pg := testutil.StartPostgres(t)
	now := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	s := openTest(t, pg, Options{Now: func() time.Time { return now }, PackAfter: rowsForever})
	s.packBudget = 500
	d1 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	day := fleetDay(20, 2, d1, map[string]uint64{})[:20*2*720] // two hours
	commitAll(t, s, day, 20000)

	done := make(chan error, 1)
	go func() {
		_, err := s.Pack(context.Background(), time.Hour)
		done <- err
	}()
	var stored int
	var extra []schema.Reading
	for i := 0; i < len(day); i += 97 {
		r := day[i]
		r.Seq, r.Time = 0, r.Time.Add(3*time.Second)
		extra = append(extra, r)
		res, err := s.Commit(&store.Batch{Readings: []schema.Reading{day[i], r, day[len(day)-1-i]}})
		if err != nil {
			t.Fatal(err)
		}
		stored += res.Stored
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if stored != len(extra) {
		t.Errorf("stored %d of %d new readings beside packing", stored, len(extra))
	}
	if n := countRows(t, s, "apd_readings"); n != 0 {
		t.Errorf("%d rows left after packing", n)
	}
	seen := map[string]int{}
	for _, line := range scanAll(t, s) {
		seen[line]++
	}
	for _, r := range append(slices.Clone(day), extra...) {
		b, _ := json.Marshal(r)
		if c := seen[r.Host+" "+string(b)]; c != 1 {
			t.Fatalf("%s/%s at %s stored %d times", r.Host, r.Sensor, r.Time, c)
		}
	}
	if total := len(seen); total != len(day)+len(extra) {
		t.Errorf("%d readings, want %d", total, len(day)+len(extra))
	}
}

// TestOldDaysGoStraightIntoBlocks: readings of a day over for longer than
// PackAfter, with no rows, are merged into blocks at once; today's are
// rows; a day that has rows keeps taking rows until packed.
func TestOldDaysGoStraightIntoBlocks(t *testing.T) {
	pg := testutil.StartPostgres(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := openTest(t, pg, Options{Now: func() time.Time { return now }})
	d1 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	seq := map[string]uint64{}
	old := fleetDay(2, 2, d1, seq)
	today := fleetDay(2, 2, d1.Add(48*time.Hour), seq)[:400]
	if res := commitAll(t, s, append(slices.Clone(old), today...), 7000); res.Stored != len(old)+len(today) {
		t.Fatalf("stored %d", res.Stored)
	}
	if n := countRows(t, s, "apd_readings"); n != len(today) {
		t.Errorf("%d rows, want today's %d", n, len(today))
	}
	if n := countRows(t, s, "apd_packed"); n != 2*2*24 {
		t.Errorf("%d blocks, want %d", n, 2*2*24)
	}
	if res := commitAll(t, s, old, 7000); res.Duplicates != len(old) {
		t.Errorf("the old day again: %+v", res)
	}
	if got := scanAll(t, s); len(got) != len(old)+len(today) {
		t.Errorf("%d readings scanned", len(got))
	}
}

// TestClaims: partitions are held by one aggregator at a time; a name
// runs once; a closed (or killed) holder's partitions are free at once;
// a holder whose connection is cut is told so and can claim again.
func TestClaims(t *testing.T) {
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase(t)
	ctx := context.Background()
	a, err := OpenClaims(ctx, url, "agg-a")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := OpenClaims(ctx, url, "agg-a"); !errors.Is(err, ErrNameTaken) {
		t.Errorf("the same name twice: %v", err)
	}
	b, err := OpenClaims(ctx, url, "agg-b")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := a.Live(ctx); err != nil || n != 2 {
		t.Errorf("Live = %d, %v; want 2", n, err)
	}
	claim := func(c *Claims, p int) bool {
		ok, err := c.TryClaim(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim(a, 3) || claim(b, 3) || !claim(b, 4) {
		t.Fatal("a partition held by two, or not at all")
	}
	if err := a.Release(ctx, 3); err != nil || !claim(b, 3) {
		t.Fatalf("a released partition is not free: %v", err)
	}
	b.Close()
	// The server ends a closed session a moment later.
	testutil.WaitFor(t, "a closed holder's partitions free", 10*time.Second, func() bool { return claim(a, 3) && claim(a, 4) })
	if n, _ := a.Live(ctx); n != 1 {
		t.Errorf("Live = %d after one left", n)
	}
	// Cut a's connection from the server side.
	other, err := OpenClaims(ctx, url, "agg-c")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7406 AND objid = 3`); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the loss of a's connection told", 10*time.Second, func() bool {
		_, err := a.Live(ctx)
		return errors.Is(err, ErrClaimsLost)
	})
	if n, err := a.Live(ctx); err != nil || n != 2 || !claim(other, 4) || !claim(a, 3) {
		t.Errorf("after reconnecting: Live %d, %v", n, err)
	}
}

// TestOpenUnreachable: a database that cannot be reached is
// store.ErrUnreachable, said on one line however many addresses pgx
// tried (without sslmode it tries TLS, then plain).
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	addr := testutil.FreeAddr(t)
	for _, url := range []string{
		"postgres://apd:secret@" + addr + "/apd?connect_timeout=2",
		"postgres://apd@" + addr + "/apd?sslmode=disable&connect_timeout=2",
	} {
		_, err := Open(url, Options{})
		if !errors.Is(err, store.ErrUnreachable) {
			t.Errorf("Open(%s): got %v, want store.ErrUnreachable", url, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, "secret") {
			t.Errorf("Open(%s): want one line without the password, got %q", url, msg)
		}
	}
}
