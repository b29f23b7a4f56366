package schema

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "pi-kitchen", true},
		{"all classes", "A_z.0-9", true},
		{"max length", strings.Repeat("a", 64), true},
		{"too long", strings.Repeat("a", 65), false},
		{"empty", "", false},
		{"slash", "a/b", false},
		{"plus", "a+b", false},
		{"hash", "a#", false},
		{"dollar", "$status", false},
		{"space", "a b", false},
		{"nul", "a\x00b", false},
		{"unicode", "küche", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateName(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if tc.name == "unicode" && !strings.Contains(err.Error(), `'ü'`) {
				t.Errorf("error %q should name the character ü, not a byte of it", err)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
		})
	}
}

func TestSanitizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"pi-kitchen", "pi-kitchen"},
		{"My Laptop.local", "My-Laptop.local"},
		{"a//b##c", "a-b-c"},
		{"--x--", "x"},
		{"", "unknown"},
		{"$$$", "unknown"},
		{"küche", "k-che"},
		{strings.Repeat("b", 70), strings.Repeat("b", 64)},
	}
	for _, tc := range tests {
		got := SanitizeName(tc.in)
		if got != tc.want {
			t.Errorf("SanitizeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if err := ValidateName(got); err != nil {
			t.Errorf("SanitizeName(%q) = %q is not valid: %v", tc.in, got, err)
		}
	}
}

func TestTopics(t *testing.T) {
	var tp Topics
	if got := tp.Reading("h", "s"); got != "apd/h/s" {
		t.Errorf("Reading = %q", got)
	}
	if got := tp.Status("h"); got != "apd/h/$status" {
		t.Errorf("Status = %q", got)
	}
	if got := (Topics{Prefix: "site/apd"}).Ack("h"); got != "site/apd/h/$ack" {
		t.Errorf("Ack = %q", got)
	}
	tests := []struct {
		name  string
		topic string
		want  Topic
		err   error
	}{
		{"reading", "apd/pi/temperature", Topic{KindReading, "pi", "temperature"}, nil},
		{"status", "apd/pi/$status", Topic{KindStatus, "pi", ""}, nil},
		{"ack", "apd/pi/$ack", Topic{KindAck, "pi", ""}, nil},
		{"other prefix", "foo/pi/temperature", Topic{}, ErrNotApdTopic},
		{"prefix lookalike", "apdx/pi/temperature", Topic{}, ErrNotApdTopic},
		{"too deep", "apd/pi/a/b", Topic{}, ErrNotApdTopic},
		{"too short", "apd/pi", Topic{}, ErrNotApdTopic},
		{"bad host", "apd/p i/t", Topic{}, ErrInvalidName},
		{"bad sensor", "apd/pi/$foo", Topic{}, ErrInvalidName},
		{"empty sensor", "apd/pi/", Topic{}, ErrInvalidName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tp.Parse(tc.topic)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Parse(%q) error = %v, want %v", tc.topic, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", tc.topic, got, err, tc.want)
			}
		})
	}
}

var received = time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)

