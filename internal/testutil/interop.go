package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireInteropEnv, when set to 1, makes a missing program of another
// project (promtool, Prometheus, node_exporter, the influx CLI) a
// failure instead of a skip: CI installs them all.
const RequireInteropEnv = "APD_REQUIRE_INTEROP"

// Tool returns the path of another project's program that an
// interoperability test runs against apd. Without it the test is
// skipped, naming the Debian package that has it, unless
// RequireInteropEnv is 1.
func Tool(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " is not installed (Debian: apt-get install " + debianPackage + ")"
	if os.Getenv(RequireInteropEnv) == "1" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
	return ""
}
