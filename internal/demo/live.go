package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/schema"
)

// LiveOptions configure the live devices.
type LiveOptions struct {
	// Broker is the broker's host:port.
	Broker string
	Topics schema.Topics
	// Interval is the devices' tick, clock-aligned; 0 means 10 s.
	Interval time.Duration
	// Version is what the devices report in their $status.
	Version string
	Logger  *slog.Logger
}

// Live is the fleet's devices publishing: every host but the offline
// one, each its own MQTT connection, as apd-publish would be.
type Live struct {
	devices []*device
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// device is one host publishing the model: QoS 1 readings with seqs,
// its $status retained (its last will says lost), and what no $ack
// covers yet kept and sent again after a reconnect, as apd-publish's
// spool does.
type device struct {
	f      *Fleet
	host   *Host
	opts   *LiveOptions
	spool  string
	client *mqttc.Client

	mu      sync.Mutex
	next    uint64 // the next seq
	acked   uint64 // the highest seq an $ack covered
	pending map[uint64]outgoing
}

type outgoing struct {
	topic   string
	payload []byte
}

// ClientID is the MQTT client id of host's device, for waiting until the
// broker has seen it go.
func ClientID(host string) string { return "apd-demo-" + host }

// StartLive connects a device for every host but the offline one and
// starts them publishing on the clock-aligned ticks until Close.
func (f *Fleet) StartLive(opts LiveOptions) (*Live, error) {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Live{}
	for _, h := range f.Hosts {
		if h.Name == OfflineHost {
			continue
		}
		d := &device{f: f, host: h, opts: &opts, next: 1, pending: map[uint64]outgoing{},
			spool: fmt.Sprintf("%016x", key(f.Seed, h.Name, "spool"))}
		if err := d.connect(); err != nil {
			l.Close()
			return nil, fmt.Errorf("connect the demo's device %s: %w", h.Name, err)
		}
		l.devices = append(l.devices, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for _, d := range l.devices {
		l.wg.Go(func() { d.run(ctx) })
	}
	return l, nil
}

// Close stops the devices: each says it goes offline and disconnects.
func (l *Live) Close() {
	if l.cancel != nil {
		l.cancel()
	}
	l.wg.Wait()
	var wg sync.WaitGroup
	for _, d := range l.devices {
		wg.Go(d.close)
	}
	wg.Wait()
}

// ClientIDs returns the MQTT client ids of the devices.
func (l *Live) ClientIDs() []string {
	var ids []string
	for _, d := range l.devices {
		ids = append(ids, ClientID(d.host.Name))
	}
	return ids
}

func (d *device) connect() error {
	lost, _ := json.Marshal(schema.Status{State: schema.StateLost})
	c, err := mqttc.New(mqttc.Options{URL: "tcp://" + d.opts.Broker, ClientID: ClientID(d.host.Name), QoS: 1,
		Will:      &mqttc.Will{Topic: d.opts.Topics.Status(d.host.Name), Payload: lost, Retain: true},
		OnConnect: d.onConnect, Logger: d.opts.Logger})
	if err != nil {
		return err
	}
	d.client = c
	// Recorded now, made on every connection before OnConnect runs.
	if err := c.SubscribeLatest(d.opts.Topics.Ack(d.host.Name), d.onAck); err != nil {
		return err
	}
	return c.Start()
}

// publishTimeout bounds the wait for a PUBACK: what is not acknowledged
// by then stays pending and goes again after the next reconnect.
const publishTimeout = 10 * time.Second

// onConnect announces the device and sends again what no $ack covers.
func (d *device) onConnect() {
	d.mu.Lock()
	st := schema.Status{State: schema.StateOnline, Time: time.Now(), Version: d.opts.Version, Spool: d.spool, FirstSeq: d.acked + 1}
	seqs := make([]uint64, 0, len(d.pending))
	for seq := range d.pending {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	again := make([]outgoing, 0, len(seqs))
	for _, seq := range seqs {
		again = append(again, d.pending[seq])
	}
	d.mu.Unlock()
	payload, _ := json.Marshal(st)
	d.publish(d.opts.Topics.Status(d.host.Name), payload, true)
	for _, o := range again {
		d.publish(o.topic, o.payload, false)
	}
}

func (d *device) onAck(_ string, payload []byte) {
	var a schema.Ack
	if json.Unmarshal(payload, &a) != nil || a.Spool != "" && a.Spool != d.spool {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for seq := range d.pending {
		if seq <= a.Seq {
			delete(d.pending, seq)
		}
	}
	d.acked = max(d.acked, a.Seq)
}

func (d *device) publish(topic string, payload []byte, retain bool) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := d.client.Publish(ctx, topic, payload, retain); err != nil {
		d.opts.Logger.Debug("demo device publish", "host", d.host.Name, "topic", topic, "err", err)
	}
}

// run samples the model on every tick until ctx ends.
func (d *device) run(ctx context.Context) {
	iv := d.opts.Interval
	for {
		next := time.Now().Truncate(iv).Add(iv)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		d.tick(next)
	}
}

// tick publishes one reading per sensor stamped at.
func (d *device) tick(at time.Time) {
	for _, s := range d.host.Sensors {
		r := d.f.Reading(d.host, s, at)
		if r.Error == nil {
			r.Human = schema.Format(r.Sensor, r.Value)
		}
		d.mu.Lock()
		r.Seq = d.next
		d.next++
		o := outgoing{topic: d.opts.Topics.Reading(r.Host, r.Sensor), payload: r.AppendJSON(nil, schema.WithIdentity)}
		d.pending[r.Seq] = o
		d.mu.Unlock()
		d.publish(o.topic, o.payload, false)
	}
}

// close says the device goes offline, as apd-publish does on a clean
// stop, and disconnects.
func (d *device) close() {
	if d.client == nil {
		return
	}
	if d.client.Connected() {
		payload, _ := json.Marshal(schema.Status{State: schema.StateOffline, Time: time.Now(), Spool: d.spool})
		d.publish(d.opts.Topics.Status(d.host.Name), payload, true)
	}
	d.client.Close()
}
