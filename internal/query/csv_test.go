package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// decodeAll reads a CSV with opts and returns its readings as ndjson
// lines, its row errors as text, and its error.
func decodeAll(t *testing.T, in string, opts CSVOptions) (readings, problems []string, stats CSVStats, err error) {
	t.Helper()
	stats, err = DecodeCSV(strings.NewReader(in), opts, func(r *schema.Reading) error {
		readings = append(readings, string(r.AppendJSON(nil, schema.WithIdentity)))
		return nil
	}, func(e *RowError) error {
		problems = append(problems, e.Error())
		return nil
	})
	return readings, problems, stats, err
}

// writeCSV writes readings as apd export --format csv does.
func writeCSV(t *testing.T, rs []schema.Reading) string {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter("csv", &b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		if err := w.Write(&rs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestExportCSVRoundTrip: every kind of value the CSV export writes is
// read back as the same reading, so export → import → export gives the
// same bytes.
func TestExportCSVRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)
	reading := func(sensor, value, human string) schema.Reading {
		return schema.Reading{Host: "pi-kitchen", Sensor: sensor, Time: at, Seq: 42, Value: json.RawMessage(value), Human: human}
	}
	tests := []struct {
		name string
		in   schema.Reading
	}{
		{"quantity", reading("temperature", `{"magnitude":21.3,"unit":"degC"}`, "21.3 °C (70.3 °F)")},
		{"negative quantity", reading("temperature", `{"magnitude":-40,"unit":"degC"}`, "-40.0 °C (-40.0 °F)")},
		{"tiny quantity", reading("x", `{"magnitude":1e-9,"unit":"A"}`, "")},
		{"huge quantity", reading("x", `{"magnitude":1e+300,"unit":"J"}`, "")},
		{"quantity without unit", reading("x", `{"magnitude":5,"unit":""}`, "5")},
		{"quantity with more members", reading("x", `{"magnitude":5,"unit":"W","phase":"L1"}`, "5 W")},
		{"quantity written otherwise", reading("x", `{"unit":"W","magnitude":5.10}`, "5.1 W")},
		{"number", reading("x", `21.5`, "21.5")},
		{"true", reading("ac_connected", `true`, "Connected")},
		{"false", reading("ac_connected", `false`, "")},
		{"string", reading("x", `"on, \"really\""`, "")},
		{"string that is a number", reading("x", `"21.5"`, "")},
		{"null", reading("x", `null`, "")},
		{"array", reading("ip_addresses", `["192.168.1.246","fe80::1"]`, "192.168.1.246 (IPv4)\nfe80::1 (IPv6)")},
		{"object", reading("version", `{"apd":"0.3.0","go":"go1.26.8","os":"linux","arch":"arm"}`, "apd 0.3.0")},
		{"empty fields", schema.Reading{Host: "h", Sensor: "s", Time: at, Value: json.RawMessage(`1`)}},
		{"title and extra members", schema.Reading{Host: "h", Sensor: "s", Title: "Ambient, \"quoted\"", Time: at, Value: json.RawMessage(`1`),
			Extra: map[string]json.RawMessage{"z": json.RawMessage(`{"a":[1,2]}`), "a": json.RawMessage(`"x"`)}}},
		{"intermittent error", schema.Reading{Host: "h", Sensor: "s", Time: at, Seq: 1, Error: &schema.SampleError{Kind: schema.Intermittent, Message: "DHT22 checksum mismatch"}}},
		{"persistent error with a colon and lines", schema.Reading{Host: "h", Sensor: "s", Time: at, Error: &schema.SampleError{Kind: schema.Persistent, Message: "exit 1: no such device\nsecond line"}}},
		{"error with human", schema.Reading{Host: "h", Sensor: "s", Time: at, Error: &schema.SampleError{Kind: schema.Persistent, Message: "x"}, Human: "gone"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := writeCSV(t, []schema.Reading{tt.in})
			var back []schema.Reading
			_, err := DecodeCSV(strings.NewReader(first), CSVOptions{}, func(r *schema.Reading) error { back = append(back, *r); return nil },
				func(e *RowError) error { return e })
			if err != nil {
				t.Fatalf("decode %q: %v", first, err)
			}
			if len(back) != 1 {
				t.Fatalf("got %d readings, want 1", len(back))
			}
			if second := writeCSV(t, back); second != first {
				t.Errorf("second export differs:\ngot  %q\nwant %q", second, first)
			}
			// The value itself, not only its columns, comes back: a
			// quantity's JSON as the canonical form writes it.
			want := tt.in
			if want.Human == "" && want.Error == nil {
				want.Human = schema.Format(want.Sensor, want.Value) // what the human column showed
			}
			if q, ok := schema.ParseQuantity(want.Value); ok && q.Unit != "" && bytes.Equal(q.Raw(), want.Value) {
				want.Value = q.Raw()
			}
			got, exp := string(back[0].AppendJSON(nil, schema.WithIdentity)), string(want.AppendJSON(nil, schema.WithIdentity))
			if got != exp {
				t.Errorf("reading:\ngot  %s\nwant %s", got, exp)
			}
		})
	}
}

// TestExportCSVTerminalSafe: text from devices is written without control
// characters, and a JSON value escaped so is still the same JSON.
func TestExportCSVTerminalSafe(t *testing.T) {
	r := schema.Reading{Host: "h", Sensor: "s", Time: time.Unix(0, 0), Value: json.RawMessage("\"a\x1b[2Jb\u202e\x7f\""), Human: "x\x1b]0;t\x07"}
	first := writeCSV(t, []schema.Reading{r})
	if strings.ContainsAny(first, "\x1b\x07\x7f\u202e") {
		t.Fatalf("control characters written: %q", first)
	}
	readings, problems, _, err := decodeAll(t, first, CSVOptions{})
	if err != nil || len(problems) > 0 || len(readings) != 1 {
		t.Fatalf("decode: %v %v %v", readings, problems, err)
	}
	var s string
	var back schema.Reading
	back, _ = schema.DecodeSelfDescribing([]byte(readings[0]))
	if err := json.Unmarshal(back.Value, &s); err != nil || s != "a\x1b[2Jb\u202e\x7f" {
		t.Errorf("value read back as %q (%v), want the same string", s, err)
	}
}

func TestExportCSVBadRows(t *testing.T) {
	head := "host,sensor,ts,seq,value,unit,human,error\n"
	tests := []struct {
		name, row, want string
	}{
		{"bad host", "pi kitchen,t,2026-11-23T10:15:00.000Z,,1,,,", "line 2: host: invalid name"},
		{"bad time", "pi,t,yesterday,,1,,,", `line 2: ts "yesterday" is not an RFC 3339 time`},
		{"bad seq", "pi,t,2026-11-23T10:15:00.000Z,-1,1,,,", `line 2: seq "-1"`},
		{"no value", "pi,t,2026-11-23T10:15:00.000Z,,,,,", "line 2: neither a value nor an error"},
		{"not JSON", "pi,t,2026-11-23T10:15:00.000Z,,on,,,", "line 2: value \"on\": not JSON"},
		{"magnitude not a number", "pi,t,2026-11-23T10:15:00.000Z,,warm,degC,,", `line 2: value "warm" with unit degC is not a number`},
		{"bad error kind", "pi,t,2026-11-23T10:15:00.000Z,,,,,broken: x", `line 2: error "broken: x"`},
		{"value and error", "pi,t,2026-11-23T10:15:00.000Z,,1,,,persistent: x", "line 2: both a value and an error"},
		{"short row", "pi,t,2026-11-23T10:15:00.000Z", "line 2: 3 fields, the header has 8"},
		{"bad quote", `pi,"t"x,2026-11-23T10:15:00.000Z,,1,,,`, `line 2: extraneous or missing " in quoted-field`},
		{"number out of range", "pi,t,2026-11-23T10:15:00.000Z,,1e999,,,", "line 2: value \"1e999\": a number out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := head + tt.row + "\npi,t,2026-11-23T10:16:00.000Z,,1,,,\n"
			readings, problems, stats, err := decodeAll(t, in, CSVOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) != 1 || !strings.HasPrefix(problems[0], tt.want) {
				t.Errorf("problems %q, want one starting %q", problems, tt.want)
			}
			if len(readings) != 1 || stats.BadRows != 1 || stats.Rows != 2 {
				t.Errorf("the good row after it: %d readings, stats %+v", len(readings), stats)
			}
		})
	}
}

