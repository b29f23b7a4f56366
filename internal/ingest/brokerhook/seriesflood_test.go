package brokerhook_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/ingest/ingesttest"

	"github.com/apd-telemetry/apd/broker"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/brokerhook"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
)

// TestSeriesFloodBounded: a device publishing valid readings under 5,000
// sensor names of its host, against a bound of 100 series per host,
// makes at most 100 series; the other readings go to dead letters
// (series_limit), and apd.db grows by a bounded amount. Another host,
// and the greedy host's own known series, are stored as before. Sent
// from one client, the refusals cut it off like any other bad input.
func TestSeriesFloodBounded(t *testing.T) {
	const (
		bound    = 100
		names    = 5000
		perConn  = 400 // below the hook's cut-off (500 rejections in 10 s per client)
		deadCap  = 1 << 20
		goodRuns = 3
	)
	t.Parallel()
	path := filepath.Join(t.TempDir(), "apd.db")
	st := ingesttest.OpenStoreAt(t, path, engine.Options{Limits: store.Limits{MaxDeadBytes: deadCap}})
	in, brk := startEmbedded(t, st, ingest.Options{MaxSeriesPerHost: bound}, broker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	good := dial(t, brk.Addr(), "good-device")
	goodSeq := uint64(0)
	publishGood := func(run int) {
		t.Helper()
		for s := range 10 {
			goodSeq++
			if err := good.Publish(ctx, fmt.Sprintf("apd/good/t%d", s), ingesttest.Payload("good", fmt.Sprintf("t%d", s), goodSeq, run, float64(s)), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	publishGood(0)
	waitFor(t, "the good device's first readings", func() bool { return ingesttest.Count(t, st, store.Query{Hosts: []string{"good"}}) == 10 })
	before := fileSize(t, path)

	// QoS 0, a fresh connection every perConn names: each is written in
	// order and read by the broker before the DISCONNECT that follows.
	for first := 0; first < names; first += perConn {
		c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: fmt.Sprintf("greedy-%d", first)})
		if err != nil {
			t.Fatal(err)
		}
		for i := first; i < min(first+perConn, names); i++ {
			sensor := fmt.Sprintf("s%06d", i)
			if err := c.Publish(ctx, "apd/greedy/"+sensor, ingesttest.Payload("greedy", sensor, uint64(i+1), 0, 1), false); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		if first == perConn {
			publishGood(1) // in the middle of the flood
		}
	}
	publishGood(2)
	m := in.Metrics()
	waitFor(t, "every greedy reading stored or refused", func() bool {
		ds, err := st.DeadLetterStats()
		return err == nil && m.Rejected[ingest.ReasonSeriesLimit].Value() == names-bound &&
			ds.Count+ds.Dropped == names-bound && ingesttest.Count(t, st, store.Query{Hosts: []string{"greedy"}}) == bound
	})
	waitFor(t, "the good device's readings", func() bool {
		return ingesttest.Count(t, st, store.Query{Hosts: []string{"good"}}) == 10*goodRuns
	})
	hosts, err := st.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		want := map[string]int{"good": 10, "greedy": bound}[h.Name]
		if len(h.Sensors) != want {
			t.Errorf("host %s: %d series, want %d", h.Name, len(h.Sensors), want)
		}
	}
	dl, err := st.DeadLetters(1)
	if err != nil || len(dl) != 1 || !strings.HasPrefix(dl[0].Reason, ingest.ReasonSeriesLimit+": host greedy has 100 series, at most 100") ||
		!strings.HasPrefix(dl[0].Topic, "apd/greedy/s") {
		t.Errorf("newest dead letter %+v, %v; want one of the greedy host's, reason %s", dl, err, ingest.ReasonSeriesLimit)
	}
	if got := m.Series.Value(); got != 10+bound {
		t.Errorf("apd_series %d, want %d", got, 10+bound)
	}
	// A known series of the greedy host is still stored.
	p := dial(t, brk.Addr(), "greedy-known")
	if err := p.Publish(ctx, "apd/greedy/s000007", ingesttest.Payload("greedy", "s000007", names+1, 1, 2), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a known series' new reading", func() bool {
		return ingesttest.Count(t, st, store.Query{Hosts: []string{"greedy"}, Sensor: "s000007"}) == 2
	})

	// 100 series of a few KB each, and dead letters within their byte
	// bound (each counted twice its size, so the file holds the bound):
	// without the series bound the 5,000 series took about 21 MB.
	grown := fileSize(t, path) - before
	t.Logf("apd.db grew by %d bytes for %d names sent (%d stored as series)", grown, names, bound)
	if limit := int64(bound*8<<10 + 2*deadCap + 1<<20); grown > limit {
		t.Errorf("apd.db grew by %d bytes, want at most %d", grown, limit)
	}

	// From one connection the refusals are bad input like any other.
	c, err := mqttc.Dial(mqttc.Options{URL: "tcp://" + brk.Addr(), ClientID: "greedy-one-connection"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := names; i < names+brokerhook.MaxRejects+1; i++ {
		sensor := fmt.Sprintf("s%06d", i)
		if c.Publish(ctx, "apd/greedy/"+sensor, ingesttest.Payload("greedy", sensor, uint64(i+2), 0, 1), false) != nil {
			break // cut off
		}
	}
	waitFor(t, "the client cut off", func() bool { return m.CutOff.Value() >= 1 })
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
