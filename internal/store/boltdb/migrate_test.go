package boltdb

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/storetest"
	"github.com/apd-telemetry/apd/schema"
	bolt "go.etcd.io/bbolt"
)

// writeV1 builds a database in the version 1 layout: one JSON record per
// reading under readings/<sensor>/<host>/<time key>.
func writeV1(t *testing.T, path string, rs []schema.Reading) {
	t.Helper()
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := migrations[0](tx); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put(keySchema, []byte("1")); err != nil {
			return err
		}
		for _, r := range rs {
			sb, _ := tx.Bucket(bucketReadings).CreateBucketIfNotExists([]byte(r.Sensor))
			hb, _ := sb.CreateBucketIfNotExists([]byte(r.Host))
			if err := hb.Put(timeKey(r.Time), r.AppendJSON(nil, 0)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMigrateV1ToChunks(t *testing.T) {
	var in []schema.Reading
	for i := 0; i < 1300; i++ { // more than two chunks' worth
		r := storetest.Reading("c", "temperature", 0, float64(i%40)/2, uint64(i+1))
		r.Time = storetest.T0.Add(time.Duration(i) * 10 * time.Second)
		r.Title = "Ambient Temperature"
		in = append(in, r)
	}
	in = append(in, storetest.Fixture()...)
	path := filepath.Join(t.TempDir(), "apd.db")
	writeV1(t, path, in)

	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrOldSchema) {
		t.Fatalf("read-only open of a v1 file: %v", err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []string
	if err := s.Scan(store.Query{}, func(r *schema.Reading) error {
		got = append(got, string(r.AppendJSON(nil, schema.WithIdentity)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, r := range in {
		want[string(r.AppendJSON(nil, schema.WithIdentity))] = true
	}
	if len(got) != len(in) {
		t.Fatalf("%d readings after migration, want %d", len(got), len(in))
	}
	for _, g := range got {
		if !want[g] {
			t.Fatalf("migrated reading not in the original: %s", g)
		}
	}
	var version string
	_ = s.db.View(func(tx *bolt.Tx) error { version = string(tx.Bucket(bucketMeta).Get(keySchema)); return nil })
	chunks := 0
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReadings).Bucket([]byte("temperature")).Bucket([]byte("c")).ForEach(func(k, v []byte) error {
			chunks++
			return nil
		})
	})
	if version != fmt.Sprint(SchemaVersion) || chunks != 3 {
		t.Errorf("schema %s, %d chunks for 1300 readings of c/temperature; want %d and 3", version, chunks, SchemaVersion)
	}
	// Writes after the migration land in the chunks.
	if res, err := s.Commit(&store.Batch{Readings: []schema.Reading{in[5], storetest.Reading("c", "temperature", 99999, 1, 0)}}); err != nil || res.Stored != 1 || res.Duplicates != 1 {
		t.Errorf("commit after migration: %+v, %v", res, err)
	}
}

// TestCompactMigratesOldSchema: the hint for an old read-only file says to
// run apd compact, so Compact must migrate.
func TestCompactMigratesOldSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apd.db")
	writeV1(t, path, storetest.Fixture())
	if _, _, err := Compact(path); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open after compact: %v", err)
	}
	defer s.Close()
	n := 0
	_ = s.Scan(store.Query{}, func(*schema.Reading) error { n++; return nil })
	if n != len(storetest.Fixture()) {
		t.Errorf("%d readings after compact, want %d", n, len(storetest.Fixture()))
	}
}
