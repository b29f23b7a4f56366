package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// TestImportEndpoint: readings posted as NDJSON are stored once; a body
// that breaks off at a bad line keeps what came before and says where.
func TestImportEndpoint(t *testing.T) {
	srv, c := newServer(t)
	b := &store.Batch{Readings: []schema.Reading{
		{Host: "c", Sensor: "temperature", Time: t0, Value: json.RawMessage(`{"magnitude":21.5,"unit":"degC"}`)},
		{Host: "c", Sensor: "temperature", Time: t0.Add(time.Millisecond), Value: json.RawMessage(`21.6`)},
		{Host: "a", Sensor: "temperature", Time: t0, Value: json.RawMessage(`0`)}, // already stored
	}}
	res, err := c.Commit(b)
	if err != nil || res.Stored != 2 || res.Duplicates != 1 {
		t.Fatalf("commit: %+v %v", res, err)
	}
	body := `{"v":1,"host":"d","sensor":"x","ts":"2026-11-23T12:00:00.000Z","value":1}` + "\n" + `{"v":1,"host":"d",` + "\n"
	resp, err := http.Post(srv.URL+"/api/v1/import", "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(e["error"], "line 2") || !strings.Contains(e["error"], "what came before is stored") {
		t.Errorf("bad line: %d %v", resp.StatusCode, e)
	}
	n := 0
	if err := c.Scan(store.Query{Hosts: []string{"d"}}, func(*schema.Reading) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("host d: %d readings (%v), want the one before the bad line", n, err)
	}
}