func TestDecode(t *testing.T) {
	full := `{"v":1,"host":"pi-kitchen","sensor":"temperature","title":"Ambient Temperature",
 "ts":"2026-11-23T10:15:00.000Z","seq":1042,
 "value":{"magnitude":21.3, "unit":"degC"},"human":"21.3 °C (70.3 °F)"}`
	tests := []struct {
		name    string
		sensor  string
		payload string
		err     error
		check   func(t *testing.T, r Reading)
	}{
		{name: "full v1", sensor: "temperature", payload: full, check: func(t *testing.T, r Reading) {
			if r.Seq != 1042 || r.Title != "Ambient Temperature" || r.Human != "21.3 °C (70.3 °F)" {
				t.Errorf("fields: %+v", r)
			}
			if string(r.Value) != `{"magnitude":21.3,"unit":"degC"}` {
				t.Errorf("value = %s", r.Value)
			}
			if !r.Time.Equal(time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)) {
				t.Errorf("time = %v", r.Time)
			}
		}},
		{name: "bare number", sensor: "temperature", payload: "21.5", check: func(t *testing.T, r Reading) {
			if string(r.Value) != "21.5" || !r.Time.Equal(received.Truncate(time.Millisecond)) || r.Seq != 0 {
				t.Errorf("got %+v", r)
			}
		}},
		{name: "bare bool", sensor: "door", payload: " true\n", check: func(t *testing.T, r Reading) {
			if string(r.Value) != "true" {
				t.Errorf("value = %s", r.Value)
			}
		}},
		{name: "object without v", sensor: "temperature", payload: `{"magnitude": 21, "unit":"degC"}`, check: func(t *testing.T, r Reading) {
			if string(r.Value) != `{"magnitude":21,"unit":"degC"}` {
				t.Errorf("value = %s", r.Value)
			}
		}},
		{name: "error reading", sensor: "temperature", payload: `{"v":1,"ts":"2026-11-23T10:15:00Z","seq":3,"error":{"kind":"intermittent","message":"checksum"}}`, check: func(t *testing.T, r Reading) {
			if r.Error == nil || r.Error.Kind != Intermittent || r.Value != nil {
				t.Errorf("got %+v", r)
			}
		}},
		{name: "unknown fields kept", sensor: "temperature", payload: `{"v":1,"ts":"2026-11-23T10:15:00Z","value":1,"zz":{"a": 1},"aa":"x"}`, check: func(t *testing.T, r Reading) {
			if string(r.Extra["zz"]) != `{"a":1}` || string(r.Extra["aa"]) != `"x"` {
				t.Errorf("extra = %v", r.Extra)
			}
		}},
		{name: "nanosecond ts truncated", sensor: "temperature", payload: `{"v":1,"ts":"2026-11-23T11:15:00.123456+01:00","value":1}`, check: func(t *testing.T, r Reading) {
			if FormatTime(r.Time) != "2026-11-23T10:15:00.123Z" {
				t.Errorf("time = %s", FormatTime(r.Time))
			}
		}},
		{name: "invalid json", sensor: "temperature", payload: `{"v":1,`, err: ErrInvalidJSON},
		{name: "bare garbage", sensor: "temperature", payload: `hello`, err: ErrInvalidJSON},
		{name: "empty", sensor: "temperature", payload: ``, err: ErrInvalidJSON},
		{name: "unknown version", sensor: "temperature", payload: `{"v":2,"ts":"2026-11-23T10:15:00Z","value":1}`, err: ErrUnsupportedVersion},
		{name: "envelope without v", sensor: "humidity", payload: `{"value":3}`, err: ErrUnsupportedVersion},
		{name: "envelope without v, whole", sensor: "temperature", payload: `{"ts":"2026-11-23T10:15:00Z","seq":4,"value":{"magnitude":21.3,"unit":"degC"}}`, err: ErrUnsupportedVersion},
		{name: "host mismatch", sensor: "temperature", payload: `{"v":1,"host":"other","ts":"2026-11-23T10:15:00Z","value":1}`, err: ErrTopicMismatch},
		{name: "sensor mismatch", sensor: "humidity", payload: full, err: ErrTopicMismatch},
		{name: "missing ts", sensor: "temperature", payload: `{"v":1,"value":1}`, err: ErrInvalidField},
		{name: "bad ts", sensor: "temperature", payload: `{"v":1,"ts":"yesterday","value":1}`, err: ErrInvalidField},
		{name: "negative seq", sensor: "temperature", payload: `{"v":1,"ts":"2026-11-23T10:15:00Z","seq":-1,"value":1}`, err: ErrInvalidField},
		{name: "no value", sensor: "temperature", payload: `{"v":1,"ts":"2026-11-23T10:15:00Z"}`, err: ErrInvalidField},
		{name: "bare number out of range", sensor: "t", payload: `1e999`, err: ErrInvalidField},
		{name: "magnitude out of range", sensor: "t", payload: `{"v":1,"ts":"2026-11-23T10:15:00Z","value":{"magnitude":-1e400,"unit":"degC"}}`, err: ErrInvalidField},
		{name: "bad error kind", sensor: "temperature", payload: `{"v":1,"ts":"2026-11-23T10:15:00Z","error":{"kind":"odd","message":""}}`, err: ErrInvalidField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decode("pi-kitchen", tc.sensor, []byte(tc.payload), received)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			tc.check(t, r)
		})
	}
}

