package main_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// TestDashboardDemo opens the dashboard of apd demo, as a newcomer does
// first, at a desk's, a tablet's and a phone's width: every chart has
// lines or points drawn, every host with the trend's sensor a sparkline,
// a host's single reading shows as a point, the page never scrolls
// sideways. Its screenshots are the README's (make screenshots).
func TestDashboardDemo(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	base := d.http
	shots := screenshotDir(t)
	publishSingle(t, base, d.mqtt, "shed2")
	for _, width := range []int{1400, 768, 390} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			t.Parallel()
			b := testutil.StartBrowser(t, width, 900)
			b.Open(base + "/")
			b.WaitTrue("every chart rendered", 30*time.Second,
				`return window.apd && window.apd.rendered != null && window.apd.plots.size >= 4`)
			var view struct {
				Primary string
				Sensors []string
			}
			_ = b.Eval(&view, `return {primary: window.apd.state.primary, sensors: [...window.apd.plots.keys()]}`)
			// cpu_load and ram_available are on all twelve hosts.
			if view.Primary != "cpu_load" && view.Primary != "ram_available" {
				t.Errorf("the trend is of %q, want a sensor every host has (charts: %v)", view.Primary, view.Sensors)
			}
			if !strings.Contains(strings.Join(view.Sensors, ","), "temperature") {
				t.Errorf("no temperature chart: %v", view.Sensors)
			}
			checkView(t, b, width, 12)
			checkSinglePoint(t, b, "shed2")
			b.WaitTrue("the map drawn", 10*time.Second, `const i = document.querySelector('#map-img'); return !!i && i.complete && i.naturalWidth > 0`)
			b.FitWindow()
			checkView(t, b, width, 12)
			name := fmt.Sprintf("dashboard-%d.png", width)
			if width == 1400 {
				name = "dashboard.png"
			}
			b.Screenshot(filepath.Join(shots, name))
		})
	}
}
