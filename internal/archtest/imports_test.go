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

func TestImportGraph(t *testing.T) {
	tests := []struct {
		pkg       string
		forbidden []string // prefixes
	}{
		{"schema", []string{""}},
		{"publisher", []string{"broker", "subscriber", "internal/store", "internal/cli"}},
		{"broker", []string{"publisher", "subscriber", "internal/"}},
		{"subscriber", []string{"publisher", "broker", "internal/cli"}},
		{"internal/store", []string{"publisher", "broker", "subscriber", "internal/cli"}},
		// The device binary stays small: nothing of the server side.
		{"cmd/apd-publish", []string{"broker", "subscriber", "internal/httpapi", "internal/cli/apdcmd"}},
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
