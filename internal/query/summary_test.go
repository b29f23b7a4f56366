package query

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/internal/testutil"
	"github.com/apd-telemetry/apd/schema"
)

// readingsOnly hides a store's sums, so Execute reads every reading.
type readingsOnly struct{ store.Reader }

// TestSummarizedAgreesWithReadings: means, sums and counts over windows
// answered from the store's sums equal those computed from every
// reading — with failed and non-numeric readings, a stretch of mixed
// titles (not summarised), late readings rewriting old chunks, a delete
// in the middle, readings still in the head, and ranges that do not
// start or end on a period.
func TestSummarizedAgreesWithReadings(t *testing.T) {
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	summarizedAgrees(t, st.(summarizingStore))
}

// TestSummarizedAgreesWithReadingsPostgres is the same on PostgreSQL,
// where the readings (of days long over) are packed blocks with sums.
func TestSummarizedAgreesWithReadingsPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	st, err := engine.Open(pg.NewDatabase(t), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	summarizedAgrees(t, st.(summarizingStore))
}

type summarizingStore interface {
	store.Store
	store.Summarizer
}

func summarizedAgrees(t *testing.T, st summarizingStore) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	commit := func(rs []schema.Reading) {
		t.Helper()
		if _, err := st.Commit(&store.Batch{Readings: rs}); err != nil {
			t.Fatal(err)
		}
	}
	var rs []schema.Reading
	for i := 0; i < 3*24*360; i++ { // three days every 10 s
		ts := t0.Add(time.Duration(i) * 10 * time.Second)
		a := schema.Reading{Host: "a", Sensor: "temperature", Time: ts, Title: "Temperature",
			Value: schema.Quantity{Magnitude: math.Round((20+5*rng.Float64())*10) / 10, Unit: "degC"}.Raw()}
		switch rng.IntN(50) {
		case 0:
			a.Value, a.Error = nil, &schema.SampleError{Message: "read failed"}
		case 1:
			a.Value = json.RawMessage(`"glitch"`)
		}
		b := schema.Reading{Host: "b", Sensor: "temperature", Time: ts, Value: json.RawMessage(fmt.Sprint(rng.IntN(1000)))}
		if i > 10000 && i < 11000 && i%7 == 0 {
			b.Title = "other" // a stretch of chunks with two titles
		}
		rs = append(rs, a, b)
		if len(rs) >= 4000 {
			commit(rs)
			rs = rs[:0]
		}
	}
	commit(rs)
	if sealer, ok := st.(store.Sealer); ok {
		if err := sealer.SealAll(); err != nil {
			t.Fatal(err)
		}
	}
	// Late readings between old ones rewrite their chunks.
	var late []schema.Reading
	for i := 0; i < 200; i++ {
		late = append(late, schema.Reading{Host: "a", Sensor: "temperature", Time: t0.Add(time.Duration(rng.IntN(3*24*3600))*time.Second + 5*time.Second),
			Title: "Temperature", Value: schema.Quantity{Magnitude: 99, Unit: "degC"}.Raw()})
	}
	commit(late)
	if _, err := st.Delete(store.Query{Sensor: "temperature", Hosts: []string{"b"}, Since: t0.Add(30 * time.Hour), Until: t0.Add(31*time.Hour + 7*time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// And the newest readings stay in the head.
	commit([]schema.Reading{{Host: "a", Sensor: "temperature", Time: t0.Add(72*time.Hour + time.Minute), Title: "Temperature", Value: schema.Quantity{Magnitude: 1, Unit: "degC"}.Raw()}})

	sums := 0
	if err := st.ScanSummarized(store.Query{Sensor: "temperature"}, func(p *store.Part) error {
		if p.Sum != nil {
			sums++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if sums < 100 {
		t.Fatalf("%d sums in three days of two series: the store keeps none", sums)
	}
	for _, tc := range []struct {
		agg, every   string
		since, until time.Time
	}{
		{"avg", "1h", t0.Add(7*time.Minute + 13*time.Second), t0.Add(70*time.Hour + 3*time.Second)},
		{"avg", "15m", time.Time{}, time.Time{}},
		{"sum", "1d", t0.Add(-time.Hour), t0.Add(100 * time.Hour)},
		{"count", "45m", t0.Add(20 * time.Hour), t0.Add(50 * time.Hour)},
		{"avg", "10m", t0, t0.Add(10 * time.Hour)}, // not a multiple: read reading by reading
	} {
		t.Run(tc.agg+" every "+tc.every, func(t *testing.T) {
			q := store.Query{Sensor: "temperature", Since: tc.since, Until: tc.until}
			spec := Spec{Agg: tc.agg, Every: tc.every}
			collect := func(src store.Reader) []schema.Reading {
				var out []schema.Reading
				if err := Execute(src, q, spec, func(r *schema.Reading) error { out = append(out, *r); return nil }); err != nil {
					t.Fatal(err)
				}
				return out
			}
			fast, slow := collect(st), collect(readingsOnly{st})
			if len(fast) != len(slow) || len(slow) == 0 {
				t.Fatalf("%d results from sums, %d from readings", len(fast), len(slow))
			}
			for i := range slow {
				f, s := fast[i], slow[i]
				fv, _ := schema.Numeric(f.Value)
				sv, _ := schema.Numeric(s.Value)
				if f.Host != s.Host || !f.Time.Equal(s.Time) || f.Title != s.Title || f.Human != s.Human && math.Abs(fv-sv) > 1e-9*math.Abs(sv) {
					t.Fatalf("result %d: from sums %s %s %q %s %s, from readings %s %s %q %s %s", i, f.Host, f.Time, f.Title, f.Value, f.Human, s.Host, s.Time, s.Title, s.Value, s.Human)
				}
				if math.Abs(fv-sv) > 1e-9*math.Max(1, math.Abs(sv)) {
					t.Fatalf("result %d (%s %s): %v from sums, %v from readings", i, s.Host, s.Time, fv, sv)
				}
			}
		})
	}
}
