package demo

import (
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/apd-telemetry/apd/internal/rules"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/schema"
)

// end is a fixed end of history, so the tests see the same week.
var end = time.Date(2026, 11, 23, 10, 15, 0, 0, time.UTC)

func magnitude(t *testing.T, r schema.Reading) float64 {
	t.Helper()
	q, ok := schema.ParseQuantity(r.Value)
	if !ok {
		t.Fatalf("%s/%s at %s: not a quantity: %s", r.Host, r.Sensor, r.Time, r.Value)
	}
	return q.Magnitude
}

// hourly returns the mean of h's sensor by solar hour over the week
// before end, and the mean daily range.
func hourly(t *testing.T, f *Fleet, h *Host, sensor string) (means [24]float64, dailyRange float64) {
	t.Helper()
	var n [24]int
	lo, hi := map[int64]float64{}, map[int64]float64{}
	for ts := end.Add(-7 * 24 * time.Hour); ts.Before(end); ts = ts.Add(5 * time.Minute) {
		r := f.Reading(h, sensor, ts)
		if r.Error != nil {
			continue
		}
		v := magnitude(t, r)
		hr := int(solarHour(ts, lon))
		means[hr] += v
		n[hr]++
		d := solarDay(ts, lon)
		if _, ok := lo[d]; !ok {
			lo[d], hi[d] = v, v
		}
		lo[d], hi[d] = min(lo[d], v), max(hi[d], v)
	}
	for i := range means {
		means[i] /= float64(n[i])
	}
	for d := range lo {
		dailyRange += hi[d] - lo[d]
	}
	return means, dailyRange / float64(len(lo))
}

// TestDailyCycle: afternoons are warmer than the small hours outdoors and
// in the greenhouse, which swings most; heated rooms swing least.
func TestDailyCycle(t *testing.T) {
	t.Parallel()
	f := New(DefaultSeed)
	ranges := map[string]float64{}
	for _, name := range []string{"garden", "greenhouse", "living-room", "bedroom"} {
		means, rng := hourly(t, f, f.Host(name), Temperature)
		ranges[name] = rng
		if name == "garden" || name == "greenhouse" {
			if afternoon, night := (means[13]+means[14]+means[15])/3, (means[3]+means[4]+means[5])/3; afternoon < night+4 {
				t.Errorf("%s: afternoon %.1f °C, small hours %.1f °C: want the afternoon at least 4 °C warmer", name, afternoon, night)
			}
		}
	}
	if !(ranges["greenhouse"] > ranges["garden"] && ranges["garden"] > 2*ranges["living-room"]) {
		t.Errorf("mean daily ranges %v: want greenhouse > garden > 2 × living room", ranges)
	}
	if r := ranges["living-room"]; r < 1 || r > 6 {
		t.Errorf("living room's daily range %.1f °C: want a heated room's 1–6", r)
	}
	// The bathroom's humidity peaks after the morning shower.
	means, _ := hourly(t, f, f.Host("bathroom"), Humidity)
	if means[7] < means[4]+10 {
		t.Errorf("bathroom humidity at 07h %.0f %%, at 04h %.0f %%: want the shower's peak", means[7], means[4])
	}
}

// TestDeterministic: a reading depends on the seed, host, sensor and
// time alone, so history and live readings agree and runs repeat.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	a, b, other := New(7), New(7), New(8)
	ts := end.Add(-3 * time.Hour)
	differ := 0
	for _, h := range a.Hosts {
		for _, s := range h.Sensors {
			ra := a.Reading(h, s, ts)
			_ = a.Reading(h, s, ts.Add(time.Minute)) // asking for others changes nothing
			rb := b.Reading(b.Host(h.Name), s, ts)
			if string(ra.Value) != string(rb.Value) || (ra.Error == nil) != (rb.Error == nil) {
				t.Errorf("%s/%s: seed 7 gave %s then %s", h.Name, s, ra.Value, rb.Value)
			}
			if string(ra.Value) != string(other.Reading(other.Host(h.Name), s, ts).Value) {
				differ++
			}
		}
	}
	if differ < 30 {
		t.Errorf("seeds 7 and 8 differ in only %d readings", differ)
	}
}

