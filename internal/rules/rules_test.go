package rules

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

func mustParse(t *testing.T, tables ...map[string]any) []Config {
	t.Helper()
	cs, err := Parse(tables)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestParseErrors(t *testing.T) {
	ok := map[string]any{"name": "hot", "sensor": "temperature", "when": "value > 20"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	tests := []struct {
		tables []map[string]any
		err    string
	}{
		{[]map[string]any{with("name", nil)}, `rules[0]: name`},
		{[]map[string]any{with("name", "a b")}, `rules[0] "a b": name`},
		{[]map[string]any{with("sensor", nil)}, `rules[0] "hot": sensor: missing`},
		{[]map[string]any{with("when", nil)}, `when: missing`},
		{[]map[string]any{with("when", "value >> 3")}, `rules[0] "hot": when "value >> 3": at 8`},
		{[]map[string]any{with("when", "temp > 3")}, `found "temp"`},
		{[]map[string]any{with("for", "soon")}, `for "soon": want a duration`},
		{[]map[string]any{with("actions", []any{"log", "email"})}, `unknown action "email"`},
		{[]map[string]any{with("actions", []any{"webhook"})}, `webhook "": the webhook action needs an http:// or https:// URL`},
		{[]map[string]any{with("actions", []any{"webhook"}, "webhook", "ftp://x/")}, `needs an http://`},
		{[]map[string]any{with("actions", []any{"exec"})}, `exec: the exec action needs a command`},
		{[]map[string]any{with("colour", "red")}, `unknown key colour`},
		{[]map[string]any{with("on_change", "yes")}, `on_change: want true or false`},
		{[]map[string]any{with("after", "tomorrow")}, `after "tomorrow"`},
		{[]map[string]any{with("unit", "furlong")}, `unit "furlong"`},
		{[]map[string]any{with("hosts", []any{"ok", "not ok"})}, `hosts:`},
		{[]map[string]any{with("queue", int64(0))}, `queue: want a positive`},
		{[]map[string]any{with("sensor", "hot")}, `cannot watch its own outcomes`},
		{[]map[string]any{ok, ok}, `rules[1] "hot": another rule has this name`},
		{[]map[string]any{with("name", "a", "sensor", "b"), with("name", "b", "sensor", "a")}, `in a loop: a → b → a`},
	}
	for _, tc := range tests {
		_, err := Parse(tc.tables)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: err = %v, want %q", tc.tables, err, tc.err)
		}
	}
	cs := mustParse(t, with("after", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "for", "2m", "unit", "degree_Fahrenheit"))
	if c := cs[0]; !c.After.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) || c.For != 2*time.Minute || c.Unit != "degF" ||
		c.Queue != DefaultQueue || len(c.Actions) != 1 || c.Actions[0] != ActionLog {
		t.Fatalf("parsed %+v", c)
	}
}

var noon = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// series makes readings of host's sensor from values, one per step from
// noon; a string value is raw JSON.
func series(host, sensor string, step time.Duration, values ...any) []schema.Reading {
	out := make([]schema.Reading, len(values))
	for i, v := range values {
		var raw json.RawMessage
		switch x := v.(type) {
		case string:
			raw = json.RawMessage(x)
		default:
			raw, _ = json.Marshal(x)
		}
		out[i] = schema.Reading{Host: host, Sensor: sensor, Time: noon.Add(time.Duration(i) * step), Value: raw}
	}
	return out
}

func outcomes(c Config, readings []schema.Reading) []string {
	ev := newEvaluator(c)
	var out []string
	for i := range readings {
		if o, skip := ev.eval(&readings[i]); skip == decided {
			out = append(out, fmt.Sprintf("%s %s@%s", o.Host, map[string]string{"true": "T", "false": "F"}[string(o.Value)], o.Time.Format("15:04")))
		}
	}
	return out
}