func TestLoggerCSV(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		opts     CSVOptions
		want     []string // readings as host/sensor/ts=value
		problems []string
		ignored  []string
	}{
		{
			name: "DHT22 logger: date and time columns, units per column",
			in:   "Date,Time,Temperature,Humidity\n2024-01-15,08:00:00,19.5,48.2\n2024-01-15,08:10:00,19.7,\n",
			opts: CSVOptions{Host: "shed", Units: map[string]string{"Temperature": "degC", "Humidity": "percent"}},
			want: []string{
				`shed/Temperature/2024-01-15T08:00:00.000Z={"magnitude":19.5,"unit":"degC"}`,
				`shed/Humidity/2024-01-15T08:00:00.000Z={"magnitude":48.2,"unit":"percent"}`,
				`shed/Temperature/2024-01-15T08:10:00.000Z={"magnitude":19.7,"unit":"degC"}`,
			},
		},
		{
			name: "host column, RFC 3339, no units",
			in:   "ts,host,temp_c\n2024-01-15T08:00:00Z,pi-a,1\n2024-01-15T09:00:00.1234+01:00,pi b,2.50\n",
			want: []string{"pi-a/temp_c/2024-01-15T08:00:00.000Z=1", "pi-b/temp_c/2024-01-15T08:00:00.123Z=2.5"},
		},
		{
			name: "one column as a named sensor, unix seconds, long unit name",
			in:   "timestamp,t\n1700000000,21\n1700000000.5,22\n",
			opts: CSVOptions{Host: "pi", Sensor: "temperature", TimeFormat: "unix", Units: map[string]string{"": "degree_Celsius"}},
			want: []string{
				`pi/temperature/2023-11-14T22:13:20.000Z={"magnitude":21,"unit":"degC"}`,
				`pi/temperature/2023-11-14T22:13:20.500Z={"magnitude":22,"unit":"degC"}`,
			},
		},
		{
			name: "unix_ms, quoted fields, semicolons",
			in:   "\"time\";\"power W\"\n1700000000123;\"1500\"\n",
			opts: CSVOptions{Host: "pi", Comma: ';', TimeFormat: "unix_ms", Units: map[string]string{"power W": "W"}},
			want: []string{`pi/power-W/2023-11-14T22:13:20.123Z={"magnitude":1500,"unit":"W"}`},
		},
		{
			name: "strftime in a time zone",
			in:   "when,rh\n15/01/2024 08:00:00,40\n",
			opts: CSVOptions{Host: "pi", TimeColumns: []string{"when"}, TimeFormat: "%d/%m/%Y %H:%M:%S", Location: time.FixedZone("CET", 3600)},
			want: []string{"pi/rh/2024-01-15T07:00:00.000Z=40"},
		},
		{
			name: "strftime with fractions",
			in:   "time,v\n2024-01-15 08:00:00.25,1\n",
			opts: CSVOptions{Host: "pi", TimeFormat: "%Y-%m-%d %H:%M:%S.%f"},
			want: []string{"pi/v/2024-01-15T08:00:00.250Z=1"},
		},
		{
			name:    "byte order mark and a text column",
			in:      "\ufeffts,temp,notes\n2024-01-15T08:00:00Z,1,door open\n2024-01-15T08:01:00Z,2,\n",
			opts:    CSVOptions{Host: "pi"},
			want:    []string{"pi/temp/2024-01-15T08:00:00.000Z=1", "pi/temp/2024-01-15T08:01:00.000Z=2"},
			ignored: []string{`notes: not numbers (line 2: "door open")`},
		},
		{
			name: "bad rows and values, with line numbers",
			in: "ts,temp,rh\n2024-01-15T08:00:00Z,1,2\nyesterday,1,2\n2024-01-15T08:01:00Z,nan,3\n" +
				"\"2024-01-15T08:02:00Z\",\"multi\nline\",4\n2024-01-15T08:03:00Z,5\n2024-01-15T08:04:00Z,6,7\n",
			opts: CSVOptions{Host: "pi"},
			want: []string{
				"pi/temp/2024-01-15T08:00:00.000Z=1", "pi/rh/2024-01-15T08:00:00.000Z=2",
				"pi/rh/2024-01-15T08:01:00.000Z=3", "pi/rh/2024-01-15T08:02:00.000Z=4",
				"pi/temp/2024-01-15T08:04:00.000Z=6", "pi/rh/2024-01-15T08:04:00.000Z=7",
			},
			problems: []string{
				`line 3: time "yesterday" is not an RFC 3339 time`,
				`line 4, column temp: "nan" is not a number`,
				`line 5, column temp: "multi\nline" is not a number`,
				`line 7: 2 fields, the header has 3`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readings, problems, stats, err := decodeAll(t, tt.in, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range readings {
				r, err := schema.DecodeSelfDescribing([]byte(line))
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("%s/%s/%s=%s", r.Host, r.Sensor, schema.FormatTime(r.Time), r.Value))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("readings:\ngot  %q\nwant %q", got, tt.want)
			}
			if !slices.Equal(problems, tt.problems) {
				t.Errorf("problems:\ngot  %q\nwant %q", problems, tt.problems)
			}
			if !slices.Equal(stats.Ignored, tt.ignored) {
				t.Errorf("ignored: got %q, want %q", stats.Ignored, tt.ignored)
			}
		})
	}
}

