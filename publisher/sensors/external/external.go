// Package external provides sensors that run a program: [[sensors.exec]]
// in the configuration. The program prints one JSON value or a bare number
// on stdout; a non-zero exit, a timeout or output that is not JSON is a
// failed read of the configured kind, with the exit status and the end of
// stderr as its message. No shell runs unless the command names one
// (command = ["sh", "-c", "…"]).
//
// In stream mode the program keeps running and prints one JSON value per
// line, each published as a reading when it arrives, the way Telegraf's
// execd works; when it dies it is started again with a growing pause.
package external

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/config"

	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/schema"
)

// Config is one [[sensors.exec]] table, its fields filled from the keys
// of their tags.
type Config struct {
	Name  string `toml:"name"`
	Title string `toml:"title"`
	// Command is the program and its arguments, run without a shell.
	Command Command `toml:"command"`
	// Timeout bounds one run in poll mode.
	Timeout time.Duration `toml:"timeout"`
	// Unit turns a bare number into a quantity of this unit.
	Unit string `toml:"unit"`
	// Kind is the kind of every failure of the program.
	Kind schema.ErrorKind `toml:"kind"`
	// MaxOutput bounds stdout of one run, or one line in stream mode.
	MaxOutput int `toml:"max_output"`
	// Mode is ModePoll or ModeStream.
	Mode Mode `toml:"mode"`
	// Interval is the sampling interval in poll mode; 0 means the
	// publisher's.
	Interval time.Duration `toml:"interval"`
}

// Mode is how the program is run.
type Mode string

const (
	// ModePoll runs the program once per sample.
	ModePoll Mode = "poll"
	// ModeStream keeps the program running, a reading per line it prints.
	ModeStream Mode = "stream"
)

// Command is a program and its arguments. In the config file it is a list
// of strings, or one string split on spaces (not given to a shell).
type Command []string

// UnmarshalTOML implements config.Unmarshaler.
func (c *Command) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*c = strings.Fields(v)
	case []any:
		*c = make(Command, len(v))
		for i, a := range v {
			s, ok := a.(string)
			if !ok {
				return errors.New("every element must be a string")
			}
			(*c)[i] = s
		}
	default:
		return fmt.Errorf("want a list of strings, got %v", v)
	}
	return nil
}

// Defaults of Config.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultMaxOutput = 64 << 10
	maxStderr        = 4 << 10
	maxRestartPause  = time.Minute
)

// ParseConfig reads one [[sensors.exec]] table. Errors name the key.
func ParseConfig(t map[string]any) (Config, error) {
	c := Config{Timeout: DefaultTimeout, Kind: schema.Intermittent, MaxOutput: DefaultMaxOutput, Mode: ModePoll}
	if err := config.DecodeTable(t, &c); err != nil {
		return c, err
	}
	if err := schema.ValidateName(c.Name); err != nil {
		return c, fmt.Errorf("name: %w", err)
	}
	if c.Title == "" {
		c.Title = c.Name
	}
	if len(c.Command) == 0 {
		return c, errors.New("command: missing")
	}
	if c.Timeout == 0 {
		return c, errors.New("timeout: want a duration like 15s, more than 0")
	}
	if _, set := t["interval"]; set && c.Interval == 0 {
		return c, errors.New("interval: want a duration like 5m, more than 0 (without it, the publisher's)")
	}
	if c.Unit != "" {
		u, ok := schema.CanonicalUnit(c.Unit)
		if !ok {
			return c, fmt.Errorf("unit %q: not a unit apd knows (degC, percent, W, Wh, V, ppm, …)", c.Unit)
		}
		c.Unit = u
	}
	if c.Kind == "" {
		c.Kind = schema.Intermittent
	}
	if c.Kind != schema.Intermittent && c.Kind != schema.Persistent {
		return c, fmt.Errorf("kind %q: want intermittent or persistent", c.Kind)
	}
	if c.MaxOutput <= 0 {
		return c, fmt.Errorf("max_output: want a positive number of bytes")
	}
	if c.Mode == "" {
		c.Mode = ModePoll
	}
	if c.Mode != ModePoll && c.Mode != ModeStream {
		return c, fmt.Errorf("mode %q: want poll or stream", c.Mode)
	}
	return c, nil
}

// New returns the sensor of c: a [publisher.Streamer] in stream mode.
func New(c Config) publisher.Sensor {
	s := &Sensor{c: c}
	if c.Mode == ModeStream {
		return &StreamSensor{Sensor: s}
	}
	return s
}

// Sensor runs its program once per read.
type Sensor struct{ c Config }

// Title implements publisher.Sensor.
func (s *Sensor) Title() string { return s.c.Title }

// fail gives err the configured kind; a program that cannot be started at
// all is persistent whatever the kind.
func (s *Sensor) fail(err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return publisher.Persistent(err)
	}
	if s.c.Kind == schema.Persistent {
		return publisher.Persistent(err)
	}
	return publisher.Intermittent(err)
}

