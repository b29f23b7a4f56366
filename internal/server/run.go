package server

import (
	"context"
	"errors"
)

// Transport carries readings into the aggregator and its
// acknowledgements and rule outcomes out: the embedded broker, a
// subscription to another broker, a NATS stream. Run drives it.
type Transport interface {
	// Attach builds the transport on s (its ingester, store and
	// metrics), taking no reading yet; from then on it is a Link. On an
	// error it has let go of whatever it made.
	Attach(ctx context.Context, s *Server) error
	// Link carries acknowledgements and rule outcomes from Attach until
	// Close.
	Link
	// Start makes the transport take readings and returns once it does:
	// the broker accepting connections, the subscription made, the
	// partitions being claimed.
	Start() error
	// StopTaking makes the transport submit nothing more; it still
	// carries acknowledgements.
	StopTaking()
	// Close sends what acknowledgements are still on their way and lets
	// go of the connections; Run calls it after the drain, also when
	// Start failed.
	Close()
	// Running describes the transport (addresses, names) for the log
	// line saying the process runs.
	Running() []any
}

// RunOptions are what a command adds to Run.
type RunOptions struct {
	// Name names the process in the log: "<Name> running".
	Name string
	// Attrs are added to that line, after the transport's and the API's
	// addresses.
	Attrs []any
	// Started, when set, runs once the transport takes readings and the
	// stored watermarks are acknowledged, before the process is ready:
	// apd serve starts its local publisher there, which needs the broker.
	// An error stops everything, and Run returns it.
	Started func() error
	// Stopping, when set, runs first when ctx ends, while the transport
	// still takes readings (after a successful Started): the local
	// publisher stops there and its last readings are committed in the
	// drain.
	Stopping func()
}

// Errors of Run that a command gives its own exit code and hint; each is
// wrapped with the transport's error, whose message it keeps.
var (
	// ErrBrokerStart: the embedded broker could not be made or could
	// not listen (an address in use, a setting refused).
	ErrBrokerStart = errors.New("the broker did not start")
	// ErrNoClaims: the store cannot divide a stream's partitions among
	// aggregators (it is no store.Claimer; PostgreSQL is).
	ErrNoClaims = errors.New("the store cannot divide partitions among aggregators")
	// ErrClaims: the store did not register this aggregator for the
	// partitions (another runs under its name, or the database is
	// down).
	ErrClaims = errors.New("cannot claim partitions")
	// ErrSourceUnreachable: the NATS cluster or its JetStream did not
	// answer.
	ErrSourceUnreachable = errors.New("the source is unreachable")
)

// transportError is err, which errors.Is also finds to be kind.
type transportError struct{ kind, err error }

func (e transportError) Error() string   { return e.err.Error() }
func (e transportError) Unwrap() []error { return []error{e.kind, e.err} }

func markError(kind, err error) error { return transportError{kind: kind, err: err} }

// Run runs the aggregator on tr until ctx ends, and closes the server
// whatever happens. Start: the transport attached, the commit loop, API
// and background work started acknowledging through it, the transport
// started, every host's stored watermark acknowledged again (a process
// stopped between a commit and its acknowledgement left the retained
// $ack behind), opts.Started, then ready (/readyz). Stop, in reverse:
// not ready, opts.Stopping, the transport stops taking readings, what is
// queued is committed and acknowledged through it, the transport closes,
// then the API, the background work and the store.
func (s *Server) Run(ctx context.Context, tr Transport, opts RunOptions) error {
	if err := tr.Attach(ctx, s); err != nil {
		s.Close()
		return err
	}
	s.start(ctx, tr)
	stop := func() {
		tr.StopTaking()
		s.drain()
		tr.Close()
		s.Close()
	}
	if err := tr.Start(); err != nil {
		stop()
		return err
	}
	s.ingester.AcknowledgeStored(ctx)
	s.log.Info(opts.Name+" running", append(append(tr.Running(), "http", s.HTTPURL()), opts.Attrs...)...)
	if opts.Started != nil {
		if err := opts.Started(); err != nil {
			stop()
			return err
		}
	}
	s.setReady("")
	<-ctx.Done()
	s.setReady("shutting down")
	s.log.Info("shutting down")
	if opts.Stopping != nil {
		opts.Stopping()
	}
	stop()
	return nil
}
