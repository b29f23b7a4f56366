package query

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apd-telemetry/apd/internal/store/engine"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// swapped is the format of the sensor "swapped_format", which the test
// changes between storing and exporting.
var swapped = "before"

func init() {
	schema.RegisterFormat("swapped_format", func(json.RawMessage) string { return "format " + swapped })
}

// exportNDJSON writes every reading of st as apd export does.
func exportNDJSON(t *testing.T, st store.Store) string {
	t.Helper()
	var b bytes.Buffer
	w, _ := NewWriter("ndjson", &b)
	if err := st.Scan(store.Query{}, w.Write); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	return b.String()
}

// TestExportImportSurvivesAFormatChange: readings keep the human text they
// arrived with. Export → import is byte-identical, also when a format
// changes between the two: stored data never changes with a formatter.
func TestExportImportSurvivesAFormatChange(t *testing.T) {
	input := strings.Join([]string{
		`{"v":1,"host":"pi","sensor":"swapped_format","ts":"2026-11-23T12:00:00.000Z","seq":1,"value":true,"human":"format before"}`,
		`{"v":1,"host":"pi","sensor":"swapped_format","ts":"2026-11-23T12:00:10.000Z","seq":2,"value":false}`,
		`{"v":1,"host":"pi","sensor":"temperature","ts":"2026-11-23T12:00:00.000Z","seq":3,"value":{"magnitude":21.3,"unit":"degC"},"human":"21.3 °C (70.3 °F)"}`,
		`{"v":1,"host":"pi","sensor":"temperature","ts":"2026-11-23T12:00:10.000Z","seq":4,"value":{"magnitude":21.4,"unit":"degC"},"human":"warm-ish"}`,
		`{"v":1,"host":"pi","sensor":"uptime","ts":"2026-11-23T12:00:00.000Z","seq":5,"value":{"magnitude":273906,"unit":"s"},"human":"3d 4h 5m 6s"}`,
	}, "\n") + "\n"
	open := func() store.Store {
		st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	load := func(st store.Store, ndjson string) {
		t.Helper()
		b := store.Batch{Imported: true}
		if err := DecodeNDJSON(strings.NewReader(ndjson), func(r *schema.Reading) error { b.Readings = append(b.Readings, *r); return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	first := open()
	load(first, input)
	if got := exportNDJSON(t, first); got != input {
		t.Fatalf("export differs from what was stored:\n%s\nwant\n%s", got, input)
	}
	swapped = "after" // the sensor's format changes
	defer func() { swapped = "before" }()
	exported := exportNDJSON(t, first)
	if exported != input {
		t.Errorf("after a format change the export differs:\n%s\nwant\n%s", exported, input)
	}
	second := open()
	load(second, exported)
	if got := exportNDJSON(t, second); got != input {
		t.Errorf("export → import → export differs:\n%s\nwant\n%s", got, input)
	}
}
