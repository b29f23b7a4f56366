// Package natsfeed takes the readings that devices publish over MQTT to
// any node of a NATS cluster (its MQTT gateway) from a replicated
// JetStream stream, partitioned by host, into an aggregator — the
// transport of SPEC §9 for fleets beyond one broker.
//
// The stream captures the readings' subjects (apd.<host>.<sensor>, the
// gateway's form of apd/<host>/<sensor>) and rewrites each to
// apd.<partition>.<host>.<sensor>, the partition a hash of the host, so
// a host's readings are always in one partition. Each partition has one
// durable consumer. The aggregators sharing a database divide the
// partitions among themselves with claims held in that database
// (store.Claims, which PostgreSQL keeps): each takes its fair share, a killed aggregator's
// partitions are taken up by the others within a rebalance period, and
// a partition's messages are acknowledged to JetStream only after the
// commit that stores them, so what an aggregator took and did not commit
// is delivered again (after AckWait) to the next holder.
package natsfeed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/store"
)

// Ingester takes the feed's messages, in apd's MQTT wire format, and
// calls done once each is committed: an *ingest.Ingester.
type Ingester interface {
	SubmitMessage(topic string, payload []byte, done func()) (ingest.Outcome, error)
}

// Options configure a Feed.
type Options struct {
	// URL is the cluster: nats://host:port, several comma-separated.
	URL string
	// Prefix is the apd topic prefix ("apd").
	Prefix string
	// Stream names the JetStream stream; default "APD".
	Stream string
	// Partitions is how many partitions the stream has; default 8. It is
	// fixed when the stream is made: every aggregator must agree.
	Partitions int
	// Replicas is how many nodes keep the stream; default 3, fewer when
	// the cluster is smaller.
	Replicas int
	// AckWait is how long a message taken and not acknowledged waits
	// before it is delivered again; default 30 s.
	AckWait time.Duration
	// Rebalance is how often the partitions are divided again; default 2 s.
	Rebalance time.Duration
	// Claims divides the partitions among the aggregators; the feed
	// does not close it. Making the stream runs under Claims.Alone:
	// JetStream answered neither of two aggregators making it at once.
	Claims store.Claims
	// Ingester takes each message; the message is acknowledged to
	// JetStream when its done is called, after the commit.
	Ingester Ingester
	Logger   *slog.Logger
}

// Feed reads the partitions this aggregator holds.
type Feed struct {
	opts Options
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream

	mu     sync.Mutex
	held   map[int]*partition
	cancel context.CancelFunc
	loop   sync.WaitGroup
}

type partition struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New connects to the cluster and makes (or updates) the stream.
func New(opts Options) (*Feed, error) {
	opts.Prefix = cmp.Or(opts.Prefix, "apd")
	opts.Stream = cmp.Or(opts.Stream, "APD")
	opts.Partitions = cmp.Or(opts.Partitions, 8)
	opts.Replicas = cmp.Or(opts.Replicas, 3)
	opts.AckWait = cmp.Or(opts.AckWait, 30*time.Second)
	opts.Rebalance = cmp.Or(opts.Rebalance, 2*time.Second)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nc, err := nats.Connect(opts.URL, nats.Name("apd aggregate"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("lost connection to NATS; reconnecting", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("reconnected to NATS", "server", c.ConnectedUrlRedacted()) }))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", opts.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	f := &Feed{opts: opts, log: log, nc: nc, js: js, held: map[int]*partition{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := opts.Claims.Alone(ctx, f.makeStream); err != nil {
		nc.Close()
		return nil, err
	}
	return f, nil
}

// JetStream's error codes for "not enough servers" and "not clustered".
const (
	errInsufficientResources jetstream.ErrorCode = 10023
	errReplicasNotSupported  jetstream.ErrorCode = 10074
)

// makeStream makes the stream, replicated on as many nodes as there are
// up to Replicas.
func (f *Feed) makeStream() error {
	src := f.opts.Prefix + ".*.*"
	cfg := jetstream.StreamConfig{
		Name:      f.opts.Stream,
		Subjects:  []string{src},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
		Replicas:  f.opts.Replicas,
		SubjectTransform: &jetstream.SubjectTransformConfig{Source: src,
			Destination: fmt.Sprintf("%s.{{partition(%d,1)}}.{{wildcard(1)}}.{{wildcard(2)}}", f.opts.Prefix, f.opts.Partitions)},
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := f.js.CreateOrUpdateStream(ctx, cfg)
		cancel()
		if err == nil {
			f.log.Info("NATS stream ready", "stream", cfg.Name, "partitions", f.opts.Partitions, "replicas", cfg.Replicas)
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == errInsufficientResources || apiErr.ErrorCode == errReplicasNotSupported) && cfg.Replicas > 1 {
			cfg.Replicas-- // a smaller cluster
			continue
		}
		return fmt.Errorf("NATS stream %s: %w", cfg.Name, err)
	}
}

