package query

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store/engine"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// TestQueriesOnChunkedStore runs the query pipeline on a real store filled
// like the storage acceptance data set (quantities in degC with one
// decimal, 10 s apart), and checks its answers against arithmetic done
// here on the generated values.
func TestQueriesOnChunkedStore(t *testing.T) {
	const hosts, perHost = 5, 2000
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	values := map[string][]float64{}
	var b store.Batch
	for h := 0; h < hosts; h++ {
		host := fmt.Sprintf("pi-%02d", h)
		v := 20 + rng.Float64()*10
		for i := 0; i < perHost; i++ {
			v += (rng.Float64() - 0.5)
			mag := math.Round(v*10) / 10
			values[host] = append(values[host], mag)
			b.Readings = append(b.Readings, schema.Reading{Host: host, Sensor: "temperature", Seq: uint64(i + 1),
				Time:  t0.Add(time.Duration(i) * 10 * time.Second),
				Value: json.RawMessage(`{"magnitude":` + strconv.FormatFloat(mag, 'f', 1, 64) + `,"unit":"degC"}`)})
		}
	}
	// Inserted out of order, in several batches, as replays would.
	rng.Shuffle(len(b.Readings), func(i, j int) { b.Readings[i], b.Readings[j] = b.Readings[j], b.Readings[i] })
	for len(b.Readings) > 0 {
		n := min(len(b.Readings), 1500)
		if _, err := st.Commit(&store.Batch{Readings: b.Readings[:n]}); err != nil {
			t.Fatal(err)
		}
		b.Readings = b.Readings[n:]
	}

	collect := func(q store.Query, spec Spec) []schema.Reading {
		var out []schema.Reading
		if err := Execute(st, q, spec, func(r *schema.Reading) error { out = append(out, *r); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// One hour of one host: exactly its 360 readings, with their values.
	since := t0.Add(2 * time.Hour)
	hour := collect(store.Query{Sensor: "temperature", Hosts: []string{"pi-03"}, Since: since, Until: since.Add(time.Hour)}, Spec{})
	if len(hour) != 360 {
		t.Fatalf("one hour: %d readings", len(hour))
	}
	for i, r := range hour {
		q, _ := schema.ParseQuantity(r.Value)
		if want := values["pi-03"][720+i]; q.Magnitude != want || !r.Time.Equal(since.Add(time.Duration(i)*10*time.Second)) {
			t.Fatalf("reading %d: %v at %v, want %v", i, q.Magnitude, r.Time, want)
		}
	}
	// Hourly averages match the arithmetic mean of each hour.
	avgs := collect(store.Query{Sensor: "temperature", Hosts: []string{"pi-01"}}, Spec{Agg: "avg", Every: "1h"})
	if len(avgs) != (perHost+359)/360 {
		t.Fatalf("%d hourly averages", len(avgs))
	}
	for i, r := range avgs {
		vals := values["pi-01"][i*360 : min((i+1)*360, perHost)]
		sum := 0.0
		for _, v := range vals {
			sum += v
		}
		q, _ := schema.ParseQuantity(r.Value)
		if math.Abs(q.Magnitude-sum/float64(len(vals))) > 1e-9 {
			t.Errorf("hour %d: avg %v, want %v", i, q.Magnitude, sum/float64(len(vals)))
		}
	}
	// --where returns exactly the readings above 25.
	above := 0
	for _, vs := range values {
		for _, v := range vs {
			if v > 25 {
				above++
			}
		}
	}
	got := collect(store.Query{Sensor: "temperature"}, Spec{Where: "value > 25"})
	for _, r := range got {
		if q, _ := schema.ParseQuantity(r.Value); q.Magnitude <= 25 {
			t.Fatalf("where returned %v", q.Magnitude)
		}
	}
	if len(got) != above {
		t.Errorf("where value > 25: %d readings, want %d", len(got), above)
	}
}
