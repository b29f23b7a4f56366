package metrics

import (
	"strings"
	"testing"
)

func TestWritePrometheus(t *testing.T) {
	r := NewRegistry()
	var c Counter
	c.Add(3)
	var rej Counter
	rej.Inc()
	var g Gauge
	g.Set(-2)
	h := NewHistogram(1, 10)
	h.Observe(0.5)
	h.Observe(5)
	h.Observe(50)
	r.Counter("apd_received_total", "Messages received.", "", &c)
	r.Counter("apd_rejected_total", "Rejected.", Labels("reason", `bad "json"`), &rej)
	r.Gauge("apd_depth", "Depth.", "", &g)
	r.Histogram("apd_batch_size", "Batch sizes.", h)
	var b strings.Builder
	r.WritePrometheus(&b)
	want := `# HELP apd_received_total Messages received.
# TYPE apd_received_total counter
apd_received_total 3
# HELP apd_rejected_total Rejected.
# TYPE apd_rejected_total counter
apd_rejected_total{reason="bad \"json\""} 1
# HELP apd_depth Depth.
# TYPE apd_depth gauge
apd_depth -2
# HELP apd_batch_size Batch sizes.
# TYPE apd_batch_size histogram
apd_batch_size_bucket{le="1"} 1
apd_batch_size_bucket{le="10"} 2
apd_batch_size_bucket{le="+Inf"} 3
apd_batch_size_sum 55.5
apd_batch_size_count 3
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
