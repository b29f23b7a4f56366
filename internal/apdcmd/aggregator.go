package apdcmd

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/apd-telemetry/apd/internal/chart/geo"
	"github.com/apd-telemetry/apd/internal/store/engine"

	"github.com/apd-telemetry/apd/internal/cli"
	"github.com/apd-telemetry/apd/internal/config"
	"github.com/apd-telemetry/apd/internal/ingest"
	"github.com/apd-telemetry/apd/internal/ingest/influxline"
	"github.com/apd-telemetry/apd/internal/ingest/remotewrite"
	"github.com/apd-telemetry/apd/internal/rules"
	"github.com/apd-telemetry/apd/internal/server"
	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/schema"
)

// DataFlags locate the aggregator's database.
type DataFlags struct {
	Data string `help:"Data directory; the database is <data>/apd.db." default:"./apd-data" placeholder:"DIR" type:"path" config:"server.data" envalias:"APD_DATA"`
}

// IngestFlags tune the ingestion pipeline.
type IngestFlags struct {
	MaxPayload int `help:"Largest accepted payload in bytes." default:"65536" config:"server.max_payload"`
	MaxBatch   int `help:"Most readings per commit." default:"2000" config:"server.max_batch"`
	// 50 ms: devices on one clock-aligned tick publish within tens of
	// milliseconds of each other; measured with ten devices of 13
	// sensors, 10 ms made 1.42 commits a tick (each a page and an fsync on
	// the card), 30–50 ms one.
	BatchDelay time.Duration `help:"How long a commit waits, after its first reading, to gather more (a tick of many devices in one commit and one fsync)." default:"50ms" config:"server.batch_delay"`
	// Deferred commits: what keeps a Pi's SD card alive (docs/reliability.md).
	CheckpointEvery time.Duration `help:"With the embedded engine, how long commits that only add readings may wait in the write-ahead file <data>/apd.db-wal (one page and one fdatasync each) before the database file takes them in one commit; 0 commits each to the database file." default:"1h" config:"server.checkpoint_every"`
	MaxAge          time.Duration `help:"Reject readings stamped earlier than this before now (to dead letters)." default:"8760h" config:"server.max_age"`
	MaxAhead        time.Duration `help:"Reject readings stamped later than this after now." default:"24h" config:"server.max_ahead"`
	Retention       string        `help:"Delete readings older than this (e.g. 90d, 26w); empty keeps everything." placeholder:"D" config:"server.retention"`
	// Dead letters are bounded: a device flooding junk must not fill the disk.
	DeadLettersMax      int   `help:"Most dead letters kept; the oldest are dropped (and counted) beyond it." default:"10000" config:"server.dead_letters_max"`
	DeadLettersMaxBytes int64 `help:"Most bytes of dead letters kept; the oldest are dropped (and counted) beyond it." default:"8388608" config:"server.dead_letters_max_bytes"`
	// Series are bounded: a device inventing sensor names must not fill
	// the disk (defaults: ingest.DefaultMaxSeriesPerHost, DefaultMaxSeries).
	MaxSeriesPerHost int `help:"Most series (sensors) per host; readings that would start more go to dead letters." default:"1024" config:"server.max_series_per_host"`
	MaxSeries        int `help:"Most series in all; readings that would start more go to dead letters." default:"131072" config:"server.max_series"`
}

// retention parses --retention; 0 means keep everything.
func (f IngestFlags) retention() (time.Duration, error) {
	if f.Retention == "" {
		return 0, nil
	}
	keep, err := config.ParseDuration(f.Retention)
	if err != nil || keep <= 0 {
		return 0, cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--retention %q: want a duration like 90d", f.Retention), "")
	}
	return keep, nil
}

// HTTPFlags place the HTTP API.
type HTTPFlags struct {
	HTTPAddr   string `name:"http-addr" help:"HTTP API listen address." default:"127.0.0.1:8080" placeholder:"HOST:PORT" config:"server.http_addr"`
	MapOverlay string `name:"map-overlay" help:"GeoJSON file whose lines and polygons the dashboard's and the API's maps draw over the hosts." placeholder:"FILE" type:"path" config:"server.map_overlay"`
	APIKeyFile string `name:"api-key-file" help:"File holding the API key every request must carry in X-API-Key (/healthz excepted); required to listen beyond loopback." placeholder:"FILE" type:"path" config:"server.api_key_file"`
}

// apiKey reads the key file; it refuses a non-loopback address without one.
func (f HTTPFlags) apiKey() ([]byte, error) {
	if f.APIKeyFile == "" {
		host, _, err := net.SplitHostPort(f.HTTPAddr)
		if ip := net.ParseIP(host); err != nil || host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--http-addr %s is beyond loopback: an API key is required", f.HTTPAddr), "pass --api-key-file")
		}
		return nil, nil
	}
	b, err := os.ReadFile(f.APIKeyFile)
	if err != nil {
		return nil, cli.WithCode(cli.ExitBadConfig, fmt.Errorf("read API key: %w", err), "")
	}
	key := bytes.TrimSpace(b)
	if len(key) < 16 {
		return nil, cli.WithCode(cli.ExitBadConfig, errors.New("API key shorter than 16 characters"), "use e.g. openssl rand -hex 32")
	}
	return key, nil
}

