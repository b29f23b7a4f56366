package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestServeSeriesBound: apd serve takes the series bound from its config
// file (and flag); a new sensor beyond it is counted and dead-lettered,
// known ones go on being stored, a restart knows the stored series, and
// deleting a host's data frees its budget at the next start.
func TestServeSeriesBound(t *testing.T) {
	t.Parallel()
	testServeSeriesBound(t)
}

// TestServeSeriesBoundPostgres: the same on PostgreSQL, whose stored
// series the bound reads at start as it does the file's.
func TestServeSeriesBoundPostgres(t *testing.T) {
	t.Parallel()
	pg := testutil.StartPostgres(t)
	testServeSeriesBound(t, "--store", pg.NewDatabase(t))
}

func testServeSeriesBound(t *testing.T, store ...string) {
	cfg := filepath.Join(t.TempDir(), "apd.toml")
	if err := os.WriteFile(cfg, []byte("[server]\nmax_series_per_host = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, append([]string{"--config", cfg}, store...)...)
	minute := 0
	publish := func(s *server, sensors ...string) {
		t.Helper()
		c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + s.mqtt, ClientID: "pi", QoS: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, sensor := range sensors {
			minute++
			ts := time.Now().UTC().Truncate(time.Hour).Add(time.Duration(minute) * time.Second).Format("2006-01-02T15:04:05.000Z")
			p := fmt.Sprintf(`{"v":1,"host":"pi","sensor":%q,"ts":%q,"value":1}`, sensor, ts)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.Publish(ctx, "apd/pi/"+sensor, []byte(p), false)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	metric := func(s *server, line string) func() bool {
		return func() bool {
			resp, err := http.Get("http://" + s.http + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return strings.Contains(string(body), line+"\n")
		}
	}
	waitMetric := func(s *server, line string) {
		t.Helper()
		testutil.WaitFor(t, line, 10*time.Second, metric(s, line))
	}

	publish(s, "a", "b", "c")
	waitMetric(s, `apd_rejected_total{reason="series_limit"} 1`)
	waitMetric(s, "apd_series 2")
	testutil.WaitFor(t, "the dead letter", 10*time.Second, func() bool {
		dl := run(t, nil, "apd", "deadletters", "--server", "http://"+s.http)
		return strings.Contains(dl.stdout, "series_limit") && strings.Contains(dl.stdout, "apd/pi/c")
	})

	// Restarted (the flag over the file): the stored series are known.
	s.stop(t)
	s = startServeIn(t, s.data, append([]string{"--config", cfg, "--max-series-per-host", "2"}, store...)...)
	waitMetric(s, "apd_series 2")
	publish(s, "a", "d")
	waitMetric(s, `apd_rejected_total{reason="series_limit"} 1`)
	waitMetric(s, `apd_stored_total 1`)

	// Deleting the host frees its budget at the next start.
	if r := run(t, nil, "apd", "delete", "--server", "http://"+s.http, "--host", "pi"); r.code != 0 {
		t.Fatalf("delete: %s", r.stderr)
	}
	s.stop(t)
	s = startServeIn(t, s.data, append([]string{"--config", cfg}, store...)...)
	waitMetric(s, "apd_series 0")
	publish(s, "d", "e")
	waitMetric(s, `apd_stored_total 2`)
	waitMetric(s, `apd_rejected_total{reason="series_limit"} 0`)
}
