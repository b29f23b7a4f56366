package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestPrometheusRemoteWrite: a real Prometheus scrapes a real
// node_exporter every second and remote-writes to apd; promtool then
// reads the same series from both, and every sample apd holds is the
// one Prometheus holds, timestamp and value.
func TestPrometheusRemoteWrite(t *testing.T) {
	t.Parallel()
	prometheus := testutil.Tool(t, "prometheus", "prometheus")
	exporter := testutil.Tool(t, "prometheus-node-exporter", "prometheus-node-exporter")
	testutil.Tool(t, "promtool", "prometheus")
	s := startServe(t)

	nodeAddr := testutil.FreeAddr(t)
	node := exec.Command(exporter, "--web.listen-address="+nodeAddr, "--collector.disable-defaults",
		"--collector.loadavg", "--collector.meminfo", "--collector.time")
	np, _ := testutil.StartProcess(t, node, regexp.MustCompile(`(?i)listening on`), 20*time.Second)
	t.Cleanup(func() { _ = np.Stop(5 * time.Second) })

	dir := t.TempDir()
	promAddr := testutil.FreeAddr(t)
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: [%q]
remote_write:
  - url: http://%s/api/v1/write
    queue_config:
      batch_send_deadline: 500ms
      min_backoff: 100ms
      max_backoff: 1s
`, nodeAddr, s.http)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(prometheus, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr)
	pp, _ := testutil.StartProcess(t, prom, regexp.MustCompile(`Server is ready to receive web requests`), 60*time.Second)
	t.Cleanup(func() { _ = pp.Stop(10 * time.Second) })

	// Wait until apd has a few samples of a gauge that moves (the
	// node's clock) and one that does not (its memory).
	host, _, _ := strings.Cut(nodeAddr, ":")
	count := func(metric string) int {
		q := url.Values{"query": {fmt.Sprintf("count_over_time(%s{host=%q}[5m])", metric, host)}}
		resp, err := http.Get("http://" + s.http + "/prometheus/api/v1/query?" + q.Encode())
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return 0
		}
		n, _ := strconv.Atoi(fmt.Sprint(r.Data.Result[0].Value[1]))
		return n
	}
	testutil.WaitFor(t, "five samples of node_time_seconds and node_memory_MemTotal_bytes in apd", 60*time.Second, func() bool {
		return count("node_time_seconds") >= 5 && count("node_memory_MemTotal_bytes") >= 5
	})

	at := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	for _, metric := range []string{"node_time_seconds", "node_memory_MemTotal_bytes", "node_load1"} {
		var fromProm, fromApd []promSeries
		promtool(t, &fromProm, "instant", "--time="+at, "http://"+promAddr, metric+"[5m]")
		promtool(t, &fromApd, "instant", "--time="+at, "http://"+s.http+"/prometheus", metric+"[5m]")
		if len(fromProm) != 1 || len(fromApd) != 1 {
			t.Fatalf("%s: %d series in Prometheus, %d in apd", metric, len(fromProm), len(fromApd))
		}
		if m := fromApd[0].Metric; m["__name__"] != metric || m["host"] != host {
			t.Errorf("%s: apd's labels %v, want __name__=%s host=%s", metric, m, metric, host)
		}
		held := map[time.Time]float64{}
		for _, p := range fromProm[0].Values {
			ts, v := promSample(t, p)
			held[ts] = v
		}
		if len(fromApd[0].Values) < 5 {
			t.Errorf("%s: %d samples in apd", metric, len(fromApd[0].Values))
		}
		for _, p := range fromApd[0].Values {
			ts, v := promSample(t, p)
			if w, ok := held[ts]; !ok || w != v {
				t.Errorf("%s at %s: apd %v, Prometheus %v (%v)", metric, ts, v, w, ok)
			}
		}
	}
}
