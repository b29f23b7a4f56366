package rules

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

func TestArith(t *testing.T) {
	vars := map[string]bool{"a": true, "b": true, "in_2": true}
	values := map[string]float64{"a": 7, "b": 2, "in_2": 0.5}
	tests := []struct {
		src  string
		want float64
	}{
		{"a - b", 5},
		{"a - b * 2", 3},
		{"(a - b) * 2", 10},
		{"a / b / 2", 1.75},
		{"-a + b", -5},
		{"a - -b", 9},
		{"in_2 * 100", 50},
		{"(a + b) / (a - b)", 1.8},
		{"1.5", 1.5},
	}
	for _, tc := range tests {
		c, err := parseArith(tc.src, vars)
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		if got := c(values); got != tc.want {
			t.Errorf("%q = %v, want %v", tc.src, got, tc.want)
		}
	}
	errs := []struct{ src, err string }{
		{"", "at 1: expected an input name or a number"},
		{"a -", "at 4: expected an input name or a number"},
		{"a * (b", "at 7: expected )"},
		{"a + c", `at 5: expected an input name or a number but found "c"`},
		{"a b", `at 3: unexpected "b"`},
		{"a > b", `at 3: unexpected ">"`},
	}
	for _, tc := range errs {
		if _, err := parseArith(tc.src, vars); err == nil || err.Error() != tc.err {
			t.Errorf("%q: err = %v, want %q", tc.src, err, tc.err)
		}
	}
}

