package chunk

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// FuzzDecode: any bytes either decode or give an error, never a panic or
// a hang; what decodes encodes and decodes again to the same readings.
// Run with: go test ./internal/store/chunk -run '^$' -fuzz FuzzDecode
func FuzzDecode(f *testing.F) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	f.Add(Encode("temperature", []schema.Reading{
		{Host: "h", Sensor: "temperature", Time: t0, Seq: 1, Value: json.RawMessage(`{"magnitude":21.3,"unit":"degC"}`), Human: "21.3 °C (70.3 °F)"},
		{Host: "h", Sensor: "temperature", Time: t0.Add(10 * time.Second), Seq: 2, Value: json.RawMessage(`"x"`), Human: "custom"},
		{Host: "h", Sensor: "temperature", Time: t0.Add(20 * time.Second), Error: &schema.SampleError{Kind: schema.Persistent, Message: "gone"}},
	}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Decode("h", "temperature", data)
		if err != nil {
			return
		}
		for i := 1; i < len(rs); i++ {
			if !rs[i-1].Time.Before(rs[i].Time) {
				return // not what Encode is given: times must rise
			}
		}
		again, err := Decode("h", "temperature", Encode("temperature", rs))
		if err != nil {
			t.Fatalf("re-encoded chunk does not decode: %v", err)
		}
		if len(again) != len(rs) {
			t.Fatalf("%d readings became %d", len(rs), len(again))
		}
		for i := range rs {
			a, b := rs[i].AppendJSON(nil, schema.WithIdentity), again[i].AppendJSON(nil, schema.WithIdentity)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("reading %d: %s became %s", i, a, b)
			}
		}
	})
}