func TestLoggerCSVHeaderErrors(t *testing.T) {
	tests := []struct {
		name, in string
		opts     CSVOptions
		want     string
	}{
		{"no host", "ts,temp\n", CSVOptions{}, "which host are these readings of?"},
		{"no time column", "when,temp\n", CSVOptions{Host: "pi"}, "no time column among when,temp: name it with --time-column"},
		{"missing named time column", "ts,temp\n", CSVOptions{Host: "pi", TimeColumns: []string{"when"}}, `no time column "when"`},
		{"sensor with two columns", "ts,a,b\n", CSVOptions{Host: "pi", Sensor: "x"}, "--sensor names one column, and a, b are left"},
		{"unit for no column", "ts,a\n", CSVOptions{Host: "pi", Units: map[string]string{"b": "W"}}, `--unit b=W: no value column "b"`},
		{"two headers, one sensor", "ts,a b,a-b\n", CSVOptions{Host: "pi"}, "would both be sensor a-b"},
		{"options on an export", "host,sensor,ts,seq,value,unit,human,error\n", CSVOptions{Host: "pi"}, "this is apd export's CSV"},
		{"empty", "", CSVOptions{}, "the file is empty"},
		{"bad host option", "ts,a\n", CSVOptions{Host: "pi kitchen"}, "--host: invalid name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := decodeAll(t, tt.in, tt.opts)
			if !errors.Is(err, ErrCSVHeader) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an ErrCSVHeader saying %q", err, tt.want)
			}
		})
	}
}

