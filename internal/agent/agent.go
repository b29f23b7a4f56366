// Package agent is the device side's wiring, shared by apd-publish and
// apd serve --with-publisher: the flags of sampling and publishing, the
// sensors built from them and the config file, and a publisher with its
// spool and MQTT connection.
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/mqttc"
	"github.com/apd-telemetry/apd/internal/procio"
	"github.com/apd-telemetry/apd/publisher"
	"github.com/apd-telemetry/apd/publisher/homeassistant"
	"github.com/apd-telemetry/apd/publisher/sensors/external"
	"github.com/apd-telemetry/apd/schema"
)

// ExitRules are the exit codes of the device side's errors, for both
// binaries (apd serve --with-publisher and apd sensors link it too).
var ExitRules = append(slices.Clone(cli.ConfigExitRules),
	cli.ExitRule{Err: publisher.ErrUnknownSensor, Code: cli.ExitUnknownSensor, Hint: "apd sensors --list shows the sensors this build has"},
	cli.ExitRule{Err: mqttc.ErrUnreachable, Code: cli.ExitUnreachable, Hint: "check --broker and that the broker runs"},
)

// SensorFlags choose and bound the local sensors.
type SensorFlags struct {
	Sensors       []string      `help:"Sensors to sample, comma-separated (default: all this build has whose hardware this machine has)." sep:"," placeholder:"A,B" config:"publisher.sensors"`
	SensorTimeout time.Duration `help:"Longest wait for one sensor read." default:"10s" config:"publisher.sensor_timeout"`
	Attempts      int           `help:"Tries for a sensor failing intermittently." default:"3" config:"publisher.attempts"`
	SysRoot       string        `help:"Root of the /sys and /proc trees sensors read (for tests and containers)." hidden:"" config:"publisher.sysroot"`
}

// PublisherFlags configure sampling and publishing on a device.
type PublisherFlags struct {
	SensorFlags
	Host          string        `help:"Name of this device in topics (default: the sanitised OS hostname)." placeholder:"NAME" config:"publisher.host"`
	Interval      time.Duration `help:"Sampling interval, aligned to the clock." default:"10s" config:"publisher.interval"`
	QoS           int           `name:"qos" help:"MQTT QoS for readings (0 or 1)." default:"1" enum:"0,1" config:"publisher.qos"`
	cli.MQTTLogin `embed:"" envprefix:"APD_PUBLISHER_"`
	ResendAfter   time.Duration `help:"Publish again readings the aggregator has not acknowledged after this long." default:"60s" config:"publisher.resend_after"`
	ReplayRate    int           `help:"Most spooled readings per second published when catching up after an outage." default:"1000" config:"publisher.replay_rate"`
	DrainTimeout  time.Duration `help:"On stop, how long to keep publishing and waiting for acknowledgements before leaving the rest in the spool." default:"5s" config:"publisher.drain_timeout"`
	SpoolMaxBytes int64         `help:"Bound of the spool's contents in bytes; past it the oldest readings are dropped (and counted)." default:"67108864" config:"publisher.spool_max_bytes"`
	Sync          string        `help:"When spooled readings are forced to storage: every (each tick, before publishing: a power cut loses nothing published), a window such as 30s (readings not acknowledged within it: a power cut loses at most its last readings), or os (the kernel's write-back, about 30 s). A kill loses nothing either way." default:"30s" config:"publisher.sync"`
	SpoolStaging  string        `help:"Directory on a tmpfs where, with a --sync window, the newest spooled readings wait for acknowledgement, so that those acknowledged within the window never reach storage; none disables (default: $RUNTIME_DIRECTORY, else $XDG_RUNTIME_DIR/apd, else /dev/shm/apd-<uid>, the first on a tmpfs)." placeholder:"DIR" config:"publisher.spool_staging"`
	HADiscovery   bool          `name:"ha-discovery" help:"Announce the sensors to Home Assistant by MQTT discovery (retained configs)." config:"publisher.ha_discovery"`
	HAPrefix      string        `name:"ha-prefix" help:"Home Assistant's discovery prefix." default:"homeassistant" config:"publisher.ha_prefix"`
}

