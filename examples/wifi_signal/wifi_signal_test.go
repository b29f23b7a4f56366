package wifi_signal

import (
	"context"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/publisher"
)

func TestRead(t *testing.T) {
	tests := []struct {
		root, iface, human, err string
	}{
		{"testdata", "", "-56 dBm (good)", ""},
		{"testdata", "wlan1", "-88 dBm (poor)", ""},
		{"testdata", "wlan9", "", "no wireless interface wlan9"},
		{t.TempDir(), "", "", "no wireless statistics"},
	}
	for _, tc := range tests {
		s, _ := New(publisher.Env{Root: tc.root, Params: map[string]any{"interface": tc.iface}})
		got := publisher.Named{Name: "wifi_signal", Sensor: s}.Read(context.Background(), time.Now())
		if tc.err != "" {
			if got.Err == nil || got.Err.Error()[:len(tc.err)] != tc.err || publisher.KindOf(got.Err) != "persistent" {
				t.Errorf("%s %s: err = %v, want persistent %q", tc.root, tc.iface, got.Err, tc.err)
			}
			continue
		}
		if got.Err != nil || got.Human != tc.human {
			t.Errorf("%s %s: got %q %v, want %q", tc.root, tc.iface, got.Human, got.Err, tc.human)
		}
	}
}

func TestPresent(t *testing.T) {
	tests := []struct {
		root, iface string
		present     bool
	}{
		{"testdata", "", true},
		{"testdata", "wlan1", true},
		{"testdata", "wlan9", false},
		{t.TempDir(), "", false},
	}
	for _, tc := range tests {
		s, _ := New(publisher.Env{Root: tc.root, Params: map[string]any{"interface": tc.iface}})
		if err := publisher.Present(s); (err == nil) != tc.present {
			t.Errorf("%s %s: Present() = %v, want present %v", tc.root, tc.iface, err, tc.present)
		}
	}
}
