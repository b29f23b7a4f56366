package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/schema"
)

// TestHealthObserve: of a sensor's samples, the first of each run of
// failures is stored (marked failing, count 1), the rest counted (and
// stored again every repeatEvery, with the count), and the first good
// sample after them is stored marked recovered with the run's count.
func TestHealthObserve(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		samples string // one letter per tick (10 s apart): g good, f failed
		repeat  time.Duration
		want    string // per tick: - not stored, g good, G recovered(n), F failing(n)
	}{
		{"all good", "gggg", 0, "g g g g"},
		{"one failure", "gfgg", 0, "g F1 G1 g"},
		{"long failure", "gffffffg", 0, "g F1 - - - - - G6"},
		{"fails from the start", "fffg", 0, "F1 - - G3"},
		{"two failures", "ffgffg", 0, "F1 - G2 F1 - G2"},
		{"repeated every 30s", "fffffffg", 30 * time.Second, "F1 - - F4 - - F7 G7"},
		{"never recovers", "ffff", 0, "F1 - - -"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealth(tc.repeat)
			var got []string
			for i, c := range tc.samples {
				s := Sample{Name: "temperature", Time: t0.Add(time.Duration(i) * 10 * time.Second)}
				if c == 'f' {
					s.Err = Persistent(errors.New("no such device"))
				}
				store, _ := h.observe(&s)
				switch {
				case !store:
					got = append(got, "-")
				case s.Failing != nil:
					got = append(got, fmt.Sprintf("F%d", s.Failing.FailedSamples))
				case s.Recovered != nil:
					got = append(got, fmt.Sprintf("G%d", s.Recovered.FailedSamples))
				default:
					got = append(got, "g")
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Fatalf("got  %s\nwant %s", g, tc.want)
			}
		})
	}
}

// flakySensor fails every other read intermittently: with retries, every
// sample succeeds.
type flakySensor struct{ calls atomic.Int32 }

func (*flakySensor) Title() string { return "Flaky" }
func (f *flakySensor) Read(context.Context) (any, error) {
	if f.calls.Add(1)%2 == 1 {
		return nil, Intermittent(errors.New("checksum"))
	}
	return 1, nil
}

// TestRunStoresFailuresOnce runs the sampling loop at a fast interval: an
// absent sensor is never read and produces no reading; a sensor that
// fails for N ticks produces one error reading, then one recovery that
// counts N, then plain readings; a sensor whose intermittent errors are
// retried away inside a tick never fails. $status says all of it.
func TestRunStoresFailuresOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for clock ticks")
	}
	const failingTicks = 8
	spool := openSpool(t, filepath.Join(t.TempDir(), "spool.db"))
	defer spool.Close()
	client := &fakeClient{}
	results := make([]func(context.Context) (any, error), 0, failingTicks+1)
	for range failingTicks {
		results = append(results, fail(Persistent(errors.New("no battery"))))
	}
	failing := &fakeSensor{title: "Battery Level", results: append(results, value(87))}
	absent := &fakeSensor{title: "Ambient Temperature", results: []func(context.Context) (any, error){value(21)}}
	flaky := &flakySensor{}
	p := New(Options{Host: "pi", Interval: 20 * time.Millisecond, DrainTimeout: 100 * time.Millisecond, Sensors: []Named{
		{Name: "temperature", Sensor: absent, Policy: fast, Absent: NotPresent("no DHT11/DHT22 IIO device under /sys/bus/iio/devices")},
		{Name: "battery_level", Sensor: failing, Policy: fast},
		{Name: "flaky", Sensor: flaky, Policy: fast},
	}}, spool, client)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "a failing $status", func() bool { return client.count(`"battery_level":{"state":"failing"`) > 0 })
	waitFor(t, "recovery and three good readings after it", func() bool {
		return failing.calls.Load() >= failingTicks+4 && client.count("apd/pi/battery_level ") >= 5
	})
	waitFor(t, "an ok $status after the recovery", func() bool {
		return client.count(`"battery_level":{"state":"ok"},"flaky":{"state":"ok"},"temperature":{"state":"absent","reason":"no DHT11/DHT22 IIO device under /sys/bus/iio/devices"}`) > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if n := absent.calls.Load(); n != 0 || client.count("apd/pi/temperature ") != 0 {
		t.Errorf("absent sensor: read %d times, %d readings", n, client.count("apd/pi/temperature "))
	}
	if client.count("apd/pi/flaky ") == 0 {
		t.Error("no readings of the flaky sensor")
	}
	for _, m := range client.published {
		if strings.HasPrefix(m, "apd/pi/flaky ") && strings.Contains(m, `"error"`) {
			t.Errorf("an intermittent error retried away inside its tick was stored: %s", m)
		}
	}

	var errorsStored, recoveries, plain int
	var recovered schema.FailureRun
	for _, m := range client.published {
		payload, ok := strings.CutPrefix(m, "apd/pi/battery_level ")
		if !ok {
			continue
		}
		r, err := schema.Decode("pi", "battery_level", []byte(payload), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		switch f, isRecovery := schema.FailureRunOf(&r, schema.MemberRecovered); {
		case r.Error != nil:
			errorsStored++
			if run, ok := schema.FailureRunOf(&r, schema.MemberFailing); !ok || run.FailedSamples != 1 || !run.Since.Equal(r.Time) {
				t.Errorf("error reading %s: failing member %+v, %v", payload, run, ok)
			}
		case isRecovery:
			recoveries++
			recovered = f
		default:
			if recoveries == 0 {
				t.Errorf("a good reading before the recovery: %s", payload)
			}
			plain++
		}
	}
	if errorsStored != 1 || recoveries != 1 || plain < 3 || recovered.FailedSamples != failingTicks {
		t.Errorf("battery_level: %d error readings, %d recoveries (%d failed samples), %d plain readings; want 1, 1 (%d), ≥3",
			errorsStored, recoveries, recovered.FailedSamples, plain, failingTicks)
	}
	// The failing $status says since when and how often so far.
	var sawFailing bool
	for _, m := range client.published {
		payload, ok := strings.CutPrefix(m, "apd/pi/$status ")
		if !ok {
			continue
		}
		var st schema.Status
		if err := json.Unmarshal([]byte(payload), &st); err != nil {
			t.Fatal(err)
		}
		if s := st.Sensors["battery_level"]; s.State == schema.SensorFailing {
			sawFailing = true
			if !s.Failing.Since.Equal(recovered.Since) || s.Failing.FailedSamples < 1 || s.Error == nil || s.Error.Message != "no battery" {
				t.Errorf("failing state %+v (error %+v), want since %s", s, s.Error, recovered.Since)
			}
		}
	}
	if !sawFailing {
		t.Error("no $status said battery_level was failing")
	}
}
