package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/apd-telemetry/apd"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var ours []string
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, module+"/") && d != module+"/"+pkg {
			ours = append(ours, strings.TrimPrefix(d, module+"/"))
		}
	}
	return ours
}

// serverSide are the packages only the apd binary may link.
var serverSide = []string{"broker", "subscriber", "internal/store", "internal/query", "internal/httpapi",
	"internal/rules", "internal/metrics", "internal/server", "internal/cli/apdcmd"}

// packages lists the packages matching a go list pattern.
func packages(t *testing.T, pattern string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", module+"/"+pattern).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(out)) {
		pkgs = append(pkgs, strings.TrimPrefix(p, module+"/"))
	}
	return pkgs
}

func TestImportGraph(t *testing.T) {
	tests := []struct {
		pkg       string
		forbidden []string // prefixes
	}{
		{"schema", []string{""}},
		{"broker", []string{"publisher", "subscriber", "internal/"}},
		{"subscriber", []string{"publisher", "broker", "internal/cli"}},
		// The storage contract and its suite know no engine.
		{"internal/store", []string{"publisher", "broker", "subscriber", "internal/cli", "internal/store/"}},
		{"internal/store/storetest", []string{"publisher", "broker", "subscriber", "internal/cli", "internal/store/boltdb"}},
		{"internal/store/chunk", []string{"publisher", "broker", "subscriber", "internal/"}},
		// The command framework and the device wiring serve both binaries.
		{"internal/cli", serverSide},
		{"internal/agent", serverSide},
		// The device binary stays small: nothing of the server side.
		{"cmd/apd-publish", serverSide},
	}
	// Nor any package of the device side, examples included.
	for _, pattern := range []string{"publisher/...", "examples/..."} {
		for _, p := range packages(t, pattern) {
			tests = append(tests, struct {
				pkg       string
				forbidden []string
			}{p, append([]string{"internal/cli/apdcmd"}, serverSide...)})
		}
	}
	for _, tc := range tests {
		for _, d := range deps(t, tc.pkg) {
			for _, f := range tc.forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s imports %s", tc.pkg, d)
				}
			}
		}
	}
}

// TestContractLinksNoEngine: the storage contract does not pull in the
// embedded engine's database library.
func TestContractLinksNoEngine(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", module+"/internal/store", module+"/internal/store/storetest").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "go.etcd.io/bbolt") {
		t.Error("the storage contract links bbolt")
	}
}
