package main_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// promFixture writes an hour of readings every 10 s, ending a minute
// ago on a 10 s boundary, from hosts a and b: a temperature that changes
// every tick and an energy counter rising 3 Wh a tick on a and 7 on b.
// It returns the NDJSON file and the first reading's time.
func promFixture(t *testing.T) (string, time.Time) {
	t.Helper()
	start := time.Now().UTC().Add(-61 * time.Minute).Truncate(10 * time.Second)
	var b strings.Builder
	for i := 0; i < 360; i++ {
		ts := start.Add(time.Duration(i) * 10 * time.Second).Format("2006-01-02T15:04:05.000Z")
		for h, base := range map[string]float64{"a": 20, "b": 5} {
			slope := 3.0
			if h == "b" {
				slope = 7
			}
			fmt.Fprintf(&b, `{"v":1,"host":%q,"sensor":"temperature","ts":%q,"value":{"magnitude":%g,"unit":"degC"}}`+"\n",
				h, ts, base+float64(i%37)/4-float64(i%3)/8)
			fmt.Fprintf(&b, `{"v":1,"host":%q,"sensor":"energy","ts":%q,"value":{"magnitude":%g,"unit":"Wh"}}`+"\n",
				h, ts, 100+slope*float64(i))
		}
	}
	file := filepath.Join(t.TempDir(), "readings.ndjson")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, start
}

// promtool runs Prometheus' own client against apd's read API and
// decodes its JSON output.
func promtool(t *testing.T, out any, args ...string) {
	t.Helper()
	bin := testutil.Tool(t, "promtool", "prometheus")
	cmd := exec.Command(bin, append([]string{"query", "-o", "json"}, args...)...)
	b, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("promtool %s: %v\n%s%s", strings.Join(args, " "), err, b, stderr)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("promtool %s: %v: %s", strings.Join(args, " "), err, b)
	}
}

type promSeries struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

func promSample(t *testing.T, p [2]any) (time.Time, float64) {
	t.Helper()
	sec, _ := p[0].(float64)
	s, _ := p[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("sample %v: %v", p, err)
	}
	return time.UnixMilli(int64(math.Round(sec * 1000))).UTC(), v
}

// TestPromtoolReadsWhatApdQueryReads: promtool's range query of a sensor
// gives the values apd query gives for the same range; its functions give
// what is computed here; its label and series calls list apd's series.
func TestPromtoolReadsWhatApdQueryReads(t *testing.T) {
	t.Parallel()
	testutil.Tool(t, "promtool", "prometheus")
	file, start := promFixture(t)
	data := t.TempDir()
	if r := run(t, nil, "apd", "import", "--db", filepath.Join(data, "apd.db"), file); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	s := startServeIn(t, data)
	url := "http://" + s.http + "/prometheus"

	from, until := start.Add(10*time.Minute), start.Add(40*time.Minute)
	var matrix []promSeries
	promtool(t, &matrix, "range", "--start="+strconv.FormatInt(from.Unix(), 10), "--end="+strconv.FormatInt(until.Unix(), 10),
		"--step=10s", url, `temperature{host="a"}`)
	q := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "temperature", "--host", "a",
		"--since", from.Format(time.RFC3339), "--until", until.Add(time.Second).Format(time.RFC3339), "--format", "ndjson")
	if q.code != 0 {
		t.Fatalf("apd query: %s", q.stderr)
	}
	want := map[time.Time]float64{}
	for _, r := range ndjsonLines(t, q.stdout) {
		ts, _ := time.Parse(time.RFC3339Nano, r["ts"].(string))
		want[ts.UTC()] = r["value"].(map[string]any)["magnitude"].(float64)
	}
	if len(matrix) != 1 || len(matrix[0].Values) != 181 || len(want) != 181 {
		t.Fatalf("promtool: %d series, apd query: %d readings; want one series of 181 samples, 181 readings", len(matrix), len(want))
	}
	if m := matrix[0].Metric; m["__name__"] != "temperature" || m["host"] != "a" || m["unit"] != "degC" {
		t.Errorf("labels %v", m)
	}
	for _, p := range matrix[0].Values {
		ts, v := promSample(t, p)
		if w, ok := want[ts]; !ok || w != v {
			t.Errorf("%s: promtool %v, apd query %v (%v)", ts, v, w, ok)
		}
	}

	// rate of a counter rising 3 and 7 Wh every 10 s is 0.3 and 0.7 Wh/s.
	at := start.Add(30 * time.Minute)
	var vec []promSeries
	promtool(t, &vec, "instant", "--time="+strconv.FormatInt(at.Unix(), 10), url, `sum by (host) (rate(energy[5m]))`)
	got := map[string]float64{}
	for _, r := range vec {
		_, v := promSample(t, r.Value)
		got[r.Metric["host"]] = v
	}
	if math.Abs(got["a"]-0.3) > 1e-9 || math.Abs(got["b"]-0.7) > 1e-9 || len(got) != 2 {
		t.Errorf("sum by (host) (rate(energy[5m])) = %v, want a 0.3, b 0.7", got)
	}
	// max_over_time against apd query's max of the same readings,
	// (at-10m, at] as Prometheus' ranges are open on the left.
	promtool(t, &vec, "instant", "--time="+strconv.FormatInt(at.Unix(), 10), url, `max_over_time(temperature{host="b"}[10m])`)
	mx := run(t, nil, "apd", "query", "--server", "http://"+s.http, "--sensor", "temperature", "--host", "b", "--agg", "max",
		"--since", at.Add(-10*time.Minute+time.Millisecond).Format(time.RFC3339Nano), "--until", at.Add(time.Millisecond).Format(time.RFC3339Nano), "--format", "ndjson")
	rows := ndjsonLines(t, mx.stdout)
	if mx.code != 0 || len(rows) != 1 || len(vec) != 1 {
		t.Fatalf("apd query --agg max: %d rows %s; promtool %d series", len(rows), mx.stderr, len(vec))
	}
	if _, v := promSample(t, vec[0].Value); v != rows[0]["value"].(map[string]any)["magnitude"].(float64) {
		t.Errorf("max_over_time %v, apd query --agg max %v", v, rows[0]["value"])
	}

	var names []string
	promtool(t, &names, "labels", url, "__name__")
	if strings.Join(names, ",") != "energy,temperature" {
		t.Errorf("label values of __name__: %v", names)
	}
	var series []map[string]string
	promtool(t, &series, "series", "--match=energy", url)
	if len(series) != 2 || series[0]["host"] != "a" || series[1]["host"] != "b" || series[0]["unit"] != "Wh" {
		t.Errorf("series: %v", series)
	}
}
