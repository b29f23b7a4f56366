package main_test

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apd-telemetry/apd/internal/testutil"
)

// screenshotDir is where the browser and chart tests leave their images:
// $APD_SCREENSHOTS (make screenshots points it at docs/images), or the
// test's own directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("APD_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// demoHost is a deployment of the demo data.
type demoHost struct {
	host, name, colour, location string
	base                         float64
}

var demoHosts = []demoHost{
	{"pi-kitchen", "Kitchen", "#cc3300", "52.3731,4.8922", 21},
	{"pi-attic", "Attic", "#8e5bb5", "52.3600,4.8700", 17},
	{"pi-garden", "Garden", "#3d9b47", "52.3826,4.9100", 9},
	{"pi-cellar", "", "", "", 13}, // no name, colour or place: defaults, and off the map
}

// demoReadings writes a day (or more) of readings every 5 minutes up to
// now for each demo host: temperature with a daily swing, humidity, and
// the CPU load of a small machine.
func demoReadings(t *testing.T, span time.Duration, now time.Time) string {
	var b strings.Builder
	start := now.Add(-span).Truncate(5 * time.Minute)
	for hi, h := range demoHosts {
		for ts := start; ts.Before(now); ts = ts.Add(5 * time.Minute) {
			hour := float64(ts.Hour()) + float64(ts.Minute())/60
			phase := float64(ts.Unix()%7919) / 7919
			temp := h.base + 3*math.Sin((hour-9)/24*2*math.Pi) + 0.3*math.Sin(phase*40)
			hum := 55 + 8*math.Cos(hour/24*2*math.Pi) + float64(hi)*3
			load := 0.2 + 0.15*math.Abs(math.Sin(phase*90+float64(hi))) + 0.1*float64(hi)
			stamp := ts.UTC().Format("2006-01-02T15:04:05.000Z")
			fmt.Fprintf(&b, `{"v":1,"host":%q,"sensor":"temperature","ts":%q,"value":{"magnitude":%.2f,"unit":"degC"}}`+"\n", h.host, stamp, temp)
			fmt.Fprintf(&b, `{"v":1,"host":%q,"sensor":"humidity","ts":%q,"value":{"magnitude":%.1f,"unit":"percent"}}`+"\n", h.host, stamp, hum)
			fmt.Fprintf(&b, `{"v":1,"host":%q,"sensor":"cpu_load","ts":%q,"value":%.3f}`+"\n", h.host, stamp, load)
		}
	}
	return writeFile(t, "demo.ndjson", b.String())
}

// demoDatabase imports the demo readings into db and names the hosts.
func demoDatabase(t *testing.T, db string, span time.Duration) {
	t.Helper()
	if r := run(t, nil, "apd", "import", "--db", db, demoReadings(t, span, time.Now())); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	for _, h := range demoHosts {
		if h.name == "" {
			continue
		}
		if r := run(t, nil, "apd", "hosts", "set", h.host, "--db", db, "--name", h.name, "--colour", h.colour, "--location", h.location); r.code != 0 {
			t.Fatalf("hosts set: %s", r.stderr)
		}
	}
}

