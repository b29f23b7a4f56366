package testutil

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"testing"
)

// RequirePromtoolEnv, when set to 1, makes a missing promtool a failure
// instead of a skip (CI sets it).
const RequirePromtoolEnv = "APD_REQUIRE_PROMTOOL"

// CheckMetrics runs `promtool check metrics`, Prometheus's own linter, on
// exposition and fails tb with every problem it names. Without promtool
// the test is skipped, saying how to get it, unless RequirePromtoolEnv
// is 1.
func CheckMetrics(tb testing.TB, exposition []byte) {
	tb.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		msg := "checking the metrics exposition needs promtool (Debian: apt-get install prometheus)"
		if os.Getenv(RequirePromtoolEnv) == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	// It exits 3 for lint problems, 1 for an exposition it cannot parse;
	// either way it says why.
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// GetMetrics returns the body of url (apd's /metrics), failing tb unless
// it is a 200.
func GetMetrics(tb testing.TB, url string) []byte {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return b
}