func TestDerivedConfig(t *testing.T) {
	base := func(kv ...any) map[string]any {
		m := map[string]any{"name": "diff", "expr": "k - s", "inputs": map[string]any{"k": "pi-kitchen/temperature", "s": "shed/temperature"}, "host": "pi-kitchen"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	c := mustParse(t, base())[0]
	if !c.Derived() || c.Host != "pi-kitchen" || c.Inputs["s"] != (Input{"shed", "temperature"}) || c.MaxSkew != DefaultMaxSkew {
		t.Fatalf("parsed %+v", c)
	}
	one := mustParse(t, base("host", nil, "inputs", map[string]any{"in": "pi/solar", "out": "pi/load"}, "expr", "in - out"))[0]
	if one.Host != "pi" {
		t.Errorf("host of single-host inputs = %q", one.Host)
	}
	tests := []struct {
		table map[string]any
		err   string
	}{
		{base("host", nil), "host: the inputs are on several hosts"},
		{base("inputs", nil), "inputs: a derived rule needs inputs"},
		{base("inputs", map[string]any{"k": "pi-kitchen"}), `inputs: k = pi-kitchen: want "host/sensor"`},
		{base("inputs", map[string]any{"2k": "a/b"}), `inputs: "2k": an input name`},
		{base("expr", "k - x"), `expr "k - x": at 5: expected an input name or a number but found "x"`},
		{base("sensor", "temperature"), "sensor: not for a derived rule"},
		{base("for", "5m"), "for: not for a derived rule"},
		{base("max_skew", "later"), `max_skew "later"`},
		{base("inputs", map[string]any{"k": "pi/diff"}, "expr", "k"), "cannot watch its own outcomes"},
	}
	for _, tc := range tests {
		if _, err := Parse([]map[string]any{tc.table}); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: err = %v, want %q", tc.table, err, tc.err)
		}
	}
	loop := []map[string]any{base("inputs", map[string]any{"k": "pi/alarm"}, "expr", "k", "host", nil),
		{"name": "alarm", "sensor": "diff", "when": "value > 3"}}
	if _, err := Parse(loop); err == nil || !strings.Contains(err.Error(), "in a loop: diff → alarm → diff") {
		t.Errorf("loop through a derived rule: %v", err)
	}
}

func derivedOutcomes(c Config, readings []schema.Reading) []string {
	d := newDeriver(c)
	var out []string
	for i := range readings {
		if o, skip := d.eval(&readings[i]); skip == decided {
			out = append(out, o.Host+" "+o.Time.Format("15:04:05")+" "+string(o.Value))
		}
	}
	return out
}

func reading(host, sensor string, at time.Duration, value string) schema.Reading {
	return schema.Reading{Host: host, Sensor: sensor, Time: noon.Add(at), Value: json.RawMessage(value)}
}

func TestDerivedReadings(t *testing.T) {
	rule := func(kv ...any) Config {
		m := map[string]any{"name": "diff", "expr": "k - s", "host": "pi-kitchen",
			"inputs": map[string]any{"k": "pi-kitchen/temperature", "s": "shed/temperature"}}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return mustParse(t, m)[0]
	}
	k := func(at time.Duration, v string) schema.Reading { return reading("pi-kitchen", "temperature", at, v) }
	s := func(at time.Duration, v string) schema.Reading { return reading("shed", "temperature", at, v) }
	sec := time.Second
	tests := []struct {
		name     string
		rule     Config
		readings []schema.Reading
		want     string
	}{
		{"same tick, either order: one reading each, stamped at the tick", rule(),
			[]schema.Reading{k(0, "21"), s(0, "5"), s(10*sec, "6"), k(10*sec, "21.5"), k(20*sec, "22")},
			"pi-kitchen 12:00:00 16|pi-kitchen 12:00:10 15.5"},
		{"an input that stops gives nothing more", rule(),
			[]schema.Reading{k(0, "21"), s(0, "5"), k(10*sec, "21"), k(20*sec, "21")}, "pi-kitchen 12:00:00 16"},
		{"inputs too far apart", rule("max_skew", "30s"),
			[]schema.Reading{k(0, "21"), s(45*sec, "5"), k(50*sec, "22")}, "pi-kitchen 12:00:50 17"},
		{"the slower input sets the pace, with the faster one's newest reading", rule(),
			[]schema.Reading{s(0, "5"), k(0, "21"), k(10*sec, "22"), k(20*sec, "23"), s(30*sec, "4"), k(30*sec, "24")},
			"pi-kitchen 12:00:00 16|pi-kitchen 12:00:30 19"},
		{"units converted, result a quantity", rule("unit", "degC"),
			[]schema.Reading{k(0, `{"magnitude":21,"unit":"degC"}`), s(0, `{"magnitude":41,"unit":"degF"}`)},
			`pi-kitchen 12:00:00 {"magnitude":16,"unit":"degC"}`},
		{"on_change", rule("on_change", true),
			[]schema.Reading{k(0, "21"), s(0, "5"), k(10*sec, "21"), s(10*sec, "5"), k(20*sec, "22"), s(20*sec, "5")},
			"pi-kitchen 12:00:00 16|pi-kitchen 12:00:20 17"},
		{"division by zero gives nothing", rule("expr", "k / s"), []schema.Reading{k(0, "21"), s(0, "0")}, ""},
		{"failed and late readings are skipped", rule(),
			[]schema.Reading{k(0, "21"), s(0, `"n/a"`), k(-10*sec, "30"), s(5*sec, "1")}, "pi-kitchen 12:00:05 20"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(derivedOutcomes(tc.rule, tc.readings), "|"); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestReplayDerived(t *testing.T) {
	rules := mustParse(t, map[string]any{"name": "diff", "expr": "k - s", "host": "pi-kitchen",
		"inputs": map[string]any{"k": "pi-kitchen/temperature", "s": "shed/temperature"}})
	stored := map[string][]schema.Reading{
		"pi-kitchen": series("pi-kitchen", "temperature", time.Hour, 21, 22, 23),
		"shed":       series("shed", "temperature", time.Hour, 5, 6, 4),
	}
	var got []string
	err := Replay(rules, func(sensor string, hosts []string, fn func(*schema.Reading) error) error {
		for i := range stored[hosts[0]] {
			if err := fn(&stored[hosts[0]][i]); err != nil {
				return err
			}
		}
		return nil
	}, func(o Outcome) error {
		got = append(got, o.Time.Format("15:04")+" "+string(o.Value))
		return nil
	})
	if err != nil || strings.Join(got, " ") != "12:00 16 13:00 16 14:00 19" {
		t.Fatalf("got %v %q", err, got)
	}
}