// TestDashboard loads the dashboard of a real apd serve in headless
// Chromium: a rendered chart per sensor with a line per host in the
// host's colour, a reading published with mosquitto_pub appearing
// without a reload, the map, and no request to anywhere but the server.
func TestDashboard(t *testing.T) {
	t.Parallel()
	pub, _ := mosquitto(t)
	browser := testutil.StartBrowser(t, 1400, 1300)
	data := t.TempDir()
	demoDatabase(t, filepath.Join(data, "apd.db"), 24*time.Hour)
	s := startServeIn(t, data)
	base := "http://" + s.http
	shots := screenshotDir(t)

	browser.Open(base + "/")
	browser.WaitTrue("every chart rendered", 15*time.Second,
		`return window.apd && window.apd.rendered != null && window.apd.plots.size === 3`)
	var rendered float64
	_ = browser.Eval(&rendered, `return window.apd.rendered`)
	t.Logf("first complete render %.0f ms after navigation", rendered)

	type plotInfo struct {
		Sensor string
		Labels []string
		Points []int
		Canvas bool
	}
	var plots []plotInfo
	if err := browser.Eval(&plots, `return [...window.apd.plots].map(([sensor, u]) => ({
		sensor, labels: u.series.slice(1).map(s => s.label),
		points: u.data.slice(1).map(col => col.filter(v => v != null).length),
		canvas: !!u.root.querySelector('canvas') && u.root.closest('.chart-panel') != null }))`); err != nil {
		t.Fatal(err)
	}
	want := "Attic,Garden,Kitchen,pi-cellar"
	for _, p := range plots {
		got := append([]string(nil), p.Labels...)
		slicesSort(got)
		if strings.Join(got, ",") != want || !p.Canvas {
			t.Errorf("chart %s: lines %v (canvas %v), want one per host: %s", p.Sensor, p.Labels, p.Canvas, want)
		}
		for i, n := range p.Points {
			if n < 50 {
				t.Errorf("chart %s: %s has %d points over a day of 5-minute readings", p.Sensor, p.Labels[i], n)
			}
		}
	}
	// The kitchen's line is drawn in its colour: count canvas pixels near
	// #cc3300 on the temperature chart.
	var kitchenPixels int
	if err := browser.Eval(&kitchenPixels, `const u = window.apd.plots.get('temperature');
		const d = u.ctx.getImageData(0, 0, u.ctx.canvas.width, u.ctx.canvas.height).data; let n = 0;
		for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i]-204) < 30 && Math.abs(d[i+1]-51) < 30 && d[i+2] < 40 && d[i+3] > 200) n++;
		return n`); err != nil {
		t.Fatal(err)
	}
	if kitchenPixels < 100 {
		t.Errorf("the kitchen's colour #cc3300 covers %d pixels of the temperature chart", kitchenPixels)
	}
	browser.WaitTrue("the map drawn", 10*time.Second, `const i = document.querySelector('#map-img'); return !!i && i.complete && i.naturalWidth > 0`)
	browser.FitWindow()
	browser.Screenshot(filepath.Join(shots, "dashboard.png"))

	// A reading published now, by a plain MQTT client, appears without a
	// reload.
	_ = browser.Eval(nil, `window.__sameDocument = true`)
	host, port, _ := net.SplitHostPort(s.mqtt)
	payload := fmt.Sprintf(`{"v":1,"ts":%q,"value":{"magnitude":29.75,"unit":"degC"}}`, time.Now().UTC().Format(time.RFC3339Nano))
	if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", "apd/pi-kitchen/temperature", "-m", payload).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	browser.WaitTrue("the published reading on the chart", 15*time.Second, `const u = window.apd.plots.get('temperature');
		const col = u.series.findIndex(s => s.label === 'Kitchen');
		return window.__sameDocument === true && col > 0 && u.data[col].includes(29.75)
			&& document.querySelector('#hosts td.last[data-host="pi-kitchen"]').textContent.startsWith('29.8')`)
	var loads int
	_ = browser.Eval(&loads, `return window.apd.loads`)
	if loads != 1 {
		t.Errorf("the series were fetched %d times; the live reading should have come without a fetch", loads)
	}

	// What is shown downloads as CSV (a row per point) and as the
	// server's PNG of the same range.
	var csv string
	_ = browser.Eval(&csv, `return window.apd.csv()`)
	if lines := strings.Split(strings.TrimSpace(csv), "\n"); lines[0] != "sensor,host,name,time,value,unit" || len(lines) < 3*4*200 || !strings.Contains(csv, "temperature,pi-kitchen,Kitchen,") {
		t.Errorf("CSV of what is shown: %d lines, starting %.200q", len(lines), csv)
	}
	var pngURL string
	_ = browser.Eval(&pngURL, `return document.querySelector('#png').href`)
	if resp, err := http.Get(pngURL); err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("the PNG download %s: %v %v", pngURL, err, resp)
	} else {
		resp.Body.Close()
	}

	// Dragging across a chart zooms every chart to that span, fetched
	// again at the finer resolution.
	_ = browser.Eval(nil, `const u = window.apd.plots.get('humidity');
		u.setSelect({left: u.bbox.width / devicePixelRatio * 0.25, width: u.bbox.width / devicePixelRatio * 0.25, top: 0, height: 10})`)
	browser.WaitTrue("zoomed in", 10*time.Second, `const s = window.apd.state; return !s.live && s.to - s.from > 3 * 3600 && s.to - s.from < 9 * 3600 && window.apd.loads === 2`)
	var zoomed struct{ Min, Max float64 }
	_ = browser.Eval(&zoomed, `const u = window.apd.plots.get('temperature'); return {min: u.scales.x.min, max: u.scales.x.max}`)
	if span := zoomed.Max - zoomed.Min; span > 9*3600 || span < 3*3600 {
		t.Errorf("the temperature chart shows %.0f s after zooming the humidity chart to about 6 h", span)
	}
	_ = browser.Eval(nil, `document.querySelector('#ranges button[data-range="86400"]').click()`)
	browser.WaitTrue("back to the last day, live", 10*time.Second, `return window.apd.state.live && window.apd.loads === 3`)
	var lastCell string
	_ = browser.Eval(&lastCell, `return document.querySelector('#hosts td.last[data-host="pi-kitchen"]').textContent`)
	if !strings.HasPrefix(lastCell, "29.8 °C") {
		t.Errorf("the kitchen's last reading after a fetch: %q, want the published 29.8 °C", lastCell)
	}

	_ = browser.Eval(nil, `document.querySelector('#theme').click()`)
	browser.WaitTrue("dark charts", 10*time.Second, `return document.documentElement.classList.contains('dark') && window.apd.plots.size === 3`)
	browser.WaitTrue("the dark map", 10*time.Second, `const i = document.querySelector('#map-img'); return i.src.includes('theme=dark') && i.complete && i.naturalWidth > 0`)
	browser.NextFrame()
	browser.Screenshot(filepath.Join(shots, "dashboard-dark.png"))

	requests := browser.Requests(base + "/")
	if len(requests) < 5 {
		t.Fatalf("the network log holds %d requests: %v", len(requests), requests)
	}
	for _, u := range requests {
		// data: URLs name no host (Chromium draws the date pickers' icons
		// with them); anything else must be the server.
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "blob:"+base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the page requested %s, not from the server", u)
		}
	}
	t.Logf("%d requests, all to %s; screenshots in %s", len(requests), base, shots)
}

func slicesSort(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestDashboardAPIKey: with an API key configured the dashboard asks for
// it once, keeps the session in a cookie the page cannot read, and a
// reload needs no key; the cookie alone reads but never changes data.
func TestDashboardAPIKey(t *testing.T) {
	t.Parallel()
	browser := testutil.StartBrowser(t, 1200, 900)
	keyFile := filepath.Join(t.TempDir(), "api.key")
	const key = "0123456789abcdef0123456789abcdef"
	_ = os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
	data := t.TempDir()
	demoDatabase(t, filepath.Join(data, "apd.db"), 6*time.Hour)
	s := startServeIn(t, data, "--api-key-file", keyFile)
	base := "http://" + s.http

	browser.Open(base + "/")
	browser.WaitTrue("the key asked for", 10*time.Second, `return document.querySelector('#login').open === true`)
	_ = browser.Eval(nil, `document.querySelector('#key').value = 'wrong'; document.querySelector('#login-form').requestSubmit()`)
	browser.WaitTrue("a wrong key refused", 10*time.Second, `return document.querySelector('#login-error').textContent.length > 0 && document.querySelector('#login').open`)
	_ = browser.Eval(nil, `document.querySelector('#key').value = arguments[0]; document.querySelector('#login-form').requestSubmit()`, key)
	browser.WaitTrue("charts after the key", 15*time.Second, `return window.apd.plots.size === 3 && !document.querySelector('#login').open`)
	var cookie string
	_ = browser.Eval(&cookie, `return document.cookie`)
	if strings.Contains(cookie, "apd_session") {
		t.Errorf("the page can read the session cookie: %q", cookie)
	}
	browser.Open(base + "/")
	browser.WaitTrue("charts after a reload, without asking", 15*time.Second, `return window.apd && window.apd.plots.size === 3 && !document.querySelector('#login').open`)

	// The cookie reads; it does not delete.
	login, err := http.Post(base+"/api/v1/session", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	login.Body.Close()
	var session *http.Cookie
	for _, c := range login.Cookies() {
		if c.Name == "apd_session" {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || strings.Contains(session.Value, key) {
		t.Fatalf("session cookie %+v", session)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{{"GET", "/api/v1/hosts", 200}, {"DELETE", "/api/v1/readings?host=pi-kitchen", 401}, {"PUT", "/api/v1/hosts/pi-kitchen", 401}} {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(`{}`))
		req.AddCookie(session)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s with the cookie: %s, want %d", tc.method, tc.path, resp.Status, tc.want)
		}
	}
}
