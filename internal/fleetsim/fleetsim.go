// Package fleetsim simulates a fleet of devices for the fleet benchmark and
// the fault tests: each device is its own MQTT connection publishing one
// reading per sensor on a clock-aligned tick, QoS 1, v1 payloads with seq,
// through the MQTT client apd-publish uses (which reconnects by itself), and
// (with acknowledgements) keeps every reading until an $ack covers it, as
// apd-publish's spool does, resending them after every reconnect.
package fleetsim

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/schema"
)

// Options describe a fleet.
type Options struct {
	Broker string // host:port
	// Brokers, when set, are the nodes of a cluster (host:port each):
	// device i tries them in turn starting with node i mod len, so the
	// fleet is spread over the nodes and moves on when one goes.
	Brokers []string
	Devices int
	Sensors int
	// Acks makes each device subscribe to its $ack, measure publish→$ack
	// latency and keep unacknowledged readings for resending. Without it
	// (a broker with no aggregator behind it) devices only publish.
	Acks bool
	// ResendAfter, when not 0, resends at each tick the readings sent
	// longer ago than this and still not acknowledged.
	ResendAfter time.Duration
}

// Fleet is a set of connected devices.
type Fleet struct {
	opts    Options
	Devices []*Device
}

// Device is one simulated device.
type Device struct {
	Host  string
	index int
	spool string
	opts  *Options
	c     *mqttc.Client

	mu      sync.Mutex
	next    uint64               // the next seq to issue
	pending map[uint64]*outgoing // issued, not yet acknowledged (with Acks)
	acked   uint64               // the highest seq an $ack covered
	lat     []time.Duration      // publish → $ack, one per acknowledged reading
	conns   atomic.Int64         // successful connections
}

type outgoing struct {
	topic   string
	payload []byte
	first   time.Time // first publish
	last    time.Time // latest publish
}

// Connect connects the devices to the broker, a hundred at a time.
func Connect(opts Options) (*Fleet, error) {
	f := &Fleet{opts: opts, Devices: make([]*Device, opts.Devices)}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	var failed atomic.Int64
	var firstErr atomic.Value
	for i := range f.Devices {
		d := &Device{Host: fmt.Sprintf("dev%05d", i), index: i, spool: fmt.Sprintf("%016x", i+1), opts: &f.opts,
			next: 1, pending: map[uint64]*outgoing{}}
		f.Devices[i] = d
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := d.connect(); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		f.Close()
		return nil, fmt.Errorf("%d of %d devices could not connect: %v", n, opts.Devices, firstErr.Load())
	}
	return f, nil
}

func (d *Device) connect() error {
	c, err := mqttc.New(mqttc.Options{URL: d.brokerURL(), ClientID: "fleet-" + d.Host, QoS: 1,
		ConnectTimeout: 30 * time.Second, OnConnect: d.onConnect})
	if err != nil {
		return err
	}
	d.c = c
	if d.opts.Acks {
		// Recorded now, made on every connection before OnConnect runs.
		_ = c.SubscribeLatest("apd/"+d.Host+"/$ack", d.onAck)
	}
	return c.Start()
}

// brokerURL is the device's broker, or its list of a cluster's nodes.
func (d *Device) brokerURL() string {
	if len(d.opts.Brokers) == 0 {
		return "tcp://" + d.opts.Broker
	}
	var urls []string
	start := d.index % len(d.opts.Brokers)
	for i := range d.opts.Brokers {
		urls = append(urls, "tcp://"+d.opts.Brokers[(start+i)%len(d.opts.Brokers)])
	}
	return strings.Join(urls, ",")
}

// onConnect announces the device and resends what is not acknowledged:
// what apd-publish does after every (re)connect.
func (d *Device) onConnect() {
	d.conns.Add(1)
	d.mu.Lock()
	first := d.acked + 1
	d.mu.Unlock()
	st, _ := json.Marshal(schema.Status{State: schema.StateOnline, FirstSeq: first, Spool: d.spool})
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	_ = d.c.Publish(ctx, "apd/"+d.Host+"/$status", st, true)
	cancel()
	if d.opts.Acks {
		d.resend(0)
	}
}

// publishTimeout bounds the wait for a PUBACK: what is not acknowledged
// by then stays pending and is sent again.
const publishTimeout = 10 * time.Second

