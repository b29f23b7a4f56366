package main_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCustomBuild builds the custom apd-publish the way docs/plugins.md
// says and checks that it has the example sensor next to the built-ins.
func TestCustomBuild(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "apd-publish")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--dry-run", "--host", "pi", "--sensors", "wifi_signal,version", "--sys-root", "../wifi_signal/testdata").Output()
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	var readings []map[string]any
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var r map[string]any
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		readings = append(readings, r)
	}
	if len(readings) != 2 || readings[0]["sensor"] != "wifi_signal" || readings[0]["human"] != "-56 dBm (good)" || readings[1]["sensor"] != "version" {
		t.Fatalf("readings: %s", out)
	}
}
