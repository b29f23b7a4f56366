package apdcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/alecthomas/kong"
	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/demo"
	"github.com/apd-telemetry/apd/internal/server"
	"github.com/apd-telemetry/apd/schema"
)

// DemoCmd is apd demo.
type DemoCmd struct {
	Dir         string        `help:"Directory for the demo's data and config (created; must be empty if it exists). Default: a new directory under the system's temporary directory." placeholder:"DIR" type:"path"`
	Keep        bool          `help:"Keep the directory at exit; it is removed otherwise."`
	Seed        uint64        `help:"Seed of the simulated fleet: the same seed gives the same readings at the same times." default:"1"`
	For         time.Duration `name:"for" help:"Stop by itself after this long; 0 runs until Ctrl-C." default:"0" placeholder:"D"`
	HTTPAddr    string        `name:"http-addr" help:"HTTP API and dashboard listen address (apd serve's default, so apd query and apd hosts find it without --server)." default:"127.0.0.1:8080" placeholder:"HOST:PORT"`
	MQTTAddr    string        `name:"mqtt-addr" help:"MQTT listen address of the embedded broker (apd serve's default, so apd watch finds it without --broker)." default:"127.0.0.1:1883" placeholder:"HOST:PORT"`
	Interval    time.Duration `help:"Interval of the live readings (default 10s)." default:"10s" placeholder:"D"`
	History     string        `help:"How much history to write before going live (default 7d)." default:"7d" placeholder:"D"`
	HistoryStep time.Duration `name:"history-step" help:"Interval of the history's readings (default 1m)." default:"1m" placeholder:"D"`
}

// Help implements kong's HelpProvider.
func (DemoCmd) Help() string {
	return `Runs apd serve on a simulated fleet in a throwaway directory: a dozen
hosts in one city (the rooms of a house, a greenhouse, a shed and a garden
station on an allotment, a studio, three servers) with names, colours and
locations; temperature and humidity with daily cycles and weather,
cpu_load, ram_available and an energy meter; a week of history at one
reading a minute, then live readings over MQTT every 10 seconds. The
studio went offline five hours ago, the shed's DHT22 fails now and then,
and the rule greenhouse-cold (temperature < 5 °C, in <dir>/apd.toml)
publishes its outcomes.

It listens where apd serve does, so another terminal's apd query, apd
hosts, apd watch and apd chart need no --server or --broker; stop a
running apd serve first, or pass other addresses. The same --seed gives
the same readings at the same times. See docs/demo.md.

Examples:
  apd demo
  apd demo --keep --dir ./demo-data
  apd demo --http-addr 127.0.0.1:8081 --mqtt-addr 127.0.0.1:1884
  apd demo --for 10m --seed 7`
}