func (d *Device) onAck(_ string, payload []byte) {
	var a schema.Ack
	if json.Unmarshal(payload, &a) != nil || (a.Spool != "" && a.Spool != d.spool) {
		return
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for seq := d.acked + 1; seq <= a.Seq; seq++ {
		if o, ok := d.pending[seq]; ok {
			d.lat = append(d.lat, now.Sub(o.first))
			delete(d.pending, seq)
		}
	}
	d.acked = max(d.acked, a.Seq)
}

// resend publishes again, in seq order, the pending readings last sent
// longer than olderThan ago.
func (d *Device) resend(olderThan time.Duration) {
	now := time.Now()
	d.mu.Lock()
	var due []*outgoing
	seqs := make([]uint64, 0, len(d.pending))
	for seq := range d.pending {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		if o := d.pending[seq]; now.Sub(o.last) >= olderThan {
			o.last = now
			due = append(due, o)
		}
	}
	d.mu.Unlock()
	for _, o := range due {
		d.publish(o)
	}
}

// publish sends o and waits for the broker's PUBACK, as apd-publish does
// (one reading at a time); a failure leaves it pending.
func (d *Device) publish(o *outgoing) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	_ = d.c.Publish(ctx, o.topic, o.payload, false)
	cancel()
}

// Value is the value device host publishes for seq: a test can check what
// was stored is what was sent.
func Value(host string, seq uint64) float64 {
	h := uint64(0)
	for i := range len(host) {
		h = h*31 + uint64(host[i])
	}
	return 20 + float64((h+seq*7)%1000)/10
}

// Tick makes every device publish one reading per sensor stamped at, each
// device starting at a random moment within spread of at (real clocks are
// not quite aligned), and returns when all have been handed to the client.
func (f *Fleet) Tick(at time.Time, spread time.Duration) {
	var wg sync.WaitGroup
	for _, d := range f.Devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			delay := time.Until(at)
			if spread > 0 {
				delay += rand.N(spread)
			}
			time.Sleep(delay)
			if f.opts.ResendAfter > 0 {
				d.resend(f.opts.ResendAfter)
			}
			stamp := at.UTC().Truncate(time.Millisecond)
			for s := range f.opts.Sensors {
				d.mu.Lock()
				seq := d.next
				d.next++
				r := schema.Reading{Host: d.Host, Sensor: fmt.Sprintf("s%02d", s), Time: stamp, Seq: seq,
					Value: schema.Quantity{Magnitude: Value(d.Host, seq), Unit: "degC"}.Raw()}
				now := time.Now()
				o := &outgoing{topic: "apd/" + d.Host + "/" + r.Sensor, payload: r.AppendJSON(nil, schema.WithIdentity), first: now, last: now}
				if f.opts.Acks {
					d.pending[seq] = o
				}
				d.mu.Unlock()
				d.publish(o)
			}
		}()
	}
	wg.Wait()
}

// Issued returns how many readings the devices made.
func (f *Fleet) Issued() int {
	n := 0
	for _, d := range f.Devices {
		d.mu.Lock()
		n += int(d.next - 1)
		d.mu.Unlock()
	}
	return n
}

// Acked returns how many readings an $ack covers, summed over the devices.
func (f *Fleet) Acked() int {
	n := 0
	for _, d := range f.Devices {
		d.mu.Lock()
		n += int(d.acked)
		d.mu.Unlock()
	}
	return n
}

// Behind returns the devices whose $ack has not reached their last seq.
func (f *Fleet) Behind() []*Device {
	var behind []*Device
	for _, d := range f.Devices {
		d.mu.Lock()
		if d.acked < d.next-1 {
			behind = append(behind, d)
		}
		d.mu.Unlock()
	}
	return behind
}

// Latencies returns publish → $ack of every acknowledged reading.
func (f *Fleet) Latencies() []time.Duration {
	var all []time.Duration
	for _, d := range f.Devices {
		d.mu.Lock()
		all = append(all, d.lat...)
		d.mu.Unlock()
	}
	return all
}

// Reconnects returns how many connections the devices made after their
// first.
func (f *Fleet) Reconnects() int {
	n := 0
	for _, d := range f.Devices {
		n += int(d.conns.Load()) - 1
	}
	return n
}

// LastSeq returns the last seq the device issued and the highest an $ack
// covered.
func (d *Device) LastSeq() (issued, acked uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.next - 1, d.acked
}

// Close disconnects every device.
func (f *Fleet) Close() {
	var wg sync.WaitGroup
	for _, d := range f.Devices {
		if d != nil && d.c != nil {
			wg.Go(d.c.Close)
		}
	}
	wg.Wait()
}

// Percentile returns the p-quantile of ds (sorting ds).
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}
