package query

import (
	"testing"
	"time"
)

func TestFormatEvery(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Second, "10s"},
		{90 * time.Second, "1m30s"},
		{time.Minute, "1m"},
		{10 * time.Minute, "10m"},
		{30 * time.Minute, "30m"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{2*time.Hour + 30*time.Second, "2h0m30s"},
		{24 * time.Hour, "1d"},
		{7 * 24 * time.Hour, "7d"},
	}
	for _, tc := range tests {
		if got := formatEvery(tc.d); got != tc.want {
			t.Errorf("formatEvery(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