// Run implements the command.
func (c *DemoCmd) Run(ctx context.Context, g *cli.Globals) error {
	log := g.Logger()
	span, err := config.ParseDuration(c.History)
	if err != nil || span < c.HistoryStep || c.HistoryStep <= 0 || c.Interval <= 0 {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("--history %s, --history-step %s, --interval %s: want positive durations, the history at least a step",
			c.History, c.HistoryStep, c.Interval), "")
	}
	for _, a := range []struct{ flag, addr string }{{"--mqtt-addr", c.MQTTAddr}, {"--http-addr", c.HTTPAddr}} {
		if err := checkFree(a.addr); err != nil {
			return cli.WithCode(cli.ExitFailure, fmt.Errorf("%s: %w", a.flag, err), "stop the apd serve running there, or pass --http-addr and --mqtt-addr")
		}
	}
	dir, err := c.makeDir()
	if err != nil {
		return err
	}
	if !c.Keep {
		defer os.RemoveAll(dir)
	}
	cfgPath := filepath.Join(dir, "apd.toml")
	if err := os.WriteFile(cfgPath, []byte(demo.Rules), 0o644); err != nil {
		return fmt.Errorf("write the demo's config: %w", err)
	}
	file, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	ruleCfgs, err := loadRules(file)
	if err != nil {
		return err
	}

	// apd serve's settings, at their defaults, on the demo's directory.
	var serve ServeCmd
	if err := kong.ApplyDefaults(&serve); err != nil {
		return fmt.Errorf("apd serve's defaults: %w", err)
	}
	serve.Data, serve.HTTPAddr, serve.MQTTAddr = dir, c.HTTPAddr, c.MQTTAddr
	topics := schema.Topics{Prefix: g.Prefix}
	srv, err := serve.newServer(topics, "", serve.DiscoveryPrefix, file, log)
	if err != nil {
		return err
	}

	fleet := demo.New(c.Seed)
	begin := time.Now()
	bar := demoProgress{w: g.Stderr(), start: begin}
	imp, err := fleet.Import(srv.Store(), demo.History{End: begin, Span: span, Step: c.HistoryStep, Rules: ruleCfgs, Progress: bar.show})
	bar.done()
	if err != nil {
		srv.Close()
		return err
	}
	log.Info("demo history imported", "readings", imp.Readings, "rule_outcomes", imp.Outcomes, "since", imp.Start.Format(time.RFC3339),
		"took", time.Since(begin).Round(time.Millisecond))

	if c.For > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.For)
		defer cancel()
	}
	tr := &server.EmbeddedBroker{Options: serve.BrokerFlags.options(dir, serve.MaxPayload, g.Prefix, nil, nil, g.BrokerLogger())}
	var live *demo.Live
	err = srv.Run(ctx, tr, server.RunOptions{Name: "apd serve", Attrs: []any{"demo", dir, "seed", c.Seed, "version", cli.Version},
		Started: func() error {
			var err error
			live, err = fleet.StartLive(demo.LiveOptions{Broker: tr.Broker().Addr(), Topics: topics, Interval: c.Interval,
				Version: cli.Version, Logger: log})
			if err != nil {
				return err
			}
			c.banner(g.Stdout(), len(fleet.Hosts), imp, srv.HTTPURL(), tr.Broker().Addr(), dir)
			return nil
		},
		Stopping: func() {
			if live == nil {
				return
			}
			live.Close()
			// Closing the broker while a DISCONNECT is unread would
			// publish the device's last will as if it had died.
			for _, id := range live.ClientIDs() {
				tr.Broker().WaitGone(id, time.Second)
			}
		}})
	if errors.Is(err, server.ErrBrokerStart) {
		return brokerStartError(err)
	}
	if err != nil {
		return err
	}
	if c.Keep {
		fmt.Fprintf(g.Stderr(), "demo stopped; its data stays in %s (apd serve --data %s serves it again)\n", dir, dir)
	}
	return nil
}

// makeDir creates the demo's directory: --dir, empty, or a new one.
func (c *DemoCmd) makeDir() (string, error) {
	if c.Dir == "" {
		dir, err := os.MkdirTemp("", "apd-demo-")
		if err != nil {
			return "", fmt.Errorf("create the demo's directory: %w", err)
		}
		return dir, nil
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return "", cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--dir: %w", err), "")
	}
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return "", cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--dir: %w", err), "")
	}
	if len(entries) > 0 {
		return "", cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--dir %s is not empty", c.Dir),
			"pass a new or empty directory; a kept demo runs again with apd serve --data "+c.Dir)
	}
	return c.Dir, nil
}

// checkFree says whether addr can be listened on now, so that a busy
// address fails before anything is made rather than after the history.
// Port 0 is always free.
func checkFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// banner tells where the dashboard is and what to try.
func (c *DemoCmd) banner(w io.Writer, hosts int, imp demo.Imported, httpURL, mqttAddr, dir string) {
	server, broker := "", ""
	if c.HTTPAddr != "127.0.0.1:8080" {
		server = " --server " + httpURL
	}
	if c.MQTTAddr != "127.0.0.1:1883" {
		broker = " --broker tcp://" + mqttAddr
	}
	kept := "removed at exit; --keep keeps it"
	if c.Keep {
		kept = "kept at exit"
	}
	fmt.Fprintf(w, `
  apd demo: %d hosts, %s readings of history since %s, live readings every %s.

  Dashboard:  %s/

  Try, in another terminal:
    apd hosts%s
    apd query%s --sensor temperature --host greenhouse --since 1h
    apd query%s --sensor temperature --since 24h --agg max --every 6h
    apd watch%s
    apd rules status%s

  Data: %s (%s). Ctrl-C stops.

`, hosts, thousands(imp.Readings), imp.Start.Local().Format("Mon 2 Jan 15:04"), c.Interval, httpURL,
		server, server, server, broker, server, dir, kept)
}

// demoProgress shows how far the history is, on a terminal, once it
// takes longer than a second.
type demoProgress struct {
	w     io.Writer
	start time.Time
	shown bool
}

func (p *demoProgress) show(done, total int) {
	if time.Since(p.start) < time.Second || !isTerminal(p.w) {
		return
	}
	p.shown = true
	fmt.Fprintf(p.w, "\rwriting the demo's history: %d%%   ", min(100, done*100/max(total, 1)))
}

func (p *demoProgress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