func TestAppendJSONCanonical(t *testing.T) {
	r := Reading{Host: "pi-kitchen", Sensor: "temperature", Title: "Ambient Temperature",
		Time: time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC), Seq: 1042,
		Value: Quantity{21.3, "degC"}.Raw(), Human: "21.3 °C (70.3 °F)",
		Extra: map[string]json.RawMessage{"b": json.RawMessage(`2`), "a": json.RawMessage(`"x"`)}}
	want := `{"v":1,"host":"pi-kitchen","sensor":"temperature","title":"Ambient Temperature","ts":"2026-11-23T10:15:00.000Z","seq":1042,"value":{"magnitude":21.3,"unit":"degC"},"human":"21.3 °C (70.3 °F)","a":"x","b":2}`
	got := string(r.AppendJSON(nil, WithIdentity))
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	back, err := Decode(r.Host, r.Sensor, []byte(got), received)
	if err != nil {
		t.Fatal(err)
	}
	if again := string(back.AppendJSON(nil, WithIdentity)); again != want {
		t.Fatalf("round trip changed it:\n%s", again)
	}
	stored := r.AppendJSON(nil, 0)
	fromStore, err := DecodeStored(r.Host, r.Sensor, r.Time, stored)
	if err != nil {
		t.Fatal(err)
	}
	if again := string(fromStore.AppendJSON(nil, WithIdentity)); again != want {
		t.Fatalf("store round trip changed it:\n%s", again)
	}
}

func TestStatusAndAck(t *testing.T) {
	ts := time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)
	b, _ := json.Marshal(Status{State: StateOnline, Time: ts, Version: "0.1.0"})
	if string(b) != `{"state":"online","ts":"2026-11-23T10:15:00.000Z","version":"0.1.0"}` {
		t.Errorf("status = %s", b)
	}
	b, _ = json.Marshal(Status{State: StateLost})
	if string(b) != `{"state":"lost"}` {
		t.Errorf("will = %s", b)
	}
	b, _ = json.Marshal(Ack{Seq: 7, Time: ts})
	var a Ack
	if err := json.Unmarshal(b, &a); err != nil || a.Seq != 7 || !a.Time.Equal(ts) {
		t.Errorf("ack round trip %s → %+v, %v", b, a, err)
	}
	var s Status
	if err := json.Unmarshal([]byte(`{"ts":"x"}`), &s); err == nil {
		t.Error("status without state accepted")
	}
}

func TestConvertUnit(t *testing.T) {
	tests := []struct {
		v        float64
		from, to string
		want     float64
	}{
		{21, "degC", "degF", 69.8},
		{-40, "degC", "degF", -40},
		{21.2, "degC", "degF", 70.16},
		{69.8, "degF", "degC", 21},
		{0, "degC", "K", 273.15},
		{300, "K", "degF", 80.33},
		{1, "Wh", "J", 3600},
		{7200, "joule", "watt_hour", 2},
		{1013.25, "hPa", "Pa", 101325},
		{0.098, "ratio", "percent", 9.8},
		{5, "V", "V", 5},
		{21, "degree_Celsius", "degC", 21},
	}
	for _, tc := range tests {
		got, err := ConvertUnit(tc.v, tc.from, tc.to)
		if err != nil || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("ConvertUnit(%v, %s, %s) = %v, %v; want %v", tc.v, tc.from, tc.to, got, err, tc.want)
		}
	}
	if _, err := ConvertUnit(1, "degC", "Wh"); !errors.Is(err, ErrIncompatibleUnits) {
		t.Errorf("degC→Wh err = %v", err)
	}
	if _, err := ConvertUnit(1, "degC", "furlong"); !errors.Is(err, ErrUnknownUnit) {
		t.Errorf("unknown unit err = %v", err)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		sensor, value, want string
	}{
		{"temperature", `{"magnitude":21.0,"unit":"degC"}`, "21.0 °C (69.8 °F)"},
		{"temperature", `{"magnitude":-32.0,"unit":"degC"}`, "-32.0 °C (-25.6 °F)"},
		{"temperature", `{"magnitude":21.3,"unit":"degree_Celsius"}`, "21.3 °C (70.3 °F)"},
		{"cpu_temperature", `{"magnitude":48.3,"unit":"degC"}`, "48.3 °C (118.9 °F)"},
		{"relative_humidity", `{"magnitude":45.2,"unit":"percent"}`, "45.2%"},
		{"cpu_load", `{"magnitude":0.098,"unit":"ratio"}`, "9.8%"},
		{"ram_available", `{"magnitude":716476416,"unit":"B"}`, "683.3 MiB"},
		{"ram_available", `{"magnitude":512,"unit":"B"}`, "512 B"},
		{"solar", `{"magnitude":14070867,"unit":"Wh"}`, "14070.867 kWh"},
		{"uptime", `{"magnitude":273906,"unit":"s"}`, "3d 4h 5m 6s"},
		{"shed", `21.5`, "21.5"},
		{"door", `true`, "true"},
		{"co2", `{"magnitude":415,"unit":"ppm"}`, "415 ppm"},
		{"misc", `{"a":1}`, `{"a":1}`},
	}
	for _, tc := range tests {
		if got := Format(tc.sensor, json.RawMessage(tc.value)); got != tc.want {
			t.Errorf("Format(%s, %s) = %q, want %q", tc.sensor, tc.value, got, tc.want)
		}
	}
	// The formats sensors register for values whose shape says too little
	// (registered by publisher/sensors/..., tested by name there).
	for _, tc := range []struct {
		f           Formatter
		value, want string
	}{
		{FormatConnected, `true`, "Connected"},
		{FormatConnected, `false`, "Not connected"},
		{FormatVersion, `{"apd":"0.3.0","go":"go1.26.8","os":"linux","arch":"arm"}`, "apd 0.3.0 (go1.26.8, linux/arm)"},
		{FormatIPAddresses, `["192.168.1.246","fe80::1"]`, "192.168.1.246 (IPv4)\nfe80::1 (IPv6)"},
	} {
		if got := tc.f(json.RawMessage(tc.value)); got != tc.want {
			t.Errorf("format of %s = %q, want %q", tc.value, got, tc.want)
		}
	}
}

