package config

import (
	"errors"
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
		{"bad duration", map[string]any{"every": "soon"}, params{}, `every "soon": want a duration like 90s`},
		{"negative duration", map[string]any{"every": "-5m"}, params{}, `every "-5m": want a duration`},
		{"duration not a string", map[string]any{"every": int64(5)}, params{}, `every: want a duration like "30s"`},
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

// commandLine takes a list of strings or one string split on spaces: a
// field type that reads its own value.
type commandLine []string

func (c *commandLine) UnmarshalTOML(v any) error {
	if s, ok := v.(string); ok {
		*c = strings.Fields(s)
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return errors.New("want a list of strings or a string")
	}
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return errors.New("want a list of strings or a string")
		}
		*c = append(*c, s)
	}
	return nil
}

func TestDecodeTableTimesAndUnmarshalers(t *testing.T) {
	type params struct {
		After   time.Time   `toml:"after"`
		Command commandLine `toml:"command"`
	}
	dec := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		table   map[string]any
		want    params
		wantErr string
	}{
		{"TOML date-time", map[string]any{"after": dec}, params{After: dec}, ""},
		{"RFC 3339 string", map[string]any{"after": "2026-12-01T01:00:00+01:00"}, params{After: dec}, ""},
		{"not a time", map[string]any{"after": "tomorrow"}, params{}, `after "tomorrow": want an RFC 3339 time`},
		{"time of the wrong type", map[string]any{"after": int64(3)}, params{}, `after: want an RFC 3339 time`},
		{"unmarshaler, list", map[string]any{"command": []any{"echo", "a b"}}, params{Command: commandLine{"echo", "a b"}}, ""},
		{"unmarshaler, string", map[string]any{"command": "echo a b"}, params{Command: commandLine{"echo", "a", "b"}}, ""},
		{"unmarshaler's error names the key", map[string]any{"command": true}, params{}, "command: want a list of strings or a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got params
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
			if !got.After.Equal(tc.want.After) || strings.Join(got.Command, "|") != strings.Join(tc.want.Command, "|") {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestDecodeTableSeveralStructs: one table, its keys shared among
// several structs; a key none of them has names every known key.
func TestDecodeTableSeveralStructs(t *testing.T) {
	type rule struct {
		Name    string `toml:"name"`
		Timeout string `toml:"timeout"`
	}
	type hook struct {
		URL     string `toml:"url"`
		Timeout string `toml:"timeout"` // rule's comes first: never filled
	}
	tests := []struct {
		name     string
		table    map[string]any
		wantRule rule
		wantHook hook
		wantErr  string
	}{
		{"each key to its struct", map[string]any{"name": "r", "url": "http://x/"}, rule{Name: "r"}, hook{URL: "http://x/"}, ""},
		{"a key of both goes to the first", map[string]any{"timeout": "5s"}, rule{Timeout: "5s"}, hook{}, ""},
		{"unknown key lists the union", map[string]any{"ulr": "x"}, rule{}, hook{}, "unknown key ulr (known: name, timeout, url)"},
		{"type errors from any struct", map[string]any{"url": int64(1)}, rule{}, hook{}, "url: want a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r rule
			var h hook
			err := DecodeTable(tc.table, &r, &h)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r != tc.wantRule || h != tc.wantHook {
				t.Errorf("got %+v %+v, want %+v %+v", r, h, tc.wantRule, tc.wantHook)
			}
		})
	}
	if err := DecodeTable(map[string]any{}, &rule{}, rule{}); err == nil {
		t.Error("a struct, not a pointer to one, accepted")
	}
}

func TestTableKeys(t *testing.T) {
	type settings struct {
		URL      string `toml:"webhook"`
		Retries  int    `toml:"webhook_retries,omitempty"`
		Internal string `toml:"-"`
		NoTag    string
		hidden   string `toml:"hidden"`
	}
	_ = settings{}.hidden
	if got := strings.Join(TableKeys(&settings{}), ","); got != "webhook,webhook_retries" {
		t.Errorf("TableKeys = %q, want webhook,webhook_retries", got)
	}
	if got := TableKeys(&struct{}{}); len(got) != 0 {
		t.Errorf("TableKeys of a struct without fields = %q", got)
	}
}
