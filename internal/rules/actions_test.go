package rules

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/config"
)

// TestActionSettings: a rule's table holds its own keys and those of the
// actions it names, each action's decoded into its own settings; any
// other key is unknown, and a key of an action not named says whose it is.
func TestActionSettings(t *testing.T) {
	rule := func(kv ...any) map[string]any {
		m := map[string]any{"name": "hot", "sensor": "temperature", "when": "value > 20"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		table   map[string]any
		want    []ActionSettings
		wantErr string
	}{
		{"default: log", rule(), []ActionSettings{&logSettings{}}, ""},
		{"settings-less actions", rule("actions", []any{"log", "publish"}), []ActionSettings{&logSettings{}, &publishSettings{}}, ""},
		{"webhook defaults", rule("actions", []any{"webhook"}, "webhook", "https://example.invalid/hook"),
			[]ActionSettings{&webhookSettings{URL: "https://example.invalid/hook", Timeout: DefaultWebhookTimeout, Retries: DefaultWebhookRetries}}, ""},
		{"webhook, every key", rule("actions", []any{"webhook"}, "webhook", "http://h/", "webhook_timeout", "2s", "webhook_retries", int64(0)),
			[]ActionSettings{&webhookSettings{URL: "http://h/", Timeout: 2 * time.Second}}, ""},
		{"exec and webhook together, in order", rule("actions", []any{"exec", "webhook"}, "exec", []any{"notify-send", "apd"}, "exec_timeout", "1m", "webhook", "http://h/"),
			[]ActionSettings{&execSettings{Command: []string{"notify-send", "apd"}, Timeout: time.Minute},
				&webhookSettings{URL: "http://h/", Timeout: DefaultWebhookTimeout, Retries: DefaultWebhookRetries}}, ""},
		{"a key of an action not named", rule("webhook", "http://h/"), nil,
			`rules[0] "hot": unknown key webhook (a setting of the webhook action, which actions = ["log"] does not name)`},
		{"another action's key beside a named one", rule("actions", []any{"webhook"}, "webhook", "http://h/", "exec_timeout", "1s"), nil,
			`unknown key exec_timeout (a setting of the exec action`},
		{"misspelt action key names the chosen actions' keys", rule("actions", []any{"webhook"}, "webhook", "http://h/", "webhook_retires", int64(1)), nil,
			"unknown key webhook_retires (known: name, sensor, hosts, when, unit, for, on_change, after, actions, queue, expr, inputs, host, max_skew, webhook, webhook_timeout, webhook_retries)"},
		{"misspelt key without actions", rule("treshold", int64(3)), nil,
			"unknown key treshold (known: name, sensor, hosts, when, unit, for, on_change, after, actions, queue, expr, inputs, host, max_skew)"},
		{"unknown action before its keys", rule("actions", []any{"email"}, "email", "me@example.invalid"), nil, `actions: unknown action "email" (known: exec, log, publish, webhook)`},
		{"actions not a list", rule("actions", "log"), nil, "actions: want a list of strings"},
		{"webhook_timeout of the wrong type", rule("actions", []any{"webhook"}, "webhook", "http://h/", "webhook_timeout", int64(10)), nil, `webhook_timeout: want a duration like "30s"`},
		{"negative webhook_retries", rule("actions", []any{"webhook"}, "webhook", "http://h/", "webhook_retries", int64(-1)), nil, "webhook_retries: want a whole number, 0 or more"},
		{"exec not a list", rule("actions", []any{"exec"}, "exec", int64(1)), nil, "exec: want a list of strings"},
		{"bad exec_timeout", rule("actions", []any{"exec"}, "exec", []any{"x"}, "exec_timeout", "soon"), nil, `exec_timeout "soon": want a duration`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := Parse([]map[string]any{tc.table})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cs[0].settings; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("settings %#v, want %#v", got, tc.want)
			}
		})
	}
}

// TestActionKindsDeclareSettings: every registered action makes fresh
// settings, a pointer to a struct, whose keys no other action or the rule
// itself claims.
func TestActionKindsDeclareSettings(t *testing.T) {
	owner := map[string]string{}
	for _, k := range config.TableKeys(&Config{}) {
		owner[k] = "the rule"
	}
	for _, name := range ActionNames() {
		k := actionKinds[name]
		a, b := k.Settings(), k.Settings()
		if reflect.TypeOf(a).Kind() != reflect.Pointer || reflect.TypeOf(a).Elem().Kind() != reflect.Struct {
			t.Errorf("%s: settings %T, want a pointer to a struct", name, a)
			continue
		}
		if reflect.TypeOf(a).Elem().Size() > 0 && a == b {
			t.Errorf("%s: Settings returns the same value twice", name)
		}
		for _, key := range config.TableKeys(a) {
			if o, taken := owner[key]; taken {
				t.Errorf("%s: key %s is already %s's", name, key, o)
			}
			owner[key] = name
		}
	}
}