// TestSensorsInRange: every value is plausible for its sensor, the
// energy counter never runs backwards, and only the shed's DHT22 fails,
// on some ticks.
func TestSensorsInRange(t *testing.T) {
	t.Parallel()
	f := New(DefaultSeed)
	for _, h := range f.Hosts {
		prevEnergy, errs, n := 0.0, 0, 0
		for ts := end.Add(-7 * 24 * time.Hour); ts.Before(end); ts = ts.Add(time.Minute) {
			for _, s := range h.Sensors {
				r := f.Reading(h, s, ts)
				n++
				if r.Error != nil {
					errs++
					if r.Error.Kind != schema.Intermittent {
						t.Fatalf("%s/%s: error kind %s", h.Name, s, r.Error.Kind)
					}
					continue
				}
				v := magnitude(t, r)
				ok := true
				switch s {
				case Temperature:
					ok = v > -15 && v < 45
				case Humidity:
					ok = v >= 0 && v <= 100
				case CPULoad:
					ok = v >= 0 && v <= 1
				case RAM:
					ok = v > 0 && v <= h.ram && math.Mod(v, 4096) == 0
				case Energy:
					ok = v >= prevEnergy
					prevEnergy = v
				}
				if !ok {
					t.Fatalf("%s/%s at %s: %s", h.Name, s, ts, r.Value)
				}
			}
		}
		share := float64(errs) / float64(n)
		switch {
		case h.Name == FailingHost && (share < 0.02 || share > 0.4):
			t.Errorf("%s: %.1f%% of readings failed: want some ticks, not most", h.Name, 100*share)
		case h.Name != FailingHost && errs > 0:
			t.Errorf("%s: %d failed readings", h.Name, errs)
		}
	}
}

func demoRules(t *testing.T) []rules.Config {
	t.Helper()
	var tree map[string]any
	if _, err := toml.Decode(Rules, &tree); err != nil {
		t.Fatal(err)
	}
	cfgs, err := rules.Parse(tree["rules"].([]map[string]any))
	if err != nil {
		t.Fatal(err)
	}
	return cfgs
}

// TestImport writes a week of history (every 5 minutes, to be quick) into a real store: the hosts'
// names, colours and locations, every series, the offline host's lost
// status and its readings stopping, and the rule's outcomes.
func TestImport(t *testing.T) {
	t.Parallel()
	st, err := engine.Open(filepath.Join(t.TempDir(), "apd.db"), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := New(DefaultSeed)
	var progress []int
	imp, err := f.Import(st, History{End: end, Step: 5 * time.Minute, Rules: demoRules(t),
		Progress: func(done, total int) { progress = append(progress, done) }})
	if err != nil {
		t.Fatal(err)
	}
	if want := end.Add(-7 * 24 * time.Hour); !imp.Start.Equal(want) {
		t.Errorf("history starts %s, want %s", imp.Start, want)
	}
	if len(progress) < 2 || !slices.IsSorted(progress) {
		t.Errorf("progress %v", progress)
	}
	hosts, err := st.(store.Reader).Hosts()
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != len(f.Hosts) {
		t.Fatalf("%d hosts stored, want %d", len(hosts), len(f.Hosts))
	}
	for _, h := range hosts {
		want := f.Host(h.Name)
		if h.Display != want.Meta.Display || h.Colour != want.Meta.Colour || h.Location == nil {
			t.Errorf("host %s: %+v", h.Name, h.HostMeta)
		}
		perSeries := uint64(7 * 24 * 12)
		if h.Name == OfflineHost {
			perSeries -= uint64(OfflineAgo / (5 * time.Minute))
			if h.State != schema.StateLost || h.Sensors[Temperature].Last.After(end.Add(-OfflineAgo)) {
				t.Errorf("offline host: state %q, last temperature %s", h.State, h.Sensors[Temperature].Last)
			}
		}
		for _, s := range want.Sensors {
			if got := h.Sensors[s].Count; got != perSeries {
				t.Errorf("%s/%s: %d readings, want %d", h.Name, s, got, perSeries)
			}
		}
	}
	var outcomes []string
	err = st.(store.Reader).Scan(store.Query{Sensor: RuleName}, func(r *schema.Reading) error {
		outcomes = append(outcomes, string(r.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(outcomes) != imp.Outcomes || !slices.Contains(outcomes, "true") || !slices.Contains(outcomes, "false") {
		t.Errorf("rule outcomes %v (import counted %d): want it to fire and clear", outcomes, imp.Outcomes)
	}
}
