package apdcmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/schema"
)

func newWatchClient(url, user, password, ca string, cert cli.ClientCertFlags, log *slog.Logger) (*mqttc.Client, error) {
	return mqttc.Dial(mqttc.Options{
		URL: url, ClientID: fmt.Sprintf("apd-watch-%08x", rand.Uint32()),
		Username: user, Password: password, TLSCA: ca, TLSCert: cert.TLSCert, TLSKey: cert.TLSKey, QoS: 0, Logger: log,
	})
}

// watcher prints messages one line at a time.
type watcher struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
}

func newWatcher(prefix string, w io.Writer) *watcher { return &watcher{prefix: prefix, w: w} }

func (w *watcher) show(topic string, payload []byte) {
	line, ok := watchLine(topic, payload, w.prefix, time.Now())
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintln(w.w, line)
}

// WatchCmd is apd watch.
type WatchCmd struct {
	Broker        string `help:"Broker URL: tcp://, ssl:// or ws://." default:"tcp://127.0.0.1:1883" config:"client.broker"`
	Host          string `help:"Only this host." placeholder:"NAME"`
	Sensor        string `help:"Only this sensor." placeholder:"NAME"`
	cli.MQTTLogin `embed:"" envprefix:"APD_CLIENT_"`
	cli.ClientCertFlags
}

// Help implements kong's HelpProvider.
func (WatchCmd) Help() string {
	return `Prints readings live as they arrive on the broker, formatted for people.

Examples:
  apd watch
  apd watch --host pi-kitchen --sensor temperature`
}

// Run implements the command.
func (c *WatchCmd) Run(ctx context.Context, g *cli.Globals) error {
	password, err := c.Password()
	if err != nil {
		return err
	}
	log := g.Logger()
	host, sensor := "+", "+"
	if c.Host != "" {
		host = c.Host
	}
	if c.Sensor != "" {
		sensor = c.Sensor
	}
	client, err := newWatchClient(c.Broker, c.Username, password, c.TLSCA, c.ClientCertFlags, log)
	if err != nil {
		return err
	}
	defer client.Close()
	watcher := newWatcher(g.Prefix, g.Stdout())
	if err := client.Subscribe(g.Prefix+"/"+host+"/"+sensor, watcher.show); err != nil {
		return err
	}
	fmt.Fprintf(g.Stderr(), "watching %s/%s/%s on %s (Ctrl-C to stop)\n", g.Prefix, host, sensor, c.Broker)
	<-ctx.Done()
	return nil
}

// watchLine formats one message for apd watch: time, host, sensor, value.
func watchLine(topic string, payload []byte, prefix string, now time.Time) (string, bool) {
	rest, ok := strings.CutPrefix(topic, prefix+"/")
	if !ok {
		return "", false
	}
	host, sensor, ok := strings.Cut(rest, "/")
	if !ok || sensor == "$ack" {
		return "", false
	}
	if sensor == "$status" {
		return fmt.Sprintf("%s  %-20s %s", now.UTC().Format("15:04:05"), schema.Printable(host), schema.Printable(strings.TrimSpace(string(payload)))), true
	}
	r, err := schema.Decode(host, sensor, payload, now)
	if err != nil {
		return schema.Printable(fmt.Sprintf("%s  %-20s %-20s rejected: %v", now.UTC().Format("15:04:05"), host, sensor, err)), true
	}
	lines := strings.Split(schema.Human(&r), "\n")
	return fmt.Sprintf("%s  %-20s %-20s %s", r.Time.Format("15:04:05"), host, sensor, strings.Join(lines, ", ")), true
}
