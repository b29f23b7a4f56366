package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequirePostgresEnv, when set to 1, makes a missing PostgreSQL a
// failure instead of a skip (CI sets it).
const RequirePostgresEnv = "APD_REQUIRE_POSTGRES"

// Postgres is a throwaway PostgreSQL cluster for one test (and its
// subtests): initdb into a temporary directory, the server on a free
// loopback port, stopped and removed when the test ends.
type Postgres struct {
	tb   testing.TB
	addr string
	dbs  atomic.Int64
}

// postgresBin finds the directory of initdb and postgres: on $PATH, or
// Debian's /usr/lib/postgresql/<version>/bin (the newest).
func postgresBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "postgres")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no initdb and postgres found")
}

// StartPostgres starts a cluster. Without PostgreSQL's server binaries
// the test is skipped with a line saying how to get them, unless
// RequirePostgresEnv is 1. Run as root, the server runs as the postgres
// user (initdb refuses root). Tests run it without fsync (a killed apd
// is what they test, not a power cut); settings ("fsync=on") override
// that and any other setting, as benchmarks need.
func StartPostgres(tb testing.TB, settings ...string) *Postgres {
	tb.Helper()
	bin, err := postgresBin()
	if err != nil {
		msg := "PostgreSQL tests need the server (Debian: apt-get install postgresql); " + err.Error()
		if os.Getenv(RequirePostgresEnv) == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "apd-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("running as root, PostgreSQL needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	command := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(bin, name), args...)
		c.Dir = dir
		c.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
		if cred != nil {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		return c
	}
	data := filepath.Join(dir, "data")
	if out, err := command("initdb", "-D", data, "-U", "apd", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		tb.Fatalf("initdb: %v: %s", err, out)
	}
	// PostgreSQL takes no port 0 (it names its socket by the port): one is
	// chosen for it.
	addr := FreeAddr(tb)
	port := addr[strings.LastIndex(addr, ":")+1:]
	logs := &SyncBuffer{}
	srv := command("postgres", "-D", data, "-p", port, "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=100",
		"-c", "shared_buffers=128MB", "-c", "max_locks_per_transaction=1024")
	for _, kv := range settings {
		srv.Args = append(srv.Args, "-c", kv)
	}
	srv.Stdout, srv.Stderr = logs, logs
	if err := srv.Start(); err != nil {
		os.RemoveAll(dir)
		tb.Fatalf("start postgres: %v", err)
	}
	pg := &Postgres{tb: tb, addr: addr}
	tb.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGINT) // fast shutdown
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, pg.dsn("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return pg
		}
		if time.Now().After(deadline) || srv.ProcessState != nil {
			tb.Fatalf("postgres not ready: %v\n%s", err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URL returns the URL of database db of the cluster.
func (p *Postgres) URL(db string) string { return p.dsn(db) }

func (p *Postgres) dsn(db string) string {
	return fmt.Sprintf("postgres://apd@%s/%s?sslmode=disable", p.addr, db)
}

// NewDatabase makes an empty database and returns its URL.
func (p *Postgres) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d", p.dbs.Add(1))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.dsn("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	return p.dsn(name)
}