func TestNumeric(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"21.5", 21.5, true}, {"-3", -3, true}, {"true", 1, true}, {"false", 0, true},
		{`{"magnitude":2,"unit":"W"}`, 2, true}, {`"x"`, 0, false}, {`{"a":1}`, 0, false},
		{`null`, 0, false}, {`[1]`, 0, false},
	}
	for _, tc := range tests {
		got, ok := Numeric(json.RawMessage(tc.in))
		if ok != tc.ok || got != tc.want {
			t.Errorf("Numeric(%s) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDecodeSelfDescribing(t *testing.T) {
	ok := `{"v":1,"host":"pi","sensor":"t","ts":"2026-11-23T10:15:00.000Z","seq":4,"value":1,"x":2}`
	r, err := DecodeSelfDescribing([]byte(ok))
	if err != nil || r.Host != "pi" || r.Sensor != "t" || r.Seq != 4 || string(r.AppendJSON(nil, WithIdentity)) != ok {
		t.Fatalf("got %+v, %v", r, err)
	}
	for _, tc := range []struct {
		in  string
		err error
	}{
		{`{"host":"pi","sensor":"t","ts":"2026-11-23T10:15:00Z","value":1}`, ErrUnsupportedVersion},
		{`{"v":1,"sensor":"t","ts":"2026-11-23T10:15:00Z","value":1}`, ErrInvalidField},
		{`{"v":1,"host":"a/b","sensor":"t","ts":"2026-11-23T10:15:00Z","value":1}`, ErrInvalidName},
		{`{"v":1,"host":"pi","sensor":"t","value":1}`, ErrInvalidField},
		{`21.5`, ErrInvalidJSON},
	} {
		if _, err := DecodeSelfDescribing([]byte(tc.in)); !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", tc.in, err, tc.err)
		}
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"21.3 °C (70.3 °F)", "21.3 °C (70.3 °F)"},
		{"a\tb", "a\tb"},
		{"\x1b]0;pwned\x07\x1b[2J", `\x1b]0;pwned\x07\x1b[2J`},
		{"line\nnext\r", `line\nnext\r`},
		{"\u009b31m", `\u009b31m`},
		{"abc\u202edef", `abc\u202edef`},
		{"bad\xffbyte", `bad\xffbyte`},
		{"del\x7f", `del\x7f`},
	}
	for _, tc := range tests {
		if got := Printable(tc.in); got != tc.want {
			t.Errorf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// BenchmarkDecode decodes the v1 payload of a fleet's typical reading.
func BenchmarkDecode(b *testing.B) {
	payload := []byte(`{"v":1,"host":"pi-kitchen","sensor":"temperature","title":"Ambient Temperature","ts":"2026-11-23T10:15:00.000Z","seq":1042,"value":{"magnitude":21.3,"unit":"degC"},"human":"21.3 °C (70.3 °F)"}`)
	now := time.Now()
	b.ReportAllocs()
	for range b.N {
		if _, err := Decode("pi-kitchen", "temperature", payload, now); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNumericAgreesWithEncodingJSON: the fast paths of Numeric and
// ParseQuantity give what encoding/json gives, on canonical forms and on
// the forms around them that they must leave to it.
func TestNumericAgreesWithEncodingJSON(t *testing.T) {
	slow := func(raw string) (float64, bool) {
		raw = strings.TrimSpace(raw)
		var f float64
		if err := json.Unmarshal([]byte(raw), &f); err == nil && len(raw) > 0 && raw[0] != 'n' {
			return f, true
		}
		var w struct {
			Magnitude *float64 `json:"magnitude"`
			Unit      string   `json:"unit"`
		}
		if len(raw) > 0 && raw[0] == '{' && json.Unmarshal([]byte(raw), &w) == nil && w.Magnitude != nil {
			return *w.Magnitude, true
		}
		switch raw {
		case "true":
			return 1, true
		case "false":
			return 0, true
		}
		return 0, false
	}
	for _, raw := range []string{"21.5", "-0", "0", "1e5", "1E-3", "-12.25e+2", "1e400", "0x10", "1_000", "Inf", "NaN", "+1", "01", "1.", ".5", "1e", "--1",
		`{"magnitude":21.5,"unit":"degC"}`, `{"magnitude":-3,"unit":""}`, `{"magnitude":1e400,"unit":"W"}`, `{"magnitude":1,"unit":"a\"b"}`,
		`{"magnitude":1,"unit":"a"},"unit":"b"}`, `{"magnitude":1,"unit":"é"}`, "{\"magnitude\":1,\"unit\":\"\xff\"}", `{"magnitude":1,"unit":"\u00e9"}`,
		`{"magnitude":2,"unit":"x","extra":1}`, `{"unit":"x","magnitude":2}`, `{"Magnitude":2,"unit":"x"}`, `{"magnitude":"2","unit":"x"}`,
		`{"magnitude":null,"unit":"x"}`, `{"magnitude":2,"unit":3}`, `{"magnitude":2 ,"unit":"x"}`, `{"magnitude":2,"unit":"x"} `, "true", "false", `"21"`, "null", ""} {
		gotV, gotOK := Numeric(json.RawMessage(raw))
		wantV, wantOK := slow(raw)
		if gotOK != wantOK || gotV != wantV {
			t.Errorf("Numeric(%s) = %v, %v; encoding/json: %v, %v", raw, gotV, gotOK, wantV, wantOK)
		}
		if strings.HasPrefix(strings.TrimSpace(raw), "{") {
			q, ok := ParseQuantity(json.RawMessage(raw))
			var w struct {
				Magnitude *float64 `json:"magnitude"`
				Unit      string   `json:"unit"`
			}
			wantOK := json.Unmarshal([]byte(raw), &w) == nil && w.Magnitude != nil
			if ok != wantOK || ok && (q.Magnitude != *w.Magnitude || q.Unit != w.Unit) {
				t.Errorf("ParseQuantity(%s) = %+v, %v; encoding/json: %+v", raw, q, ok, w)
			}
		}
	}
}

// TestQuantityRawIsEncodingJSON: the hand-written encoding is
// encoding/json's, byte for byte.
func TestQuantityRawIsEncodingJSON(t *testing.T) {
	for _, m := range []float64{0, -0.5, 21.3, 1e-7, 1e-6, 123456789.125, 1e20, 1e21, -3e25, 70.16000000000001} {
		for _, u := range []string{"degC", "", "a\"b", "<W>", "é", "\x01"} {
			q := Quantity{Magnitude: m, Unit: u}
			want, _ := json.Marshal(q)
			if got := q.Raw(); string(got) != string(want) {
				t.Errorf("%+v: %s, encoding/json %s", q, got, want)
			}
		}
	}
}
