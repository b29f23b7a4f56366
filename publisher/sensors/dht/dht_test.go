package dht

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

// errnoFiles reads files like the driver: NAME.errno next to NAME makes
// the read fail with that errno; failures counts the failed reads.
func errnoFiles(failures *int) func(string) ([]byte, error) {
	errnos := map[string]syscall.Errno{"EIO": syscall.EIO, "ETIMEDOUT": syscall.ETIMEDOUT}
	return func(path string) ([]byte, error) {
		if b, err := os.ReadFile(path + ".errno"); err == nil {
			*failures++
			return nil, &os.PathError{Op: "read", Path: path, Err: errnos[strings.TrimSpace(string(b))]}
		}
		return os.ReadFile(path)
	}
}

func build(t *testing.T, params map[string]any, failures *int) (temp, hum publisher.Sensor) {
	t.Helper()
	env := publisher.Env{Params: params, Devices: &publisher.Devices{}}
	temp, err := newSensor(env, temperature)
	if err != nil {
		t.Fatal(err)
	}
	hum, err = newSensor(env, humidity)
	if err != nil {
		t.Fatal(err)
	}
	temp.(Sensor).dev.ReadFile = errnoFiles(failures)
	return temp, hum
}

func TestFixtures(t *testing.T) {
	tests := []struct {
		dir            string
		model          string
		temp, hum      float64
		tempErr, humEr string // substring of the error; "" for a value
	}{
		{"good", "", 21.0, 45.2, "", ""},
		{"good", "dht11", 21.0, 45.2, "", ""},
		{"eio", "", 0, 0, "input/output error", "timed out"},
		{"range", "", 0, 0, "outside the sensor's range [-40, 80]", "outside the sensor's range [0, 100]"},
		{"garbage", "", 21.0, 0, "", "not a number"},
	}
	for _, tc := range tests {
		t.Run(tc.dir+"/"+tc.model, func(t *testing.T) {
			params := map[string]any{"iio_device": filepath.Join("testdata", tc.dir)}
			if tc.model != "" {
				params["model"] = tc.model
			}
			var failures int
			temp, hum := build(t, params, &failures)
			check := func(s publisher.Sensor, want float64, unit, wantErr string) {
				t.Helper()
				v, err := s.Read(context.Background())
				if wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), wantErr) || publisher.KindOf(err) != schema.Intermittent {
						t.Fatalf("%s: got %v, %v; want intermittent error %q", s.Title(), v, err, wantErr)
					}
					return
				}
				if err != nil || v != (schema.Quantity{Magnitude: want, Unit: unit}) {
					t.Fatalf("%s: got %v, %v; want %v %s", s.Title(), v, err, want, unit)
				}
			}
			check(temp, tc.temp, "degC", tc.tempErr)
			check(hum, tc.hum, "percent", tc.humEr)
		})
	}
}

func TestOneReadServesBoth(t *testing.T) {
	var reads int
	temp, hum := build(t, map[string]any{"iio_device": "testdata/good"}, new(int))
	dev := temp.(Sensor).dev
	dev.ReadFile = func(p string) ([]byte, error) { reads++; return os.ReadFile(p) }
	if _, err := temp.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := hum.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reads != 2 {
		t.Fatalf("attribute reads = %d, want 2 (one round for both sensors)", reads)
	}
}

func TestRetryWaitsOutTheSensor(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{"in_temp_input": "-32000", "in_humidityrelative_input": "45200"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	temp, _ := build(t, map[string]any{"iio_device": dir}, new(int))
	dev := temp.(Sensor).dev
	var rounds []time.Time
	dev.ReadFile = func(p string) ([]byte, error) {
		if filepath.Base(p) == "in_temp_input" {
			rounds = append(rounds, time.Now())
			if len(rounds) == 1 {
				return nil, syscall.EIO
			}
		}
		return os.ReadFile(p)
	}
	n := publisher.Named{Name: "temperature", Sensor: temp, Policy: publisher.ReadPolicy{Attempts: 3, RetryPause: 10 * time.Millisecond}}
	s := n.Read(context.Background(), time.Now())
	if s.Err != nil || s.Human != "-32.0 °C (-25.6 °F)" {
		t.Fatalf("sample = %+v", s)
	}
	if len(rounds) != 2 || rounds[1].Sub(rounds[0]) < MinGap {
		t.Fatalf("rounds %v: the retry must wait %s after the failed read", rounds, MinGap)
	}
}

func TestFindsDeviceByName(t *testing.T) {
	root := t.TempDir()
	iio := filepath.Join(root, "sys/bus/iio/devices")
	for dev, name := range map[string]string{"iio:device0": "mcp3008", "iio:device1": "dht11@4"} {
		d := filepath.Join(iio, dev)
		_ = os.MkdirAll(d, 0o755)
		_ = os.WriteFile(filepath.Join(d, "name"), []byte(name+"\n"), 0o644)
		_ = os.WriteFile(filepath.Join(d, "in_temp_input"), []byte("19500\n"), 0o644)
		_ = os.WriteFile(filepath.Join(d, "in_humidityrelative_input"), []byte("50000\n"), 0o644)
	}
	s, err := newSensor(publisher.Env{Root: root}, temperature)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.Read(context.Background()); err != nil || v.(schema.Quantity).Magnitude != 19.5 {
		t.Fatalf("got %v, %v", v, err)
	}
	s, _ = newSensor(publisher.Env{Root: t.TempDir()}, temperature)
	if _, err := s.Read(context.Background()); publisher.KindOf(err) != schema.Persistent || !errors.Is(err, publisher.ErrNotPresent) {
		t.Fatalf("no device: err = %v, want persistent not present", err)
	}
}

func TestBadParameters(t *testing.T) {
	env := publisher.Env{Params: map[string]any{"model": "dht99"}, Devices: &publisher.Devices{}}
	if _, err := newSensor(env, temperature); err == nil {
		t.Fatal("model dht99 accepted")
	}
	devs := &publisher.Devices{}
	if _, err := newSensor(publisher.Env{Params: map[string]any{"iio_device": "/a"}, Devices: devs}, temperature); err != nil {
		t.Fatal(err)
	}
	if _, err := newSensor(publisher.Env{Params: map[string]any{"iio_device": "/b"}, Devices: devs}, humidity); err == nil {
		t.Fatal("two devices for one DHT accepted")
	}
}