func TestEvaluate(t *testing.T) {
	rule := func(kv ...any) Config {
		m := map[string]any{"name": "r", "sensor": "temperature", "when": "value > 20"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return mustParse(t, m)[0]
	}
	hourly := series("pi", "temperature", time.Hour, 19, 18, 21, 22, 21)
	minutely := func(values ...any) []schema.Reading { return series("pi", "temperature", time.Minute, values...) }
	tests := []struct {
		name     string
		rule     Config
		readings []schema.Reading
		want     string
	}{
		{"acceptance vector, on_change", rule("on_change", true), hourly, "pi F@12:00 pi T@14:00"},
		{"acceptance vector, every outcome", rule(), hourly, "pi F@12:00 pi F@13:00 pi T@14:00 pi T@15:00 pi T@16:00"},
		{"for 5m, true 4 minutes: never fires", rule("for", "5m", "on_change", true), minutely(19, 21, 21, 21, 21, 21, 19, 19), "pi F@12:00"},
		{"for 5m, true 6 minutes: fires once at the reading that completes it", rule("for", "5m", "on_change", true),
			minutely(19, 21, 21, 21, 21, 21, 21, 21, 19), "pi F@12:00 pi T@12:06 pi F@12:08"},
		{"for 5m, every outcome: pending is false", rule("for", "5m"), minutely(21, 21, 21, 21, 21, 21, 21),
			"pi F@12:00 pi F@12:01 pi F@12:02 pi F@12:03 pi F@12:04 pi T@12:05 pi T@12:06"},
		{"for 5m, a dip resets the period", rule("for", "5m", "on_change", true), minutely(21, 21, 21, 19, 21, 21, 21, 21, 21, 21),
			"pi F@12:00 pi T@12:09"},
		{"after ignores earlier readings", rule("after", "2026-11-23T14:00:00Z", "on_change", true), hourly, "pi T@14:00"},
		{"quantities: the magnitude", rule(), series("pi", "temperature", time.Hour, `{"magnitude":20.5,"unit":"degC"}`, `{"magnitude":19,"unit":"degC"}`),
			"pi T@12:00 pi F@13:00"},
		{"quantities converted to the rule's unit", rule("when", "value > 70", "unit", "degF"),
			series("pi", "temperature", time.Hour, `{"magnitude":21.2,"unit":"degC"}`, `{"magnitude":21,"unit":"degC"}`, `{"magnitude":294.5,"unit":"K"}`, `21.5`),
			"pi T@12:00 pi F@13:00 pi T@14:00"},
		{"booleans: a rule on a rule", rule("sensor", "kitchen-cold", "when", "value == true", "on_change", true),
			series("pi", "kitchen-cold", time.Hour, "false", "true", "true", "false"), "pi F@12:00 pi T@13:00 pi F@15:00"},
		{"failed readings and strings are skipped", rule(), series("pi", "temperature", time.Hour, `"warm"`, 25), "pi T@13:00"},
		{"late and duplicate readings are skipped", rule(),
			append(series("pi", "temperature", time.Hour, 19, 25), series("pi", "temperature", time.Hour, 30)...), "pi F@12:00 pi T@13:00"},
		{"other sensors are not looked at", rule(), series("pi", "humidity", time.Hour, 50), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(outcomes(tc.rule, tc.readings), " "); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
	// Hosts are independent, and limited by hosts.
	both := append(series("a", "temperature", time.Hour, 19, 21), series("b", "temperature", time.Hour, 25, 26)...)
	if got := strings.Join(outcomes(rule("on_change", true), both), " "); got != "a F@12:00 a T@13:00 b T@12:00" {
		t.Errorf("two hosts: %q", got)
	}
	if got := strings.Join(outcomes(rule("hosts", []any{"b"}), both), " "); got != "b T@12:00 b T@13:00" {
		t.Errorf("hosts = [b]: %q", got)
	}
	failed := series("pi", "temperature", time.Hour, 25)
	failed[0].Value, failed[0].Error = nil, &schema.SampleError{Kind: schema.Intermittent, Message: "EIO"}
	if got := outcomes(rule(), failed); len(got) != 0 {
		t.Errorf("failed reading: %q", got)
	}
}

func TestReplay(t *testing.T) {
	rules := mustParse(t, map[string]any{"name": "warm", "sensor": "temperature", "when": "value > 20", "on_change": true})
	stored := series("pi", "temperature", time.Hour, 19, 18, 21, 22, 21)
	var got []string
	err := Replay(rules, func(sensor string, hosts []string, fn func(*schema.Reading) error) error {
		for i := range stored {
			if err := fn(&stored[i]); err != nil {
				return err
			}
		}
		return nil
	}, func(o Outcome) error {
		r := o.Reading()
		got = append(got, string(r.AppendJSON(nil, schema.WithIdentity)))
		return nil
	})
	want := []string{
		`{"v":1,"host":"pi","sensor":"warm","ts":"2026-11-23T12:00:00.000Z","value":false,"human":"false"}`,
		`{"v":1,"host":"pi","sensor":"warm","ts":"2026-11-23T14:00:00.000Z","value":true,"human":"true"}`,
	}
	if err != nil || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %v\n%s\nwant\n%s", err, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// hook is a webhook receiver that records bodies; delay holds each answer.
type hook struct {
	mu     sync.Mutex
	bodies []map[string]any
	status atomic.Int32
	delay  time.Duration
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	h.mu.Lock()
	h.bodies = append(h.bodies, m)
	h.mu.Unlock()
	select {
	case <-time.After(h.delay):
	case <-r.Context().Done():
	}
	if s := h.status.Load(); s != 0 {
		w.WriteHeader(int(s))
	}
}

func (h *hook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestEngineActions(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	out := t.TempDir() + "/stdin.json"
	var mu sync.Mutex
	published := map[string]string{}
	rules := mustParse(t, map[string]any{"name": "warm", "sensor": "temperature", "when": "value > 20", "on_change": true,
		"actions": []any{"log", "publish", "webhook", "exec"}, "webhook": srv.URL, "exec": []any{"sh", "-c", "cat >> " + out}})
	e := NewEngine(rules, Deps{Publish: func(topic string, payload []byte) error {
		mu.Lock()
		defer mu.Unlock()
		published[topic] += string(payload) + "\n"
		return nil
	}})
	defer e.Close()
	e.Submit(series("pi", "temperature", time.Hour, 19, 18, 21, 22, 21))
	waitFor(t, "two outcomes acted on, the queue empty", func() bool { s := e.Stats()[0]; return s.Acted == 2 && s.Queued == 0 })
	s := e.Stats()[0]
	if s.In != 5 || s.Outcomes != 2 || s.Failed != 0 || s.Dropped != 0 || s.Queued != 0 || s.MeanActionSeconds <= 0 {
		t.Errorf("stats %+v", s)
	}
	if h.count() != 2 || h.bodies[0]["rule"] != "warm" || h.bodies[0]["value"] != false || h.bodies[1]["value"] != true ||
		h.bodies[1]["ts"] != "2026-11-23T14:00:00.000Z" || h.bodies[1]["host"] != "pi" || h.bodies[1]["sensor"] != "warm" {
		t.Errorf("webhook bodies %v", h.bodies)
	}
	if trig, _ := h.bodies[1]["reading"].(map[string]any); trig["value"] != float64(21) || trig["sensor"] != "temperature" {
		t.Errorf("triggering reading %v", h.bodies[1]["reading"])
	}
	mu.Lock()
	if p := published["apd/pi/warm"]; strings.Count(p, "\n") != 2 || !strings.Contains(p, `"value":true`) {
		t.Errorf("published %v", published)
	}
	mu.Unlock()
}

func TestWebhookRetriesAndFailure(t *testing.T) {
	h := &hook{}
	h.status.Store(503)
	srv := httptest.NewServer(h)
	defer srv.Close()
	rules := mustParse(t, map[string]any{"name": "warm", "sensor": "temperature", "when": "value > 20",
		"actions": []any{"webhook"}, "webhook": srv.URL, "webhook_retries": int64(2)})
	e := NewEngine(rules, Deps{RetryPause: time.Millisecond})
	defer e.Close()
	e.Submit(series("pi", "temperature", time.Hour, 25))
	waitFor(t, "the failure counted", func() bool { return e.Stats()[0].Failed == 1 })
	if h.count() != 3 {
		t.Errorf("%d attempts, want 1 + 2 retries", h.count())
	}
	h.status.Store(400) // not worth retrying
	e.Submit(series("pi", "temperature", time.Hour, 25, 26)[1:])
	waitFor(t, "the second failure", func() bool { return e.Stats()[0].Failed == 2 })
	if h.count() != 4 {
		t.Errorf("%d attempts after a 400, want one more", h.count())
	}
}

// TestSlowWebhookIsolated: a webhook that hangs holds up only its own
// rule: Submit returns at once, another rule keeps acting, and the slow
// rule's full queue drops its oldest readings and counts them.
func TestSlowWebhookIsolated(t *testing.T) {
	slow := &hook{delay: time.Hour}
	slowSrv := httptest.NewServer(slow)
	defer slowSrv.Close()
	defer slowSrv.CloseClientConnections()
	rules := mustParse(t,
		map[string]any{"name": "slow", "sensor": "temperature", "when": "value > 0", "actions": []any{"webhook"},
			"webhook": slowSrv.URL, "webhook_timeout": "1h", "queue": int64(10)},
		map[string]any{"name": "fast", "sensor": "temperature", "when": "value > 0", "actions": []any{"log"}})
	e := NewEngine(rules, Deps{})
	defer e.Close()
	readings := series("pi", "temperature", time.Second, make([]any, 1000)...)
	for i := range readings {
		readings[i].Value = json.RawMessage(fmt.Sprint(i + 1))
	}
	start := time.Now()
	for i := 0; i < len(readings); i += 100 {
		e.Submit(readings[i : i+100])
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Submit took %s with a hanging webhook", took)
	}
	waitFor(t, "the fast rule to act on every reading", func() bool { return e.Stats()[1].Acted == 1000 })
	waitFor(t, "the slow rule's webhook to be called", func() bool { return slow.count() == 1 })
	// One reading is in the hanging action; of the rest, the newest wait
	// and the others were dropped, every one of them counted.
	s := e.Stats()[0]
	if s.In != 1000 || s.Queued < 9 || s.Queued > 10 || s.Dropped+uint64(s.Queued)+1 != 1000 || s.Acted != 0 {
		t.Errorf("slow rule %+v: want 1 in its action, 9-10 queued, the rest dropped", s)
	}
	e.rules[0].mu.Lock()
	last := string(e.rules[0].queue[len(e.rules[0].queue)-1].Value)
	e.rules[0].mu.Unlock()
	if last != "1000" {
		t.Errorf("newest queued reading %s, want 1000", last)
	}
}