// Read implements publisher.Sensor: it runs the program, waits at most the
// timeout, and parses what it printed.
func (s *Sensor) Read(ctx context.Context) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.Timeout)
	defer cancel()
	cmd := s.command(ctx)
	stdout := &limitedBuffer{max: s.c.MaxOutput}
	stderr := &limitedBuffer{max: maxStderr, keepTail: true}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return nil, s.fail(fmt.Errorf("%s: no result within %s", s.c.Command[0], s.c.Timeout))
	case err != nil:
		return nil, s.fail(exitError(s.c.Command[0], err, stderr.String()))
	case stdout.over:
		return nil, s.fail(fmt.Errorf("%s: output larger than %d bytes", s.c.Command[0], s.c.MaxOutput))
	}
	v, err := s.parse(stdout.Bytes())
	if err != nil {
		return nil, s.fail(err)
	}
	return v, nil
}

// parse turns one output into a value: JSON as it is, a bare number with
// the configured unit as a quantity.
func (s *Sensor) parse(out []byte) (any, error) {
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("%s printed nothing", s.c.Command[0])
	}
	if !json.Valid(out) {
		return nil, fmt.Errorf("%s: output is not JSON or a number: %q", s.c.Command[0], truncate(string(out), 80))
	}
	if s.c.Unit != "" && (out[0] == '-' || out[0] >= '0' && out[0] <= '9') {
		var f float64
		if err := json.Unmarshal(out, &f); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", s.c.Command[0], truncate(string(out), 80), err)
		}
		return schema.Quantity{Magnitude: f, Unit: s.c.Unit}, nil
	}
	return json.RawMessage(out), nil
}

func exitError(program string, err error, stderr string) error {
	msg := lastLine(stderr)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if msg != "" {
			return fmt.Errorf("%s: %s: %s", program, ee.ProcessState, msg)
		}
		return fmt.Errorf("%s: %s", program, ee.ProcessState)
	}
	return fmt.Errorf("run %s: %w", program, err)
}

// lastLine is the last non-empty line of a program's stderr, where tools
// put the reason they failed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return truncate(strings.TrimSpace(lines[len(lines)-1]), 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// limitedBuffer keeps at most max bytes: the first ones, or with keepTail
// the last ones. over records that more came.
type limitedBuffer struct {
	buf      bytes.Buffer // not embedded: its ReadFrom would bypass Write
	max      int
	keepTail bool
	over     bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if b.keepTail {
		b.buf.Write(p)
		if extra := b.buf.Len() - b.max; extra > 0 {
			b.buf.Next(extra)
			b.over = true
		}
		return n, nil
	}
	if room := b.max - b.buf.Len(); len(p) > room {
		p = p[:max(room, 0)]
		b.over = true
	}
	b.buf.Write(p)
	return n, nil
}

func (b *limitedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *limitedBuffer) String() string { return b.buf.String() }

// StreamSensor keeps its program running and publishes each line.
type StreamSensor struct{ *Sensor }

// Read implements publisher.Sensor for one-off samples: it starts the
// program and takes its first line.
func (s *StreamSensor) Read(ctx context.Context) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.Timeout)
	defer cancel()
	var v any
	var err error
	got := false
	s.run(ctx, func(value any, e error) bool {
		v, err, got = value, e, true
		return false
	})
	if !got {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, s.fail(fmt.Errorf("%s: no line within %s", s.c.Command[0], s.c.Timeout))
		}
		return nil, s.fail(fmt.Errorf("%s printed nothing", s.c.Command[0]))
	}
	return v, err
}

// Stream implements publisher.Streamer: it runs the program until ctx
// ends, emitting a value or error per line, and an error each time the
// program dies before it is started again.
func (s *StreamSensor) Stream(ctx context.Context, emit func(any, error)) {
	pause := time.Second
	for ctx.Err() == nil {
		started := time.Now()
		if err := s.run(ctx, func(v any, err error) bool { emit(v, err); return true }); err != nil && ctx.Err() == nil {
			emit(nil, err)
		}
		if time.Since(started) > maxRestartPause {
			pause = time.Second // it ran well for a while: not a crash loop
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(2*pause, maxRestartPause)
	}
}

// run starts the program and hands each line to line until line returns
// false or the program ends; it returns why the program ended.
func (s *StreamSensor) run(ctx context.Context, line func(any, error) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := s.command(ctx)
	stderr := &limitedBuffer{max: maxStderr, keepTail: true}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return s.fail(err)
	}
	if err := cmd.Start(); err != nil {
		return s.fail(fmt.Errorf("start %s: %w", s.c.Command[0], err))
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 4096), s.c.MaxOutput)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		v, err := s.parse(sc.Bytes())
		if err != nil {
			err = s.fail(err)
		}
		if !line(v, err) {
			cancel()
			break
		}
	}
	scanErr := sc.Err()
	if scanErr != nil {
		cancel() // a line too long: start afresh rather than resynchronise
	}
	_, _ = io.Copy(io.Discard, out)
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil && scanErr == nil:
		return nil
	case errors.Is(scanErr, bufio.ErrTooLong):
		return s.fail(fmt.Errorf("%s: a line longer than %d bytes", s.c.Command[0], s.c.MaxOutput))
	case waitErr != nil:
		return s.fail(exitError(s.c.Command[0], waitErr, stderr.String()))
	}
	return s.fail(fmt.Errorf("%s exited", s.c.Command[0]))
}
