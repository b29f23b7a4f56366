package schema

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecode checks that no payload crashes the decoder and that every
// payload it accepts re-encodes to a form that decodes to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"v":1,"host":"h","sensor":"s","ts":"2026-11-23T10:15:00.000Z","seq":1,"value":{"magnitude":21.3,"unit":"degC"},"human":"x"}`,
		`{"v":1,"ts":"2026-11-23T10:15:00Z","error":{"kind":"persistent","message":"no battery"}}`,
		`21.5`, `true`, `{"magnitude":1}`, `"text"`, `[1,2]`, `{"v":2}`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, payload []byte) {
		// The hand-written scanner must agree with encoding/json on
		// every object it claims to have read.
		if ms, ok := objectMembers(payload); ok {
			var want map[string]json.RawMessage
			if err := json.Unmarshal(payload, &want); err != nil {
				t.Fatalf("scanner accepted %q, encoding/json: %v", payload, err)
			}
			got := map[string]json.RawMessage{}
			for _, m := range ms {
				got[string(m.key)] = m.value
			}
			if len(got) != len(want) {
				t.Fatalf("scanner found %d members in %q, encoding/json %d", len(got), payload, len(want))
			}
			for k, v := range want {
				if !bytes.Equal(got[k], v) {
					t.Fatalf("member %q of %q: scanner %q, encoding/json %q", k, payload, got[k], v)
				}
			}
		}
		r, err := Decode("h", "s", payload, at)
		if err != nil {
			return
		}
		first := r.AppendJSON(nil, WithIdentity)
		r2, err := Decode("h", "s", first, at)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", first, err)
		}
		if second := r2.AppendJSON(nil, WithIdentity); !bytes.Equal(first, second) {
			t.Fatalf("not stable:\n%s\n%s", first, second)
		}
	})
}
