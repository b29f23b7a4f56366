package all

import (
	"encoding/json"
	"testing"

	"github.com/apd-telemetry/apd/schema"
)

// TestFormatsByName: the built-in sensors register the formats of their
// values, so any reading of theirs — this host's or another's — is shown
// the same way.
func TestFormatsByName(t *testing.T) {
	for _, tc := range []struct{ sensor, value, want string }{
		{"ac_connected", `true`, "Connected"},
		{"ac_connected", `false`, "Not connected"},
		{"version", `{"apd":"0.3.0","go":"go1.26.8","os":"linux","arch":"arm"}`, "apd 0.3.0 (go1.26.8, linux/arm)"},
		{"ip_addresses", `["192.168.1.246","fe80::1"]`, "192.168.1.246 (IPv4)\nfe80::1 (IPv6)"},
		{"cpu_load", `0.098`, "9.8%"},
		{"uptime", `273906`, "3d 4h 5m 6s"},
	} {
		if got := schema.Format(tc.sensor, json.RawMessage(tc.value)); got != tc.want {
			t.Errorf("Format(%s, %s) = %q, want %q", tc.sensor, tc.value, got, tc.want)
		}
	}
}
