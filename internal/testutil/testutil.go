// Package testutil holds helpers shared by apd's tests: building the
// binaries, starting a program and reading the addresses it reports, a
// buffer safe to read while a process writes to it, waiting for a
// condition, loopback ports.
package testutil

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreeAddr returns a loopback address with a port free at the time of the
// call. Another process may take the port before the caller binds it:
// a server that can listen on port 0 and say which port it bound should
// (broker.Options.Addr "127.0.0.1:0" and Broker.Addr, apd's commands with
// --mqtt-addr and --http-addr 127.0.0.1:0 and their "running" log line,
// see StartProcess). FreeAddr is for a port that must be known before the
// server starts: a program that cannot report the one it bound, or a
// client started first.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	// Below the kernel's ephemeral range (32768–60999 on Linux): a port
	// the kernel hands out is also what the next outgoing connection of
	// any process may take before the server binds it, and with browsers
	// and parallel test binaries on the machine, that happened.
	for range 100 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// RefusedAddr returns a loopback address that refuses connections for the
// rest of the test: its port is held by a socket that is bound but never
// listens, so no other process can take it meanwhile.
func RefusedAddr(tb testing.TB) string {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// RunWithBinaries is a TestMain body: it builds apd and apd-publish into a
// temporary directory, stores its path in *dir, runs the tests, removes the
// directory and returns the exit code.
func RunWithBinaries(m *testing.M, dir *string) int {
	d, err := buildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(d)
	*dir = d
	return m.Run()
}

func buildBinaries() (string, error) {
	dir, err := os.MkdirTemp("", "apd-bin")
	if err != nil {
		return "", err
	}
	build := exec.Command("go", "build", "-o", dir+"/",
		"github.com/apd-telemetry/apd/cmd/apd", "github.com/apd-telemetry/apd/cmd/apd-publish")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build binaries: %w", err)
	}
	return dir, nil
}

// SyncBuffer collects a process's output and may be read while it runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond every 10 ms until it holds, failing the test after
// timeout.
func WaitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	if !Eventually(timeout, cond) {
		tb.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Eventually polls cond every 10 ms until it holds, and reports whether
// it did within timeout: WaitFor for a test that says itself what was
// wrong.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// ClientCert writes a client certificate with common name cn, signed by a
// fresh CA, and returns the paths of the CA, the certificate and its key.
func ClientCert(tb testing.TB, dir, cn string) (ca, cert, key string) {
	tb.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "apd test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(k)
	return writePEM(tb, dir, "client-ca.pem", "CERTIFICATE", caDER), writePEM(tb, dir, cn+".pem", "CERTIFICATE", der),
		writePEM(tb, dir, cn+"-key.pem", "EC PRIVATE KEY", keyDER)
}

func writePEM(tb testing.TB, dir, name, typ string, der []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// TLSFiles writes a fresh CA and a server certificate for 127.0.0.1 and
// localhost, signed by it, into dir and returns the paths of the CA
// certificate, the server certificate and its key (PEM).
func TLSFiles(tb testing.TB, dir string) (ca, cert, key string) {
	tb.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "apd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	caCert, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	return writePEM(tb, dir, "ca.pem", "CERTIFICATE", caDER), writePEM(tb, dir, "cert.pem", "CERTIFICATE", srvDER),
		writePEM(tb, dir, "key.pem", "EC PRIVATE KEY", keyDER)
}

// WaitReady polls the /readyz endpoint of the apd HTTP API at addr until
// it answers 200 (every listener and the store are up), failing the test
// after timeout.
func WaitReady(tb testing.TB, addr string, timeout time.Duration) {
	tb.Helper()
	if err := Ready(addr, timeout); err != nil {
		tb.Fatal(err)
	}
}

// Ready is WaitReady returning an error instead of failing a test.
func Ready(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("apd on %s not ready within %s: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CheckNotSplit fails unless no key (a host) has counts in both a and
// b, and each of them has some: work shared by two, none of it split.
func CheckNotSplit(tb testing.TB, nameA string, a map[string]int, nameB string, b map[string]int) {
	tb.Helper()
	for host, n := range a {
		if b[host] > 0 {
			tb.Errorf("host %s split: %d to %s, %d to %s", host, n, nameA, b[host], nameB)
		}
	}
	if len(a) == 0 || len(b) == 0 {
		tb.Errorf("one got nothing: %d hosts to %s, %d to %s", len(a), nameA, len(b), nameB)
	}
}

// SilentSession opens, at addr, a persistent MQTT 3.1.1 session as user
// that subscribes to filter at QoS 1 and then never reads a byte: the
// subscriber a broker must not let grow its queues without bound.
func SilentSession(tb testing.TB, addr, id, user, password, filter string) net.Conn {
	tb.Helper()
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	connect := append(str("MQTT"), 4, 0x80|0x40, 0, 60) // user, password, persistent
	for _, f := range []string{id, user, password} {
		connect = append(connect, str(f)...)
	}
	sub := append([]byte{0, 1}, str(filter)...)
	sub = append(sub, 1)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	pkt := append([]byte{0x10, byte(len(connect))}, connect...)
	pkt = append(append(pkt, 0x82, byte(len(sub))), sub...)
	if _, err := c.Write(pkt); err != nil {
		tb.Fatal(err)
	}
	return c
}

// ScrapeMetrics returns the samples of the Prometheus text exposition at
// url (apd's /metrics) by series, labels included as written.
func ScrapeMetrics(tb testing.TB, url string) map[string]float64 {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read %s: %v", url, err)
	}
	return out
}
