package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestServeOnPostgres: apd serve --store postgres://… stores what
// apd-publish sends, and query, hosts and export answer from it, through
// the server and straight from the database.
func TestServeOnPostgres(t *testing.T) {
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase(t)
	s := startServe(t, "--store", url)
	if !strings.Contains(s.log.String(), "postgres://apd@") {
		t.Errorf("the log does not name the database: %s", s.log)
	}
	spool := filepath.Join(t.TempDir(), "spool.db")
	for range 2 {
		if r := run(t, nil, "apd-publish", "--broker", "tcp://"+s.mqtt, "--host", "pi-pg", "--once", "--sensors", "uptime,version", "--spool", spool); r.code != 0 {
			t.Fatalf("publish: %s", r.stderr)
		}
	}
	srv := "http://" + s.http
	testutil.WaitFor(t, "readings stored", 10*time.Second, func() bool {
		r := run(t, nil, "apd", "query", "--server", srv, "--sensor", "uptime", "--format", "ndjson")
		return len(ndjsonLines(t, r.stdout)) == 2
	})
	hosts := run(t, nil, "apd", "hosts", "--server", srv)
	if !strings.Contains(hosts.stdout, "pi-pg") {
		t.Errorf("hosts: %s", hosts.stdout)
	}
	s.stop(t)
	direct := run(t, nil, "apd", "export", "--db", url)
	if n := len(ndjsonLines(t, direct.stdout)); direct.code != 0 || n != 4 {
		t.Errorf("export straight from PostgreSQL: exit %d, %d lines, %s", direct.code, n, direct.stderr)
	}
	// Today's rows packed now (as the aggregator does for finished days)
	// read the same.
	if r := run(t, nil, "apd", "compact", "--db", url, "--after=-48h"); r.code != 0 || !strings.Contains(r.stdout, "packed 1 day, 4 readings") {
		t.Errorf("compact: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if again := run(t, nil, "apd", "export", "--db", url); again.stdout != direct.stdout {
		t.Errorf("export after packing differs:\n%s\n%s", again.stdout, direct.stdout)
	}
	bad := run(t, nil, "apd", "hosts", "--db", "postgres://apd@127.0.0.1:1/nope?sslmode=disable&connect_timeout=2")
	if bad.code != 19 || strings.Count(strings.TrimSpace(bad.stderr), "\n") > 1 {
		t.Errorf("an unreachable database: exit %d, %q", bad.code, bad.stderr)
	}
}

// TestMigrateRoundTrip: a file of 1,000,000 readings (and names, colours,
// locations, statuses and dead letters) copied into PostgreSQL and back
// exports byte for byte as the original does. The readings are of days
// long over, so they are stored in PostgreSQL's packed layout.
func TestMigrateRoundTrip(t *testing.T) {
	pg := testutil.StartPostgres(t)
	url := pg.NewDatabase(t)
	readings := 1_000_000
	if testing.Short() {
		readings = 20_000
	}
	var b strings.Builder
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	const hosts = 100
	for h := 0; h < hosts; h++ {
		for i := 0; i < readings/hosts; i++ {
			fmt.Fprintf(&b, `{"v":1,"host":"pi-%03d","sensor":"temperature","ts":%q,"seq":%d,"value":{"magnitude":%.1f,"unit":"degC"}}`+"\n",
				h, t0.Add(time.Duration(i)*10*time.Second).Format("2006-01-02T15:04:05.000Z"), i+1, 15+float64((i*7+h)%100)/10)
		}
	}
	fmt.Fprintf(&b, `{"v":1,"host":"pi-000","sensor":"note","ts":"2026-11-02T00:00:00.000Z","value":{"text":"odd","n":[1, 2]},"human":"as sent"}`+"\n")
	file := writeFile(t, "in.ndjson", b.String())
	orig := filepath.Join(t.TempDir(), "orig.db")
	if r := run(t, nil, "apd", "import", "--db", orig, file); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	if r := run(t, nil, "apd", "hosts", "set", "pi-007", "--db", orig, "--name", "Lab 7", "--colour", "#123456", "--location", "48.2,16.37"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	want := run(t, nil, "apd", "export", "--db", orig)
	start := time.Now()
	to := run(t, nil, "apd", "migrate", "--from", orig, "--to", url)
	if to.code != 0 || !strings.Contains(to.stderr, fmt.Sprintf("copied %d readings, %d hosts", readings+1, hosts)) {
		t.Fatalf("migrate to PostgreSQL: exit %d: %s", to.code, to.stderr)
	}
	t.Logf("file → PostgreSQL: %s (%s)", time.Since(start).Round(time.Millisecond), strings.TrimSpace(lastLine(to.stderr)))
	if mid := run(t, nil, "apd", "export", "--db", url); mid.stdout != want.stdout {
		t.Fatalf("the export from PostgreSQL differs from the original's (%d vs %d bytes)", len(mid.stdout), len(want.stdout))
	}
	// Days long over went straight into blocks: nothing left to pack.
	if r := run(t, nil, "apd", "compact", "--db", url, "--after", "0s"); r.code != 0 || !strings.Contains(r.stdout, "packed 0 days, 0 readings") {
		t.Fatalf("compact on PostgreSQL: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	back := filepath.Join(t.TempDir(), "back.db")
	start = time.Now()
	if r := run(t, nil, "apd", "migrate", "--from", url, "--to", back); r.code != 0 {
		t.Fatalf("migrate back: %s", r.stderr)
	}
	t.Logf("PostgreSQL → file: %s", time.Since(start).Round(time.Millisecond))
	if got := run(t, nil, "apd", "export", "--db", back); got.stdout != want.stdout {
		t.Fatalf("the export after the round trip differs (%d vs %d bytes)", len(got.stdout), len(want.stdout))
	}
	hostsOrig := run(t, nil, "apd", "hosts", "--db", orig, "--json")
	hostsBack := run(t, nil, "apd", "hosts", "--db", back, "--json")
	if hostsOrig.stdout != hostsBack.stdout {
		t.Errorf("hosts differ after the round trip:\n%.500s\n%.500s", hostsOrig.stdout, hostsBack.stdout)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestPostgresAnswersLikeTheFile: the same readings, published with
// mosquitto_pub and apd-publish to one apd serve on the embedded file and
// one on PostgreSQL, give the same answers to apd query (readings,
// aggregates, cleaners), apd hosts, the rules' outcomes, apd export, dead
// letters and the HTTP API.
func TestPostgresAnswersLikeTheFile(t *testing.T) {
	pub, _ := mosquitto(t)
	pg := testutil.StartPostgres(t)
	cfg := writeConfig(t, `
[[rules]]
name = "warm"
sensor = "temperature"
when = "value > 20"
on_change = true
actions = ["publish"]
`)
	file := startServe(t, "--config", cfg)
	onPG := startServe(t, "--config", cfg, "--store", pg.NewDatabase(t))
	servers := []*server{file, onPG}
	var payloads [][2]string // topic, payload
	for _, host := range []string{"pi-kitchen", "shed"} {
		_, ps := acceptanceReadings(host)
		for _, p := range ps {
			payloads = append(payloads, [2]string{"apd/" + host + "/temperature", p})
		}
	}
	payloads = append(payloads, [2]string{"apd/shed/humidity", "55.5"}, [2]string{"apd/shed/temperature", "{not json"})
	for _, s := range servers {
		host, port, _ := net.SplitHostPort(s.mqtt)
		for _, p := range payloads {
			if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", p[0], "-m", p[1]).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v: %s", err, out)
			}
		}
		if r := run(t, nil, "apd-publish", "--broker", "tcp://"+s.mqtt, "--host", "pi-dev", "--once", "--sensors", "version", "--spool", filepath.Join(t.TempDir(), "spool.db")); r.code != 0 {
			t.Fatalf("apd-publish: %s", r.stderr)
		}
	}
	for _, s := range servers {
		srv := "http://" + s.http
		testutil.WaitFor(t, "everything stored", 15*time.Second, func() bool {
			w := run(t, nil, "apd", "query", "--server", srv, "--sensor", "warm", "--since", "3d", "--format", "ndjson")
			v := run(t, nil, "apd", "query", "--server", srv, "--sensor", "version", "--since", "1h", "--format", "ndjson")
			if len(ndjsonLines(t, w.stdout)) == 4 && len(ndjsonLines(t, v.stdout)) == 1 {
				return true
			}
			t.Logf("%s: warm %q, version %q", s.http, w.stdout, v.stdout)
			return false
		})
	}
	same := func(what string, args ...string) {
		t.Helper()
		var outs []string
		for _, s := range servers {
			r := run(t, nil, "apd", append(args, "--server", "http://"+s.http)...)
			if r.code != 0 {
				t.Fatalf("%s: exit %d: %s", what, r.code, r.stderr)
			}
			out := r.stdout
			// All but the mean time of the rules' actions and the time a
			// dead letter was received, which are each server's own.
			if what == "rules status" || what == "dead letters" {
				var lines []string
				for _, l := range strings.Split(out, "\n") {
					if f := strings.Fields(l); len(f) > 1 {
						if what == "rules status" {
							f = f[:len(f)-1]
						} else {
							f = f[1:]
						}
						lines = append(lines, strings.Join(f, " "))
					}
				}
				out = strings.Join(lines, "\n")
			}
			outs = append(outs, out)
		}
		if outs[0] != outs[1] || outs[0] == "" {
			t.Errorf("%s differs:\nfile:\n%s\nPostgreSQL:\n%s", what, outs[0], outs[1])
		}
	}
	same("query", "query", "--sensor", "temperature", "--since", "3d")
	same("query ndjson", "query", "--sensor", "temperature", "--since", "3d", "--format", "ndjson")
	same("aggregate", "query", "--sensor", "temperature", "--since", "3d", "--agg", "avg", "--every", "2h", "--unit", "degF")
	same("max", "query", "--sensor", "temperature", "--since", "3d", "--agg", "max")
	same("where", "query", "--sensor", "temperature", "--since", "3d", "--where", "value > 20", "--format", "csv")
	same("cleaner", "query", "--sensor", "temperature", "--since", "3d", "--clean", "temperature")
	same("rule outcomes", "query", "--sensor", "warm", "--since", "3d", "--format", "ndjson")
	same("bare value", "query", "--sensor", "humidity", "--since", "1h", "--agg", "count", "--every", "1d") // stamped when received
	same("export", "export", "--sensor", "temperature")
	same("rules status", "rules", "status")
	// hosts: the same but for when each server received things.
	var hostsOut []string
	for _, s := range servers {
		r := run(t, nil, "apd", "hosts", "--json", "--server", "http://"+s.http)
		var hs []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &hs); err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			delete(h, "state_time")
			if h["host"] == "pi-dev" || h["host"] == "shed" {
				delete(h, "last_seen") // apd-publish's and the bare value's times are each server's own
				for _, st := range h["sensors"].(map[string]any) {
					delete(st.(map[string]any), "last")
				}
			}
			delete(h, "spool")
		}
		b, _ := json.Marshal(hs)
		hostsOut = append(hostsOut, string(b))
	}
	if hostsOut[0] != hostsOut[1] {
		t.Errorf("hosts differ:\nfile:       %s\nPostgreSQL: %s", hostsOut[0], hostsOut[1])
	}
	same("dead letters", "deadletters")
	var series []string
	since, until := time.Now().Add(-72*time.Hour).UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339)
	for _, s := range servers {
		series = append(series, httpGet(t, "http://"+s.http+"/api/v1/series?sensor=temperature&points=50&since="+since+"&until="+until))
	}
	if series[0] != series[1] {
		t.Errorf("/api/v1/series differs:\n%s\n%s", series[0], series[1])
	}
}