// BuildSensors creates the selected sensors with their config tables:
// built-ins and families from the registry, [[sensors.exec]] programs. No
// selection means every sensor there is, and then a sensor whose hardware
// is missing (publisher.Prober) is marked Absent, unless a
// [sensors.<name>] table names it: a sensor the configuration asks for is
// sampled, and its failures stored. A name nobody knows, selected or
// given a table, is an error wrapping publisher.ErrUnknownSensor that lists
// the known ones.
func BuildSensors(f SensorFlags, file *config.File) ([]publisher.Named, error) {
	reg := publisher.DefaultRegistry()
	tables, err := file.Sensors()
	if err != nil {
		return nil, err
	}
	execs, err := execSensors(file, reg)
	if err != nil {
		return nil, err
	}
	b := sensorBuilder{reg: reg, tables: tables, execs: execs, flags: f, devices: &publisher.Devices{}}
	names := f.Sensors
	if len(names) == 0 {
		names = reg.Names()
		for _, c := range execs {
			names = append(names, c.Name)
		}
	}
	var out []publisher.Named
	var probe []bool // of each of out: not asked for by name or table
	seen := map[string]bool{}
	for _, name := range names {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		sensors, err := b.build(name)
		if err != nil {
			return nil, err
		}
		for _, n := range sensors {
			if seen[n.Name] {
				continue
			}
			seen[n.Name] = true
			_, configured := tables[name]
			_, ownTable := tables[n.Name]
			probe = append(probe, len(f.Sensors) == 0 && !configured && !ownTable)
			out = append(out, n)
		}
	}
	// Probed once all are built: sensors that share a device (a DHT's
	// temperature and humidity) take its settings from either's table.
	for i := range out {
		if probe[i] {
			out[i].Absent = publisher.Present(out[i].Sensor)
		}
	}
	if len(tables) > 0 {
		known := b.knownNames()
		for name := range tables {
			if !slices.Contains(known, name) {
				return nil, fmt.Errorf("[sensors.%s]: %w %q (known: %s)", name, publisher.ErrUnknownSensor, name, strings.Join(known, ", "))
			}
		}
	}
	return out, nil
}

// execSensors parses the [[sensors.exec]] tables.
func execSensors(file *config.File, reg *publisher.Registry) ([]external.Config, error) {
	tables, err := file.ExecSensors()
	if err != nil {
		return nil, err
	}
	out := make([]external.Config, 0, len(tables))
	names := map[string]bool{}
	for i, t := range tables {
		c, err := external.ParseConfig(t)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: sensors.exec[%d]: %v", config.ErrBadConfig, file.Path, i, err)
		}
		if names[c.Name] || reg.Has(c.Name) {
			return nil, fmt.Errorf("%w: %s: sensors.exec[%d]: name %q is taken by another sensor", config.ErrBadConfig, file.Path, i, c.Name)
		}
		names[c.Name] = true
		out = append(out, c)
	}
	return out, nil
}

type sensorBuilder struct {
	reg     *publisher.Registry
	tables  config.SensorTables
	execs   []external.Config
	flags   SensorFlags
	devices *publisher.Devices
	members map[string][]publisher.Member // families expanded, by family
}

// build returns the sensors name stands for.
func (b *sensorBuilder) build(name string) ([]publisher.Named, error) {
	policy := publisher.ReadPolicy{Timeout: b.flags.SensorTimeout, Attempts: b.flags.Attempts}
	for _, c := range b.execs {
		if c.Name == name {
			// The program's own timeout cuts it off; the read policy's
			// must not come first.
			p := policy
			p.Timeout = c.Timeout + 2*time.Second
			return []publisher.Named{{Name: name, Sensor: external.New(c), Policy: p, Interval: c.Interval}}, nil
		}
	}
	if b.reg.Has(name) {
		env, interval, err := b.env(name)
		if err != nil {
			return nil, err
		}
		env, check := env.WithParams(env.Params)
		members, err := b.reg.Expand(name, env)
		if err == nil {
			err = check()
		}
		if err != nil {
			// Sensors fail at build time only on their settings; missing
			// hardware is a persistent error of each read.
			return nil, fmt.Errorf("%w: [sensors.%s]: %v", config.ErrBadConfig, name, err)
		}
		out := make([]publisher.Named, 0, len(members))
		for _, m := range members {
			iv := interval
			if m.Name != name {
				own, err := b.memberInterval(m.Name)
				if err != nil {
					return nil, err
				}
				if own > 0 {
					iv = own
				}
			}
			out = append(out, publisher.Named{Name: m.Name, Sensor: m.Sensor, Policy: policy, Interval: iv})
		}
		return out, nil
	}
	// A member of a family, selected by its own name.
	for family, members := range b.expandFamilies() {
		for _, m := range members {
			if m.Name == name {
				_, interval, err := b.env(family)
				if err != nil {
					return nil, err
				}
				own, err := b.memberInterval(name)
				if err != nil {
					return nil, err
				}
				if own > 0 {
					interval = own
				}
				return []publisher.Named{{Name: name, Sensor: m.Sensor, Policy: policy, Interval: interval}}, nil
			}
		}
	}
	return nil, fmt.Errorf("%w %q (known: %s)", publisher.ErrUnknownSensor, name, strings.Join(b.knownNames(), ", "))
}

