package schema

import (
	"testing"
	"time"
)

// TestFailureRunMembers: the failing and recovered members travel as
// unknown members do, so a reading keeps them through Decode and
// AppendJSON (and through any store that keeps Extra).
func TestFailureRunMembers(t *testing.T) {
	since := time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)
	tests := []struct {
		name    string
		payload string
		member  string
		want    FailureRun
		ok      bool
	}{
		{"error starts", `{"v":1,"ts":"2026-11-23T10:15:00.000Z","seq":5,"error":{"kind":"persistent","message":"no battery"},"failing":{"since":"2026-11-23T10:15:00.000Z","failed_samples":1}}`,
			MemberFailing, FailureRun{since, 1}, true},
		{"recovery", `{"v":1,"ts":"2026-11-23T10:25:00.000Z","seq":6,"value":21.5,"recovered":{"since":"2026-11-23T10:15:00.000Z","failed_samples":60}}`,
			MemberRecovered, FailureRun{since, 60}, true},
		{"no member", `{"v":1,"ts":"2026-11-23T10:25:00.000Z","value":21.5}`, MemberRecovered, FailureRun{}, false},
		{"zero samples", `{"v":1,"ts":"2026-11-23T10:25:00.000Z","value":21.5,"recovered":{"since":"2026-11-23T10:15:00.000Z","failed_samples":0}}`, MemberRecovered, FailureRun{}, false},
		{"not an object", `{"v":1,"ts":"2026-11-23T10:25:00.000Z","value":21.5,"recovered":true}`, MemberRecovered, FailureRun{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decode("h", "s", []byte(tc.payload), time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			back, err := Decode("h", "s", r.AppendJSON(nil, WithIdentity), time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			got, ok := FailureRunOf(&back, tc.member)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	var r Reading
	SetFailureRun(&r, MemberRecovered, FailureRun{since, 3})
	if got := string(r.Extra[MemberRecovered]); got != `{"since":"2026-11-23T10:15:00.000Z","failed_samples":3}` {
		t.Fatalf("SetFailureRun wrote %s", got)
	}
}
