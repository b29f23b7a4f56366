// Package cli is the command framework both binaries share: parsing with
// kong and the config file, global flags, errors as one line with their
// exit code. It links neither application: apd's commands are in
// internal/apdcmd, apd-publish's in cmd/apd-publish/publishmain, and each
// extends the exit-code table with the errors of the packages it links.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/apd-telemetry/apd/internal/config"
)

// Exit codes (SPEC §4).
const (
	ExitOK            = 0
	ExitFailure       = 1
	ExitUsage         = 2
	ExitUnknownSensor = 17
	ExitBadConfig     = 18
	ExitUnreachable   = 19
)

// Version is the apd version, set at build time with
// -ldflags "-X github.com/apd-telemetry/apd/internal/cli.Version=...".
var Version = "0.1.0-dev"

// Error is an error with an exit code and an optional hint the user can act
// on, printed as "Try: ...".
type Error struct {
	Code int
	Err  error
	Hint string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func WithCode(code int, err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err, Hint: hint}
}

// ExitRule gives the errors that wrap Err an exit code and a hint the
// user can act on.
type ExitRule struct {
	Err  error
	Code int
	Hint string
}

// ConfigExitRules are the exit codes of the framework's own errors. Each
// application extends the table with those of the packages it links
// (the device side's in internal/agent, the server side's in apdcmd), so
// the framework imports none of them.
var ConfigExitRules = []ExitRule{
	{config.ErrBadConfig, ExitBadConfig, ""},
}

// exitCode picks the exit code of an error: its own (an *Error), else
// that of the first rule whose error it wraps, else ExitFailure.
func exitCode(err error, rules []ExitRule) (int, string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, e.Hint
	}
	for _, r := range rules {
		if errors.Is(err, r.Err) {
			return r.Code, r.Hint
		}
	}
	return ExitFailure, ""
}

// Globals are the flags every command takes.
type Globals struct {
	Config   string `help:"TOML configuration file (also $APD_CONFIG)." placeholder:"FILE" type:"path"`
	LogLevel string `help:"Log level: debug, info, warn, error." default:"info" enum:"debug,info,warn,error" config:"log.level"`
	Verbose  bool   `short:"v" help:"Log debug detail (same as --log-level debug)."`
	Prefix   string `help:"First level of apd topics." default:"apd" config:"mqtt.prefix"`

	stderr io.Writer
	stdout io.Writer
}

func (g *Globals) level() slog.Level {
	switch {
	case g.Verbose || g.LogLevel == "debug":
		return slog.LevelDebug
	case g.LogLevel == "warn":
		return slog.LevelWarn
	case g.LogLevel == "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Stdout is where commands write their output.
func (g *Globals) Stdout() io.Writer { return g.stdout }

// Stderr is where commands write messages for people.
func (g *Globals) Stderr() io.Writer { return g.stderr }

// Logger returns the logger the flags ask for, writing to stderr.
func (g *Globals) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(g.Stderr(), &slog.HandlerOptions{Level: g.level()}))
}

// BrokerLogger is the embedded broker's logger: its routine messages
// (hooks added, listeners attached) show only at debug level.
func (g *Globals) BrokerLogger() *slog.Logger {
	level := max(g.level(), slog.LevelWarn)
	if g.level() == slog.LevelDebug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(g.Stderr(), &slog.HandlerOptions{Level: level})).With("component", "broker")
}

// Main parses args for the command tree cli (a struct embedding Globals),
// runs the selected command and returns the process exit code. Errors are
// printed as one line on stderr, with a hint where one helps.
//
// keys are the config keys the file may hold beyond those of cli's flags
// (one file serves both binaries); rules map errors to exit codes and
// hints (see ExitRule).
//
// opts are more kong options: the variables (kong.Vars) a command's tags
// use, such as the names of registered aggregates in an enum.
func Main(name, description string, cli any, globals *Globals, args []string, stdout, stderr io.Writer,
	keys map[string]bool, rules []ExitRule, opts ...kong.Option) int {
	globals.stdout, globals.stderr = stdout, stderr
	file, err := config.Load(config.FindPath(args))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitBadConfig
	}
	exit := -1
	parser, err := kong.New(cli, append([]kong.Option{
		kong.Name(name),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Resolvers(file.Resolver(keys)),
		// One duration parser for flags and the file alike: 7d works everywhere.
		kong.TypeMapper(reflect.TypeOf(time.Duration(0)), kong.MapperFunc(func(ctx *kong.DecodeContext, target reflect.Value) error {
			var s string
			if err := ctx.Scan.PopValueInto("duration", &s); err != nil {
				return err
			}
			d, err := config.ParseDuration(s)
			if err != nil {
				return err
			}
			target.SetInt(int64(d))
			return nil
		})),
		kong.Bind(globals),
	}, opts...)...)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitFailure
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 { // --help
		return exit
	}
	if perr := (*kong.ParseError)(nil); errors.As(err, &perr) {
		kctx = perr.Context
	}
	if err != nil {
		if errors.Is(err, config.ErrBadConfig) {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return ExitBadConfig
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		fmt.Fprintf(stderr, "Run %s --help for usage.\n", strings.Join(append([]string{name}, commandPath(kctx)...), " "))
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	kctx.Bind(file)
	if err := kctx.Run(); err != nil {
		code, hint := exitCode(err, rules)
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		if hint != "" {
			fmt.Fprintf(stderr, "Try: %s\n", hint)
		}
		return code
	}
	return ExitOK
}

// Keys returns the config keys of the flags of a command tree; opts are
// the kong options (variables) the tree's tags need.
func Keys(opts []kong.Option, trees ...any) map[string]bool {
	keys := map[string]bool{}
	for _, tree := range trees {
		if k, err := kong.New(tree, opts...); err == nil {
			config.Keys(k.Model, keys)
		}
	}
	return keys
}

func commandPath(kctx *kong.Context) []string {
	if kctx == nil {
		return nil
	}
	var out []string
	for _, p := range kctx.Path {
		if p.Command != nil {
			out = append(out, p.Command.Name)
		}
	}
	return out
}