// env returns the Env of the sensor with the [sensors.<name>] table, and
// its interval setting (0 when unset).
func (b *sensorBuilder) env(name string) (publisher.Env, time.Duration, error) {
	params := map[string]any{}
	var interval time.Duration
	for k, v := range b.tables[name] {
		if k == "interval" {
			s, _ := v.(string)
			d, err := config.ParseDuration(s)
			if err != nil || d <= 0 {
				return publisher.Env{}, 0, fmt.Errorf("%w: sensors.%s.interval %v: want a duration like 30s or 1d", config.ErrBadConfig, name, v)
			}
			interval = d
			continue
		}
		params[k] = v
	}
	return publisher.Env{Root: b.flags.SysRoot, Params: params, Version: cli.Version, Devices: b.devices}, interval, nil
}

// memberInterval returns the interval set in a family member's own table
// ([sensors.ds18b20_28-0000]), which may set nothing else: its parameters
// are the family's.
func (b *sensorBuilder) memberInterval(member string) (time.Duration, error) {
	env, interval, err := b.env(member)
	if err != nil {
		return 0, err
	}
	if err := config.DecodeTable(env.Params, &struct{}{}); err != nil {
		return 0, fmt.Errorf("%w: [sensors.%s]: %v (a probe's own table takes only interval)", config.ErrBadConfig, member, err)
	}
	return interval, nil
}

// expandFamilies finds the members of every family, once.
func (b *sensorBuilder) expandFamilies() map[string][]publisher.Member {
	if b.members == nil {
		b.members = map[string][]publisher.Member{}
		for _, name := range b.reg.Names() {
			if !b.reg.IsFamily(name) {
				continue
			}
			env, _, _ := b.env(name)
			b.members[name], _ = b.reg.Expand(name, env)
		}
	}
	return b.members
}

// knownNames lists every name a sensor can be selected by.
func (b *sensorBuilder) knownNames() []string {
	names := b.reg.Names()
	for _, c := range b.execs {
		names = append(names, c.Name)
	}
	for _, members := range b.expandFamilies() {
		for _, m := range members {
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// DefaultHost returns the sanitised OS hostname.
func DefaultHost() string {
	h, _ := os.Hostname()
	return schema.SanitizeName(h)
}

// DefaultSpool returns <state dir>/apd-spool.db, the spool's directory
// (the name is the bbolt file's of earlier versions, which is migrated in
// place): $STATE_DIRECTORY (set by systemd), else $XDG_STATE_HOME/apd,
// else ~/.local/state/apd.
func DefaultSpool() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return filepath.Join(d, "apd-spool.db")
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "apd", "apd-spool.db")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "apd", "apd-spool.db")
	}
	return "apd-spool.db"
}

// SpoolOptions returns the spool's options the flags set; a --sync the
// spool does not know is a usage error.
func (f PublisherFlags) SpoolOptions(log *slog.Logger) (publisher.SpoolOptions, error) {
	policy, err := publisher.ParseSyncPolicy(f.Sync)
	if err != nil {
		return publisher.SpoolOptions{}, cli.WithCode(cli.ExitUsage, fmt.Errorf("--sync: %w", err), "")
	}
	return publisher.SpoolOptions{MaxBytes: f.SpoolMaxBytes, Sync: policy, Logger: log}, nil
}

// stagingDir picks the spool's staging directory as --spool-staging says
// (publisher.ChooseStagingDir) and logs, once, which one or why none. The
// spool gets it whatever the policy, to take back what a run with a
// window staged; it stages only with a window.
func (f PublisherFlags) stagingDir(spoolPath string, sync publisher.SyncPolicy, log *slog.Logger) string {
	dir, err := publisher.ChooseStagingDir(spoolPath, f.SpoolStaging)
	switch {
	case err != nil && f.SpoolStaging != "":
		log.Warn("spool staging: none, the newest readings go to the spool directory", "reason", err)
	case err != nil:
		// The default found no tmpfs: off Linux, or in a container
		// without one.
		log.Info("spool staging: none, the newest readings go to the spool directory", "reason", err)
	case dir == "":
		log.Info("spool staging: none (--spool-staging none)")
	case sync.Mode != publisher.SyncWindow:
		log.Info("spool staging: not with --sync "+sync.String(), "staging", dir)
	default:
		log.Info("spool staging", "staging", dir)
	}
	return dir
}

