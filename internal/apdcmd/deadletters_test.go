package apdcmd

import (
	"strings"
	"testing"
)

func TestPayloadColumn(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"v":2}`, `{"v":2}`},
		{"21.5", "21.5"},
		{"a\tb\x1b[2Jc", `a\tb\x1b[2Jc`},
		{"\xff", `\xff`},
		{strings.Repeat("é", 61), strings.Repeat("é", 59) + "…"},
		{strings.Repeat("x", 60), strings.Repeat("x", 60)},
	}
	for _, tc := range tests {
		if got := payloadColumn([]byte(tc.in)); got != tc.want {
			t.Errorf("payloadColumn(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
