package clean

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

var noon = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// in is one input reading: a value (JSON) or failed, at an offset from noon.
type in struct {
	at    time.Duration
	value string // "" means a failed reading
}

type out struct {
	at    time.Duration
	value float64
}

func readings(ins []in) []schema.Reading {
	rs := make([]schema.Reading, len(ins))
	for i, x := range ins {
		rs[i] = schema.Reading{Host: "pi", Sensor: "s", Time: noon.Add(x.at)}
		if x.value == "" {
			rs[i].Error = &schema.SampleError{Message: "read failed"}
		} else {
			rs[i].Value = json.RawMessage(x.value)
		}
	}
	return rs
}

func c(v float64) string  { return fmt.Sprintf(`{"magnitude":%g,"unit":"degC"}`, v) }
func wh(v float64) string { return fmt.Sprintf(`{"magnitude":%g,"unit":"Wh"}`, v) }

// minutes makes readings one minute apart.
func minutes(vals ...string) []in {
	ins := make([]in, len(vals))
	for i, v := range vals {
		ins[i] = in{time.Duration(i) * time.Minute, v}
	}
	return ins
}

func TestCleaners(t *testing.T) {
	const tol = 1e-4
	for _, tc := range []struct {
		name, cleaner string
		tz            string
		in            []in
		want          []out
	}{
		// SPEC §7 vectors.
		{"temperature one", "temperature", "", minutes(c(21)), []out{{0, 21}}},
		{"temperature steady", "temperature", "", minutes(c(21), c(21), c(21)), []out{{0, 21}, {time.Minute, 21}, {2 * time.Minute, 21}}},
		{"temperature spike", "temperature", "", minutes(c(21), c(61), c(21)), []out{{0, 21}, {2 * time.Minute, 21}}},
		{"temperature out of range", "temperature", "", minutes(c(91), c(91), c(91)), nil},
		{"temperature failed between", "temperature", "", minutes(c(31), "", c(32)), []out{{0, 31}, {2 * time.Minute, 32}}},
		{"watts hour", "watts", "", []in{{0, wh(1)}, {time.Hour, wh(10)}}, []out{{time.Hour, 9}}},
		{"watts 23m42s", "watts", "", []in{{0, wh(1)}, {23*time.Minute + 42*time.Second, wh(10)}}, []out{{23*time.Minute + 42*time.Second, 22.7848}}},
		{"watts joules between", "watts", "", []in{{0, wh(1)}, {time.Hour, `{"magnitude":10000,"unit":"J"}`}, {2 * time.Hour, wh(3)}},
			[]out{{time.Hour, 1.7778}, {2 * time.Hour, 0.2222}}},
		// Beyond the SPEC's vectors.
		{"temperature bounds are open", "temperature", "", minutes(c(-40), c(80), c(79.9)), []out{{2 * time.Minute, 79.9}}},
		{"temperature in degF", "temperature", "", minutes(`{"magnitude":70,"unit":"degF"}`), []out{{0, 70}}},
		// The last reading has no right neighbour and stays; the rule as
		// written then drops the one before it, whose neighbours' mean the
		// jump moved.
		{"temperature a jump at the end", "temperature", "", minutes(c(21), c(21), c(40)), []out{{0, 21}, {2 * time.Minute, 40}}},
		{"temperature exactly 2.5 stays", "temperature", "", minutes(c(20), c(22.5), c(20)), []out{{0, 20}, {time.Minute, 22.5}, {2 * time.Minute, 20}}},
		{"temperature not a temperature", "temperature", "", minutes(`"hot"`, `true`, `{"magnitude":3,"unit":"W"}`), nil},
		{"watts counter reset", "watts", "", []in{{0, wh(100)}, {time.Hour, wh(110)}, {2 * time.Hour, wh(2)}, {3 * time.Hour, wh(7)}},
			[]out{{time.Hour, 10}, {3 * time.Hour, 5}}},
		{"watts bare numbers are Wh", "watts", "", []in{{0, "5"}, {30 * time.Minute, "6"}}, []out{{30 * time.Minute, 2}}},
		{"watts failed skipped", "watts", "", []in{{0, wh(1)}, {time.Hour, ""}, {2 * time.Hour, wh(3)}}, []out{{2 * time.Hour, 1}}},
		{"passthrough drops failed", "passthrough", "", minutes(c(1), "", c(3)), []out{{0, 1}, {2 * time.Minute, 3}}},
		{"magnitude", "magnitude", "", minutes(c(21.5), `true`, `"x"`, `7`), []out{{0, 21.5}, {time.Minute, 1}, {3 * time.Minute, 7}}},
		{"fahrenheit", "fahrenheit", "", minutes(c(100), c(-40), `{"magnitude":1,"unit":"W"}`), []out{{0, 212}, {time.Minute, -40}}},
		// noon UTC = 13:00 in Amsterdam; 23:30 UTC is already the next day there.
		{"daily totals", "daily_kwh", "", []in{{0, wh(1000)}, {6 * time.Hour, wh(3000)}, {11 * time.Hour, wh(4000)}, {13 * time.Hour, wh(6500)}, {14 * time.Hour, wh(7000)}},
			[]out{{-12 * time.Hour, 3}, {12 * time.Hour, 3}}},
		{"daily totals local days", "daily_kwh", "Europe/Amsterdam", []in{{0, wh(1000)}, {6 * time.Hour, wh(3000)}, {11*time.Hour + 30*time.Minute, wh(4000)}, {13 * time.Hour, wh(6500)}},
			[]out{{-13 * time.Hour, 2}, {11 * time.Hour, 3.5}}},
		{"daily totals reset", "daily_kwh", "", []in{{0, wh(1000)}, {time.Hour, wh(2000)}, {2 * time.Hour, wh(10)}, {3 * time.Hour, wh(510)}},
			[]out{{-12 * time.Hour, 1.5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := Lookup(tc.cleaner)
			if err != nil {
				t.Fatal(err)
			}
			opts := Options{}
			if tc.tz != "" {
				if opts.Location, err = time.LoadLocation(tc.tz); err != nil {
					t.Skip("no time zone data:", err)
				}
			}
			var got []out
			emit := func(r *schema.Reading) error {
				v, ok := schema.Numeric(r.Value)
				if !ok {
					return fmt.Errorf("point %s is not a number", r.Value)
				}
				if k.Unit != "" {
					if q, _ := schema.ParseQuantity(r.Value); q.Unit != k.Unit {
						return fmt.Errorf("point %s: want unit %s", r.Value, k.Unit)
					}
				}
				got = append(got, out{r.Time.Sub(noon), v})
				return nil
			}
			run := NewRun(k, opts)
			for _, r := range readings(tc.in) {
				if err := run.Add(&r, emit); err != nil {
					t.Fatal(err)
				}
			}
			if err := run.Flush(emit); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].at != tc.want[i].at || math.Abs(got[i].value-tc.want[i].value) > tol {
					t.Fatalf("point %d: got %v, want %v (all: %v)", i, got[i], tc.want[i], got)
				}
			}
		})
	}
}

// TestRunSplitsSeries: a run over two hosts cleans each on its own (no
// window spans them).
func TestRunSplitsSeries(t *testing.T) {
	k, _ := Lookup("watts")
	rs := readings([]in{{0, wh(1)}, {time.Hour, wh(2)}})
	other := readings([]in{{2 * time.Hour, wh(100)}, {3 * time.Hour, wh(104)}})
	for i := range other {
		other[i].Host = "pj"
	}
	var got []string
	run := NewRun(k, Options{})
	for _, r := range append(rs, other...) {
		if err := run.Add(&r, func(p *schema.Reading) error { got = append(got, p.Host+" "+p.Human); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	_ = run.Flush(nil)
	if strings.Join(got, "; ") != "pi 1.0 W; pj 4.0 W" {
		t.Errorf("got %q", got)
	}
}

func TestLookupUnknown(t *testing.T) {
	if _, err := Lookup("nope"); err == nil || !strings.Contains(err.Error(), "temperature") {
		t.Errorf("error %v should list the cleaners", err)
	}
	if Names()[0] != "passthrough" {
		t.Errorf("names %v", Names())
	}
}
