package bench

import (
	"bytes"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// The storage acceptance data sets: hosts × readings each of temperature
// at 10 s, a random walk in degC with one decimal — few series with many
// readings (100 × 10,000) and many series with few (10,000 × 100).
var cmpShapes = []struct{ hosts, perHost int }{{100, 10_000}, {10_000, 100}}

type dataset struct {
	base   time.Time
	values [][]float64 // by host
}

func newDataset(hosts, perHost int) *dataset {
	d := &dataset{base: time.Now().Add(-3 * 24 * time.Hour).UTC().Truncate(time.Hour), values: make([][]float64, hosts)}
	rng := rand.New(rand.NewPCG(1, 2))
	for h := range d.values {
		d.values[h] = make([]float64, perHost)
		v := 20.0
		for i := range d.values[h] {
			v += (rng.Float64() - 0.5) * 0.2
			d.values[h][i] = math.Round(v*10) / 10
		}
	}
	return d
}

func (d *dataset) readings() int { return len(d.values) * len(d.values[0]) }

func (d *dataset) ndjson() []byte {
	var b bytes.Buffer
	for h := range d.values {
		for i, v := range d.values[h] {
			fmt.Fprintf(&b, `{"v":1,"host":"pi-%05d","sensor":"temperature","ts":"%s","seq":%d,"value":{"magnitude":%s,"unit":"degC"}}`+"\n",
				h, d.base.Add(time.Duration(i)*10*time.Second).Format("2006-01-02T15:04:05.000Z"), i+1, strconv.FormatFloat(v, 'f', 1, 64))
		}
	}
	return b.Bytes()
}

// vmJSONLines is the same data in VictoriaMetrics' /api/v1/import format,
// one line per series.
func (d *dataset) vmJSONLines() []byte {
	var b bytes.Buffer
	for h := range d.values {
		fmt.Fprintf(&b, `{"metric":{"__name__":"temperature","host":"pi-%05d"},"values":[`, h)
		for i, v := range d.values[h] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatFloat(v, 'f', 1, 64))
		}
		b.WriteString(`],"timestamps":[`)
		for i := range d.values[h] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(d.base.Add(time.Duration(i)*10*time.Second).UnixMilli(), 10))
		}
		b.WriteString("]}\n")
	}
	return b.Bytes()
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// BenchmarkCompareVictoriaMetrics imports the same 1,000,000 readings into
// apd (apd import) and into VictoriaMetrics (its JSON-lines import API) on
// this machine, on both data-set shapes, and reports readings/s and bytes
// per reading for each, and their ratios. It needs the victoria-metrics
// binary (Debian package victoria-metrics) and is skipped without it.
func BenchmarkCompareVictoriaMetrics(b *testing.B) {
	vmBin, err := exec.LookPath("victoria-metrics")
	if err != nil {
		b.Skip("victoria-metrics not installed (apt-get install victoria-metrics)")
	}
	bin := buildApd(b)
	for _, shape := range cmpShapes {
		b.Run(fmt.Sprintf("%dx%d", shape.hosts, shape.perHost), func(b *testing.B) {
			compareVictoriaMetrics(b, bin, vmBin, newDataset(shape.hosts, shape.perHost))
		})
	}
}

func compareVictoriaMetrics(b *testing.B, bin, vmBin string, d *dataset) {
	nd := filepath.Join(b.TempDir(), "data.ndjson")
	if err := os.WriteFile(nd, d.ndjson(), 0o644); err != nil {
		b.Fatal(err)
	}
	lines := d.vmJSONLines()
	n := float64(d.readings())
	var apdRate, apdBytes, vmRate, vmBytes float64
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		// apd
		db := filepath.Join(b.TempDir(), "apd.db")
		start := time.Now()
		if out, err := exec.Command(bin, "import", "--db", db, nd).CombinedOutput(); err != nil {
			b.Fatalf("apd import: %v: %s", err, out)
		}
		apdRate += n / time.Since(start).Seconds()
		fi, _ := os.Stat(db)
		apdBytes += float64(fi.Size()) / n

		// VictoriaMetrics
		dataDir := b.TempDir()
		// A port chosen before: victoria-metrics logs the address it was
		// given, not the port it bound, so it cannot be told port 0.
		addr := testutil.FreeAddr(b)
		vm := exec.Command(vmBin, "-storageDataPath="+dataDir, "-httpListenAddr="+addr, "-retentionPeriod=100y", "-loggerLevel=ERROR")
		if err := vm.Start(); err != nil {
			b.Fatal(err)
		}
		testutil.WaitFor(b, "victoria-metrics to answer /health", 20*time.Second, func() bool {
			resp, err := http.Get("http://" + addr + "/health")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
		start = time.Now()
		resp, err := http.Post("http://"+addr+"/api/v1/import", "application/json", bytes.NewReader(lines))
		if err != nil || resp.StatusCode/100 != 2 {
			b.Fatalf("vm import: %v %v", err, resp)
		}
		resp.Body.Close()
		if resp, err := http.Get("http://" + addr + "/internal/force_flush"); err == nil {
			resp.Body.Close()
		}
		// The data is searchable once flushed: count it to be sure. Each
		// poll exports it all, so polls are 100 ms apart, not back to back
		// on the machine being measured.
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, err := http.Get("http://" + addr + "/api/v1/export?match[]=temperature")
			if err == nil {
				body := new(bytes.Buffer)
				_, _ = body.ReadFrom(resp.Body)
				resp.Body.Close()
				if strings.Count(body.String(), ",") >= 2*d.readings()-2*len(d.values) {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatal("victoria-metrics did not make the data searchable")
			}
		}
		vmRate += n / time.Since(start).Seconds()
		// Stopping makes it write its in-memory parts; then measure.
		_ = vm.Process.Signal(syscall.SIGINT)
		_ = vm.Wait()
		vmBytes += float64(dirSize(dataDir)) / n
	}
	b.StopTimer()
	k := float64(b.N)
	b.ReportMetric(apdRate/k, "apd-import-readings/s")
	b.ReportMetric(vmRate/k, "vm-import-readings/s")
	b.ReportMetric(apdBytes/k, "apd-bytes/reading")
	b.ReportMetric(vmBytes/k, "vm-bytes/reading")
	b.ReportMetric(apdBytes/vmBytes, "apd/vm-bytes")
	b.ReportMetric(apdRate/vmRate, "apd/vm-rate")
}
