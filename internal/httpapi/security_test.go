package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/store"
	"github.com/apd-telemetry/apd/internal/store/engine"
	"github.com/apd-telemetry/apd/schema"
)

// TestLoopbackHostOnlyWithoutKey: without an API key the API answers only
// requests naming a loopback host (a page in a browser cannot read it
// through a rebound DNS name); probes answer any name; with a key the
// key decides.
func TestLoopbackHostOnlyWithoutKey(t *testing.T) {
	get := func(h http.Handler, host, path, key string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.Host = host
		if key != "" {
			req.Header.Set(APIKeyHeader, key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	st, _ := newStore(t)
	open := (&Server{Store: st}).Handler()
	for _, tc := range []struct {
		host, path string
		want       int
	}{
		{"127.0.0.1:8080", "/api/v1/hosts", 200},
		{"localhost:8080", "/api/v1/hosts", 200},
		{"[::1]:8080", "/api/v1/hosts", 200},
		{"apd.localhost", "/api/v1/hosts", 200},
		{"attacker.example:8080", "/api/v1/backup", http.StatusMisdirectedRequest},
		{"127.0.0.1.attacker.example", "/api/v1/hosts", http.StatusMisdirectedRequest},
		{"attacker.example", "/healthz", 200},
		{"attacker.example", "/readyz", 200},
	} {
		if got := get(open, tc.host, tc.path, ""); got != tc.want {
			t.Errorf("no key, Host %s, %s: %d, want %d", tc.host, tc.path, got, tc.want)
		}
	}
	keyed := (&Server{Store: st, APIKey: []byte("0123456789abcdef")}).Handler()
	if got := get(keyed, "apd.example.org", "/api/v1/hosts", "0123456789abcdef"); got != 200 {
		t.Errorf("with the key from any host: %d", got)
	}
	if got := get(keyed, "localhost", "/api/v1/hosts", ""); got != http.StatusUnauthorized {
		t.Errorf("without the key on loopback: %d", got)
	}
}

func newStore(t *testing.T) (store.Store, string) {
	t.Helper()
	path := t.TempDir() + "/apd.db"
	st, err := engine.Open(path, engine.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

// shortBackup declares a backup of size bytes and sends fewer.
type shortBackup struct {
	store.Store
	size int64
	data []byte
}

func (s shortBackup) WriteBackup(w io.Writer, begin func(int64)) (int64, error) {
	begin(s.size)
	n, err := w.Write(s.data)
	return int64(n), err
}

// TestBackupTransferChecked: the client refuses a backup shorter than the
// server declared, and accepts a whole one whose checksum matches.
func TestBackupTransferChecked(t *testing.T) {
	data := bytes.Repeat([]byte("page"), 1024)
	for _, tc := range []struct {
		name string
		size int64
		ok   bool
	}{{"whole", int64(len(data)), true}, {"cut short", int64(len(data)) + 4096, false}} {
		srv := httptest.NewServer((&Server{Store: shortBackup{size: tc.size, data: data}}).Handler())
		var got bytes.Buffer
		_, err := NewClient(srv.URL).Backup(&got)
		srv.Close()
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if !tc.ok && err != nil && !strings.Contains(err.Error(), "received") {
			t.Errorf("%s: error does not say what was received: %v", tc.name, err)
		}
	}
}

// TestReadiness: /readyz answers 503 with the reason until the process
// says it is ready, then 200; /healthz answers all along.
func TestReadiness(t *testing.T) {
	st, _ := newStore(t)
	why := "starting: broker not listening"
	h := (&Server{Store: st, Ready: func() error {
		if why != "" {
			return errors.New(why)
		}
		return nil
	}}).Handler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "broker not listening") {
		t.Errorf("not ready: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz while starting: %d", code)
	}
	why = ""
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("ready: %d", code)
	}
}

// TestStalledReaderDoesNotBlockCommits: a client that stops reading a
// large query response holds up no commit, also commits that have to grow
// the file (bbolt remaps it, which waits for every open read
// transaction): responses are read from the store a page at a time.
func TestStalledReaderDoesNotBlockCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("writes tens of megabytes")
	}
	st, _ := newStore(t)
	commit := func(sensor string, n, offset int) {
		t.Helper()
		var b store.Batch
		for i := range n {
			b.Readings = append(b.Readings, schema.Reading{Host: "h", Sensor: sensor, Time: t0.Add(time.Duration(offset+i) * time.Second),
				Value: json.RawMessage(fmt.Sprintf(`"%016x%016x"`, uint64(offset+i)*0x9E3779B97F4A7C15, uint64(i)*0xC2B2AE3D27D4EB4F))})
		}
		if _, err := st.Commit(&b); err != nil {
			t.Error(err)
		}
	}
	commit("big", 200000, 0)
	srv := httptest.NewServer((&Server{Store: st}).Handler())
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/query?sensor=big&format=ndjson HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if _, err := io.ReadFull(conn, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	// The client stops reading. Commits that grow the file go on.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 8 {
			commit(fmt.Sprintf("grow%d", i), 50000, 0)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		// Blocked commits never finish while the reader stalls; the
		// deadline only ends a failing run. (Twenty seconds was less than
		// the commits take under the race detector on a busy machine.)
		t.Fatal("commits blocked while a client stopped reading a response")
	}
}