func TestTimeParser(t *testing.T) {
	tests := []struct {
		format, in, want string
	}{
		{"", "2024-01-15T08:00:00Z", "2024-01-15T08:00:00.000Z"},
		{"rfc3339", "2024-01-15 08:00:00.9999+02:00", "2024-01-15T06:00:00.999Z"},
		{"", "2024-01-15 08:00:00", "2024-01-15T08:00:00.000Z"},
		{"unix", "0", "1970-01-01T00:00:00.000Z"},
		{"unix", "-1.5", "1969-12-31T23:59:58.500Z"},
		{"UNIX_MS", "1700000000123", "2023-11-14T22:13:20.123Z"},
		{"%Y-%m-%dT%H:%M:%S%z", "2024-01-15T08:00:00+0100", "2024-01-15T07:00:00.000Z"},
		{"%d.%m.%y %I:%M %p", "15.01.24 08:30 PM", "2024-01-15T20:30:00.000Z"},
		{"%b %e %T %Y", "Jan  5 08:00:00 2024", "2024-01-05T08:00:00.000Z"},
		{"%F %T,%f", "2024-01-15 08:00:00,5", "2024-01-15T08:00:00.500Z"},
	}
	for _, tt := range tests {
		parse, _, err := TimeParser(tt.format, nil)
		if err != nil {
			t.Errorf("%q: %v", tt.format, err)
			continue
		}
		got, err := parse(tt.in)
		if err != nil || schema.FormatTime(got) != tt.want {
			t.Errorf("%q %q: got %s, %v; want %s", tt.format, tt.in, schema.FormatTime(got), err, tt.want)
		}
	}
	for _, bad := range []string{"2006-01-02", "%Y-%q", "%Y %f", "%Y%"} {
		if _, _, err := TimeParser(bad, nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	parse, _, _ := TimeParser("unix", nil)
	if _, err := parse("NaN"); err == nil {
		t.Error("unix NaN accepted")
	}
}

func TestParseUnitOptions(t *testing.T) {
	got, err := ParseUnitOptions([]string{"degree_Celsius", "rh=%", "p=watt_hour"})
	want := map[string]string{"": "degC", "rh": "percent", "p": "Wh"}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
	if _, err := ParseUnitOptions([]string{"furlong"}); err == nil {
		t.Error("unknown unit accepted")
	}
}