// Start divides the partitions with the other aggregators, now and every
// Rebalance, and reads those held, until Stop.
func (f *Feed) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.loop.Add(1)
	go func() {
		defer f.loop.Done()
		tick := time.NewTicker(f.opts.Rebalance)
		defer tick.Stop()
		for {
			f.rebalance(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// rebalance takes free partitions up to this aggregator's fair share and
// gives up those above it.
func (f *Feed) rebalance(ctx context.Context) {
	live, err := f.opts.Claims.Live(ctx)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Error("count the aggregators", "err", err)
		}
		for _, p := range f.Held() {
			f.drop(p, false) // their claims went with the connection
		}
		return
	}
	share := (f.opts.Partitions + max(live, 1) - 1) / max(live, 1)
	f.mu.Lock()
	n := len(f.held)
	f.mu.Unlock()
	for p := range f.opts.Partitions {
		if n >= share || ctx.Err() != nil {
			break
		}
		f.mu.Lock()
		_, have := f.held[p]
		f.mu.Unlock()
		if have {
			continue
		}
		ok, err := f.opts.Claims.TryClaim(ctx, p)
		if err != nil {
			f.log.Error("claim partition", "partition", p, "err", err)
			return
		}
		if ok {
			if err := f.read(p); err != nil {
				f.log.Error("read partition", "partition", p, "err", err)
				_ = f.opts.Claims.Release(ctx, p)
				continue
			}
			n++
		}
	}
	for p := f.opts.Partitions - 1; p >= 0 && n > share; p-- {
		f.mu.Lock()
		_, have := f.held[p]
		f.mu.Unlock()
		if have {
			f.drop(p, true)
			n--
		}
	}
}

// read starts reading partition p through its durable consumer.
func (f *Feed) read(p int) error {
	name := "apd-p" + strconv.Itoa(p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cons, err := f.js.CreateOrUpdateConsumer(ctx, f.opts.Stream, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: fmt.Sprintf("%s.%d.>", f.opts.Prefix, p),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: f.opts.AckWait, MaxAckPending: 50_000, MaxDeliver: -1,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("consumer %s: %w", name, err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	part := &partition{cancel: pcancel, done: make(chan struct{})}
	f.mu.Lock()
	f.held[p] = part
	f.mu.Unlock()
	f.log.Info("reading partition", "partition", p)
	go func() {
		defer close(part.done)
		for pctx.Err() == nil {
			batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				if pctx.Err() == nil {
					f.log.Warn("fetch", "partition", p, "err", err)
					time.Sleep(time.Second)
				}
				continue
			}
			for m := range batch.Messages() {
				topic, ok := Topic(m.Subject())
				if !ok {
					_ = m.Term()
					continue
				}
				if _, err := f.opts.Ingester.SubmitMessage(topic, m.Data(), func() { _ = m.Ack() }); err != nil {
					return // closing: JetStream delivers it again
				}
			}
		}
	}()
	return nil
}

// drop stops reading partition p and, when release, gives up its claim.
// What was taken and not committed yet is delivered again to the next
// holder after AckWait; idempotent storage makes that safe.
func (f *Feed) drop(p int, release bool) {
	f.mu.Lock()
	part := f.held[p]
	delete(f.held, p)
	f.mu.Unlock()
	if part == nil {
		return
	}
	part.cancel()
	<-part.done
	if release {
		_ = f.opts.Claims.Release(context.Background(), p)
	}
	f.log.Info("gave up partition", "partition", p)
}

// Held lists the partitions this aggregator reads.
func (f *Feed) Held() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int, 0, len(f.held))
	for p := range f.held {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Stop stops taking messages: nothing more is submitted. Acknowledgements
// of what was submitted still go out until Close.
func (f *Feed) Stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.loop.Wait()
	f.mu.Lock()
	parts := f.held
	f.held = map[int]*partition{}
	f.mu.Unlock()
	for _, part := range parts {
		part.cancel()
		<-part.done
	}
}

// Close flushes the acknowledgements and disconnects.
func (f *Feed) Close() {
	f.Stop()
	_ = f.nc.FlushTimeout(5 * time.Second)
	f.nc.Close()
}

// Topic turns a stored subject (apd.<partition>.<host>.<sensor>) back
// into the MQTT topic it was published on (apd/<host>/<sensor>). The
// gateway writes a '.' of a topic as "//" and a '/' as '.'.
func Topic(subject string) (string, bool) {
	tokens := strings.Split(strings.ReplaceAll(subject, "//", "\x00"), ".")
	if len(tokens) < 3 {
		return "", false
	}
	if _, err := strconv.Atoi(tokens[1]); err != nil {
		return "", false
	}
	tokens = append(tokens[:1], tokens[2:]...)
	return strings.ReplaceAll(strings.Join(tokens, "/"), "\x00", "."), true
}