// loadRules reads and checks the [[rules]] of the config file.
func loadRules(file *config.File) ([]rules.Config, error) {
	tables, err := file.Rules()
	if err != nil {
		return nil, err
	}
	cfgs, err := rules.Parse(tables)
	if err != nil {
		return nil, cli.WithCode(cli.ExitBadConfig, fmt.Errorf("%s: %w", file.Path, err), "apd rules check "+file.Path+" checks a rules file")
	}
	return cfgs, nil
}

// WriteFlags configure the API's write endpoints: InfluxDB line protocol
// (/write, /api/v2/write) and Prometheus remote_write (/api/v1/write).
type WriteFlags struct {
	WriteHostTag     string `name:"write-host-tag" help:"Tag (line protocol) or label (remote_write) whose value is a point's host; remote_write falls back to instance without its port." default:"host" config:"server.write_host_tag"`
	WriteDefaultHost string `name:"write-default-host" help:"Host of written points that name none; empty sends them to dead letters (and answers 400 to line protocol)." placeholder:"NAME" config:"server.write_default_host"`
	WriteMaxBytes    int64  `name:"write-max-bytes" help:"Largest write body in bytes, compressed and decompressed (413 beyond)." default:"33554432" config:"server.write_max_bytes"`
}

// check refuses a default host that is not a valid name.
func (f WriteFlags) check() error {
	if f.WriteDefaultHost != "" {
		if err := schema.ValidateName(f.WriteDefaultHost); err != nil {
			return cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--write-default-host: %w", err), "")
		}
	}
	if f.WriteMaxBytes < 1 {
		return cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--write-max-bytes %d: want at least 1", f.WriteMaxBytes), "")
	}
	return nil
}

// serverFlags are the settings serve and aggregate share.
type serverFlags struct {
	DataFlags
	HTTPFlags
	IngestFlags
	WriteFlags
	Store string `help:"Where readings are stored: a PostgreSQL URL (postgres://user@host/db), or a database file; default <data>/apd.db." placeholder:"URL|FILE" config:"server.store"`
	// Off by default, as apd-publish's --ha-discovery is: announcing is
	// publishing retained messages to a broker Home Assistant may not use.
	RulesHADiscovery bool `name:"rules-ha-discovery" help:"Announce the rules' outcomes to Home Assistant by MQTT discovery: the first outcome of a rule for a host publishes a retained binary_sensor config on that host's device, under --discovery-prefix." config:"server.rules_ha_discovery"`
}

// storeLocation is where the aggregator keeps its readings.
func (f serverFlags) storeLocation() string {
	if f.Store != "" {
		return f.Store
	}
	return filepath.Join(f.Data, "apd.db")
}

// newServer checks the shared settings, opens the store and builds the
// aggregator on them; name, when set, names it among several sharing one
// database (ingest.Options.Name); haPrefix is Home Assistant's discovery
// prefix, for --rules-ha-discovery.
func (f serverFlags) newServer(topics schema.Topics, name, haPrefix string, file *config.File, log *slog.Logger) (*server.Server, error) {
	keep, err := f.retention()
	if err != nil {
		return nil, err
	}
	key, err := f.apiKey()
	if err != nil {
		return nil, err
	}
	ruleCfgs, err := loadRules(file)
	if err != nil {
		return nil, err
	}
	if err := f.WriteFlags.check(); err != nil {
		return nil, err
	}
	st, err := openStoreWith(f.storeLocation(), engine.Options{CheckpointEvery: f.CheckpointEvery,
		Limits: store.Limits{MaxDeadLetters: f.DeadLettersMax, MaxDeadBytes: f.DeadLettersMaxBytes}})
	if errors.Is(err, store.ErrLocked) {
		return nil, cli.WithCode(cli.ExitFailure, err, "another apd serve or aggregate uses "+f.Data+"; stop it or pass --data")
	}
	if err != nil {
		return nil, err
	}
	var overlay []geo.Shape
	if f.MapOverlay != "" {
		if overlay, err = readOverlay(f.MapOverlay); err != nil {
			st.Close()
			return nil, cli.WithCode(cli.ExitBadConfig, fmt.Errorf("--map-overlay: %w", err), "")
		}
	}
	var ha *rules.HADiscovery
	if f.RulesHADiscovery {
		ha = &rules.HADiscovery{Prefix: haPrefix, Version: cli.Version}
	}
	srv, err := server.New(server.Config{Store: st, HTTPAddr: f.HTTPAddr, APIKey: key, Rules: ruleCfgs, HADiscovery: ha, Retention: keep, Logger: log, MapOverlay: overlay,
		Ingest: ingest.Options{Topics: topics, MaxBatch: f.MaxBatch, MaxDelay: f.BatchDelay, MaxPayload: f.MaxPayload,
			MaxAge: f.MaxAge, MaxAhead: f.MaxAhead, MaxSeriesPerHost: f.MaxSeriesPerHost, MaxSeries: f.MaxSeries, Name: name},
		InfluxLine:  influxline.Options{HostTag: f.WriteHostTag, DefaultHost: f.WriteDefaultHost, MaxBytes: f.WriteMaxBytes},
		RemoteWrite: remotewrite.Options{HostLabel: f.WriteHostTag, DefaultHost: f.WriteDefaultHost, MaxBytes: f.WriteMaxBytes}})
	if err != nil {
		return nil, cli.WithCode(cli.ExitFailure, err, "pass another --http-addr")
	}
	return srv, nil
}
