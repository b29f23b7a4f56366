package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "1h30m": 90 * time.Minute, "7d": 7 * 24 * time.Hour,
		"2w": 14 * 24 * time.Hour, "1.5d": 36 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1x", "-1d", "d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestDecodeTable(t *testing.T) {
	type params struct {
		Path     string            `toml:"path"`
		Every    time.Duration     `toml:"every"`
		N        int               `toml:"n"`
		Ratio    float64           `toml:"ratio"`
		On       bool              `toml:"on"`
		Names    map[string]string `toml:"names"`
		Commands []string          `toml:"commands"`
	}
	tests := []struct {
		name    string
		table   map[string]any
		want    params
		wantErr string
	}{
		{"all kinds", map[string]any{"path": "/x", "every": "1d", "n": int64(3), "ratio": int64(2), "on": true,
			"names": map[string]any{"a": "b"}, "commands": []any{"x", "y"}},
			params{Path: "/x", Every: 24 * time.Hour, N: 3, Ratio: 2, On: true, Names: map[string]string{"a": "b"}, Commands: []string{"x", "y"}}, ""},
		{"defaults kept", map[string]any{}, params{Path: "/default"}, ""},
		{"misspelt key", map[string]any{"pth": "/nope"}, params{}, "unknown key pth (known: path, every, n, ratio, on, names, commands)"},
		{"wrong type", map[string]any{"n": "three"}, params{}, "n: want a whole number"},
		{"bad duration", map[string]any{"every": "soon"}, params{}, `every: duration "soon"`},
		{"not a list of strings", map[string]any{"commands": []any{int64(1)}}, params{}, "commands: want a list of strings"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := params{Path: "/default"}
			err := DecodeTable(tc.table, &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != tc.want.Path || got.Every != tc.want.Every || got.N != tc.want.N || got.Ratio != tc.want.Ratio ||
				got.On != tc.want.On || len(got.Names) != len(tc.want.Names) || strings.Join(got.Commands, ",") != strings.Join(tc.want.Commands, ",") {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if err := DecodeTable(map[string]any{"x": 1}, &struct{}{}); err == nil || !strings.Contains(err.Error(), "takes none") {
		t.Errorf("a table for a struct without fields: %v", err)
	}
}