// Agent is a running publisher with its spool and connection.
type Agent struct {
	Pub      *publisher.Publisher
	Spool    *publisher.Spool
	Client   *mqttc.Client
	ClientID string

	started time.Time
	startIO procio.Counters // this process's, when started
	ioKnown bool            // the kernel keeps per-process counters
}

// Wear reports what this process has caused to be written to storage
// since it started: the kernel's count where it keeps one (the spool's,
// the logs', everything), else the spool's own; and the spool's fsyncs.
// It goes into every $status and to the log on SIGUSR1.
func (a *Agent) Wear() *schema.Wear {
	sw := a.Spool.Wear()
	w := &schema.Wear{Since: a.started, BytesWritten: sw.BytesWritten, Syncs: sw.Syncs}
	if a.ioKnown {
		if c, err := procio.Self(); err == nil {
			w.BytesWritten = c.WrittenSince(a.startIO)
		}
	}
	up := time.Since(a.started)
	w.BytesPerDay, w.SyncsPerDay = procio.PerDay(w.BytesWritten, up), procio.PerDay(w.Syncs, up)
	return w
}

// LogWear writes Wear to log, as SIGUSR1 asks.
func (a *Agent) LogWear(log *slog.Logger) {
	w := a.Wear()
	log.Info("disk writes", "since", w.Since.UTC().Format(time.RFC3339), "bytes_written", w.BytesWritten,
		"bytes_written_per_day", w.BytesPerDay, "syncs", w.Syncs, "syncs_per_day", w.SyncsPerDay,
		"spool_waiting", a.Spool.Depth())
}

// NewAgent opens the spool and builds the MQTT client and the publisher
// on it, wired to each other; nothing connects before Start.
func NewAgent(f PublisherFlags, cert cli.ClientCertFlags, sensors []publisher.Named, brokerURL, spoolPath string, topics schema.Topics, retry bool, log *slog.Logger) (*Agent, error) {
	host := f.Host
	if host == "" {
		host = DefaultHost()
	}
	if err := schema.ValidateName(host); err != nil {
		return nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("--host: %w", err), "")
	}
	password, err := f.Password()
	if err != nil {
		return nil, err
	}
	opts, err := f.SpoolOptions(log)
	if err != nil {
		return nil, err
	}
	opts.StagingDir = f.stagingDir(spoolPath, opts.Sync, log)
	spool, err := publisher.OpenSpool(spoolPath, opts)
	if err != nil {
		return nil, err
	}
	a := &Agent{Spool: spool, ClientID: "apd-publish-" + host, started: time.Now()}
	if c, err := procio.Self(); err == nil {
		a.startIO, a.ioKnown = c, true
	}
	lost, _ := json.Marshal(schema.Status{State: schema.StateLost})
	a.Client, err = mqttc.New(mqttc.Options{
		URL:      brokerURL,
		ClientID: a.ClientID,
		Username: f.Username,
		Password: password,
		TLSCA:    f.TLSCA,
		TLSCert:  cert.TLSCert,
		TLSKey:   cert.TLSKey,
		QoS:      byte(f.QoS),
		Will:     &mqttc.Will{Topic: topics.Status(host), Payload: lost, Retain: true},
		Retry:    retry,
		// Pub is set before Start, so before any connection.
		OnConnect: func() { a.Pub.Connected(context.Background()) },
		Logger:    log,
	})
	if err != nil {
		spool.Close()
		return nil, err
	}
	var announcers []publisher.Announcer
	if f.HADiscovery {
		// Absent sensors get no entity: it would never have a reading.
		sampled := publisher.Sampled(sensors)
		names := make([]string, len(sampled))
		for i, s := range sampled {
			names[i] = s.Name
		}
		announcers = append(announcers, homeassistant.New(homeassistant.Options{
			Prefix: f.HAPrefix, Host: host, Topics: topics, Version: cli.Version, Sensors: names, Logger: log}))
	}
	a.Pub = publisher.New(publisher.Options{
		Host: host, Topics: topics, Interval: f.Interval, Sensors: sensors, Announcers: announcers,
		Version: cli.Version, ResendAfter: f.ResendAfter, ReplayRate: f.ReplayRate, DrainTimeout: f.DrainTimeout, Logger: log,
		Wear: a.Wear,
	}, spool, a.Client)
	return a, nil
}

// Start connects to the broker: in the background, retrying, when the
// agent was made with retry; otherwise it returns the error of a failed
// first attempt, and the agent must still be closed.
func (a *Agent) Start() error { return a.Client.Start() }

// Close disconnects and closes the spool.
func (a *Agent) Close() {
	a.Client.Close()
	a.Spool.Close()
}
