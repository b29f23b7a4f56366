package external

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

func sensor(t *testing.T, table map[string]any) publisher.Sensor {
	t.Helper()
	table["name"] = "x"
	c, err := ParseConfig(table)
	if err != nil {
		t.Fatal(err)
	}
	return New(c)
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		table map[string]any
		err   string
	}{
		{map[string]any{"name": "solar", "command": []any{"opensunny", "-i", "00:80"}, "timeout": "15s", "unit": "watt_hour"}, ""},
		{map[string]any{"name": "solar", "command": "opensunny -i 00:80"}, ""},
		{map[string]any{"command": []any{"x"}}, "name"},
		{map[string]any{"name": "a/b", "command": []any{"x"}}, "name"},
		{map[string]any{"name": "s"}, "command: missing"},
		{map[string]any{"name": "s", "command": []any{"x", 1}}, "every element must be a string"},
		{map[string]any{"name": "s", "command": []any{"x"}, "timeout": "soon"}, "timeout"},
		{map[string]any{"name": "s", "command": []any{"x"}, "unit": "furlong"}, "unit"},
		{map[string]any{"name": "s", "command": []any{"x"}, "kind": "sometimes"}, "kind"},
		{map[string]any{"name": "s", "command": []any{"x"}, "mode": "push"}, "mode"},
		{map[string]any{"name": "s", "command": []any{"x"}, "max_output": int64(-1)}, "max_output"},
		{map[string]any{"name": "s", "command": []any{"x"}, "shell": true}, "unknown key shell (known: name, title, command, timeout"},
		{map[string]any{"name": "s", "command": true}, "command: want a list of strings"},
		{map[string]any{"name": "s", "command": []any{"x"}, "timeout": "0s"}, "timeout: want a duration"},
		{map[string]any{"name": "s", "command": []any{"x"}, "timeout": "-1s"}, `timeout "-1s": want a duration`},
		{map[string]any{"name": "s", "command": []any{"x"}, "interval": "0s"}, "interval: want a duration"},
		{map[string]any{"name": "s", "command": []any{"x"}, "interval": "1d", "kind": "", "mode": ""}, ""},
		{map[string]any{"name": "s", "command": []any{"x"}, "title": int64(3)}, "title: want a string"},
	}
	for _, tc := range tests {
		c, err := ParseConfig(tc.table)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.table, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: err = %v, want %q", tc.table, err, tc.err)
		}
		_ = c
	}
	c, _ := ParseConfig(map[string]any{"name": "solar", "command": "opensunny -i 00:80", "unit": "watt_hour"})
	if strings.Join(c.Command, "|") != "opensunny|-i|00:80" || c.Unit != "Wh" || c.Timeout != DefaultTimeout || c.Title != "solar" || c.Kind != schema.Intermittent ||
		c.Mode != ModePoll || c.MaxOutput != DefaultMaxOutput || c.Interval != 0 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestRead(t *testing.T) {
	tests := []struct {
		name   string
		table  map[string]any
		value  string // JSON of the value
		human  string
		err    string
		kind   schema.ErrorKind
		within time.Duration
	}{
		{"bare number with unit", map[string]any{"command": []any{"echo", "14070867"}, "unit": "Wh"},
			`{"magnitude":14070867,"unit":"Wh"}`, "14070.867 kWh", "", "", 0},
		{"JSON value as it is", map[string]any{"command": []any{"echo", `{"pm25":12,"pm10":20}`}, "unit": "ppm"},
			`{"pm25":12,"pm10":20}`, "", "", "", 0},
		{"bare number, no unit", map[string]any{"command": []any{"echo", "-3.5"}}, `-3.5`, "-3.5", "", "", 0},
		{"not JSON", map[string]any{"command": []any{"echo", "hello there"}}, "", "", "not JSON", schema.Intermittent, 0},
		{"exit status and stderr", map[string]any{"command": []any{"sh", "-c", "echo starting >&2; echo 'bluetooth: no route' >&2; exit 3"}, "kind": "persistent"},
			"", "", "exit status 3: bluetooth: no route", schema.Persistent, 0},
		{"no such program", map[string]any{"command": []any{"/nonexistent/opensunny"}}, "", "", "no such file", schema.Persistent, 0},
		{"hangs, with a child", map[string]any{"command": []any{"sh", "-c", "sleep 30; echo 1"}, "timeout": "300ms"},
			"", "", "no result within 300ms", schema.Intermittent, 3 * time.Second},
		{"output too large", map[string]any{"command": []any{"sh", "-c", "head -c 5000 /dev/zero | tr '\\0' 1"}, "max_output": int64(100)},
			"", "", "larger than 100 bytes", schema.Intermittent, 0},
		{"no shell", map[string]any{"command": "echo $HOME"}, "", "", "not JSON", schema.Intermittent, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := publisher.Named{Name: "x", Sensor: sensor(t, tc.table), Policy: publisher.ReadPolicy{Attempts: 1, Timeout: time.Minute}}
			start := time.Now()
			s := n.Read(context.Background(), start)
			if tc.within > 0 && time.Since(start) > tc.within {
				t.Errorf("took %s, want under %s", time.Since(start), tc.within)
			}
			if tc.err != "" {
				if s.Err == nil || !strings.Contains(s.Err.Error(), tc.err) || publisher.KindOf(s.Err) != tc.kind {
					t.Fatalf("got %s %v, want %s error %q", s.Value, s.Err, tc.kind, tc.err)
				}
				return
			}
			if s.Err != nil || string(s.Value) != tc.value || (tc.human != "" && s.Human != tc.human) {
				t.Fatalf("got %s %q %v, want %s %q", s.Value, s.Human, s.Err, tc.value, tc.human)
			}
		})
	}
}

func TestStream(t *testing.T) {
	s := sensor(t, map[string]any{"mode": "stream", "unit": "W",
		"command": []any{"sh", "-c", "echo 1; echo 2.5; echo oops; echo 4; echo dying >&2; exit 1"}})
	st, ok := s.(publisher.Streamer)
	if !ok {
		t.Fatal("stream mode sensor is not a Streamer")
	}
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Stream(ctx, func(v any, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				got = append(got, "error: "+err.Error())
			} else {
				got = append(got, schema.FormatValue(v.(schema.Quantity).Raw()))
			}
		})
	}()
	// The program dies after four lines and is started again after a
	// second: two rounds within 1.5 s.
	time.Sleep(1500 * time.Millisecond)
	cancel()
	<-done
	want := []string{"1.0 W", "2.5 W", `error: sh: output is not JSON or a number: "oops"`, "4.0 W", "error: sh: exit status 1: dying"}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2*len(want) {
		t.Fatalf("got %d outcomes, want %d: %q", len(got), 2*len(want), got)
	}
	for i, w := range append(want, want...) {
		if got[i] != w {
			t.Errorf("outcome %d = %q, want %q", i, got[i], w)
		}
	}
}

func TestStreamOneOffRead(t *testing.T) {
	s := sensor(t, map[string]any{"mode": "stream", "command": []any{"sh", "-c", "echo 7; sleep 30"}, "timeout": "5s"})
	start := time.Now()
	v, err := s.Read(context.Background())
	if err != nil || string(v.(json.RawMessage)) != "7" {
		t.Fatalf("got %v, %v", v, err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("took %s: the program must be stopped after its first line", time.Since(start))
	}
}
