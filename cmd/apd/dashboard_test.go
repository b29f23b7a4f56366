package main_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// fleetHost is a host of the dashboard's fixture.
type fleetHost struct {
	host, name, colour, location string
	temperature                  bool // numbers for temperature; the others only fail
	humidity                     bool
}

// fleetHosts are a dozen hosts as a newcomer's fleet has them: a few
// named, coloured and placed; temperature with numbers on two, and
// failing everywhere else (no sensor there); CPU load, RAM and uptime
// on all; a power-supply state (true or false) and the operating
// system (text: no numbers) on all.
func fleetHosts() []fleetHost {
	hosts := []fleetHost{
		{"pi-kitchen", "Kitchen", "#cc3300", "52.3731,4.8922", true, true},
		{"pi-attic", "Attic", "#8e5bb5", "52.3600,4.8700", false, true},
		{"pi-garden", "Garden", "#3d9b47", "52.3826,4.9100", true, true},
		{"pi-cellar", "", "", "", false, true},
	}
	for i := 1; i <= 8; i++ {
		hosts = append(hosts, fleetHost{host: fmt.Sprintf("node-%02d", i)})
	}
	return hosts
}

// fleetReadings writes a day of readings every 5 minutes up to now.
func fleetReadings(t *testing.T, now time.Time) string {
	var b strings.Builder
	start := now.Add(-24 * time.Hour).Truncate(5 * time.Minute)
	for hi, h := range fleetHosts() {
		for ts := start; ts.Before(now); ts = ts.Add(5 * time.Minute) {
			hour := float64(ts.Hour()) + float64(ts.Minute())/60
			phase := float64(ts.Unix()%7919) / 7919
			stamp := ts.UTC().Format("2006-01-02T15:04:05.000Z")
			line := func(sensor, rest string) {
				fmt.Fprintf(&b, `{"v":1,"host":%q,"sensor":%q,"ts":%q,%s}`+"\n", h.host, sensor, stamp, rest)
			}
			if h.temperature {
				line("temperature", fmt.Sprintf(`"title":"Temperature","value":{"magnitude":%.2f,"unit":"degC"}`, 15+3*math.Sin((hour-9)/24*2*math.Pi)+float64(hi)))
			} else {
				line("temperature", `"title":"Temperature","error":{"kind":"persistent","message":"no DHT22 on GPIO 4"}`)
			}
			if h.humidity {
				line("humidity", fmt.Sprintf(`"value":{"magnitude":%.1f,"unit":"percent"}`, 55+8*math.Cos(hour/24*2*math.Pi)+float64(hi)*3))
			}
			line("cpu_load", fmt.Sprintf(`"title":"CPU load","value":{"magnitude":%.3f,"unit":"ratio"}`, 0.1+0.15*math.Abs(math.Sin(phase*90+float64(hi)))+0.04*float64(hi)))
			line("ram_used", fmt.Sprintf(`"title":"RAM used","value":{"magnitude":%d,"unit":"B"}`, int64((1.5+float64(hi)*2+0.3*math.Sin(phase*20))*(1<<30))))
			up := ts.Sub(start).Seconds() + float64(hi)*3600*7
			line("uptime", fmt.Sprintf(`"title":"Uptime","value":{"magnitude":%.0f,"unit":"s"}`, up))
			line("ac_connected", `"title":"AC power","value":true`)
			line("os", `"title":"Operating system","value":"Debian GNU/Linux 13 (trixie)"`)
		}
	}
	return writeFile(t, "fleet.ndjson", b.String())
}

// dashboardServer is a running aggregator with data to show.
type dashboardServer struct {
	HTTP, MQTT string // host:port
}

// startFleet imports the fleet's day into a new store and serves it.
// The dashboard tests need only its addresses: a server with any
// realistic fleet will do.
func startFleet(t *testing.T) dashboardServer {
	t.Helper()
	data := t.TempDir()
	db := filepath.Join(data, "apd.db")
	if r := run(t, nil, "apd", "import", "--db", db, fleetReadings(t, time.Now())); r.code != 0 {
		t.Fatalf("import: %s", r.stderr)
	}
	for _, h := range fleetHosts() {
		if h.name == "" {
			continue
		}
		if r := run(t, nil, "apd", "hosts", "set", h.host, "--db", db, "--name", h.name, "--colour", h.colour, "--location", h.location); r.code != 0 {
			t.Fatalf("hosts set: %s", r.stderr)
		}
	}
	s := startServeIn(t, data)
	return dashboardServer{HTTP: s.http, MQTT: s.mqtt}
}

// publish sends one payload with mosquitto_pub to the server's broker.
func publish(t *testing.T, mqttAddr, topic, payload string) {
	t.Helper()
	pub, _ := mosquitto(t)
	host, port, _ := net.SplitHostPort(mqttAddr)
	if out, err := exec.Command(pub, "-h", host, "-p", port, "-q", "1", "-t", topic, "-m", payload).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
}

// chartDrawn counts, per chart, the pixels of its plotting area in the
// colour of one of its lines: lines and points drawn, not just axes.
const chartDrawn = `const out = {};
	const rgb = (hex) => [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
	for (const [sensor, u] of window.apd.plots) {
		const sj = window.apd.state.data.get(sensor);
		const cols = (arguments[0] ? sj.hosts.filter(h => h.host === arguments[0]) : sj.hosts).map(h => rgb(h.colour));
		const b = u.bbox;
		const d = u.ctx.getImageData(b.left, b.top, b.width, b.height).data;
		let n = 0;
		for (let i = 0; i < d.length; i += 4) {
			if (d[i + 3] < 200) continue;
			if (cols.some(c => Math.abs(d[i] - c[0]) < 24 && Math.abs(d[i + 1] - c[1]) < 24 && Math.abs(d[i + 2] - c[2]) < 24)) n++;
		}
		out[sensor] = n;
	}
	return out`

// sparksDrawn says, per host row, whether its sparkline has pixels and
// whether the trend's series has numbers for the host.
const sparksDrawn = `const sj = window.apd.state.data.get(window.apd.state.primary);
	return [...document.querySelectorAll('#hosts tbody tr')].map(tr => {
		const host = tr.dataset.host, c = tr.querySelector('canvas.spark');
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		let n = 0;
		for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
		const col = sj.hosts.findIndex(h => h.host === host);
		return {host, pixels: n, numbers: col >= 0 && sj.v[col].some(v => v != null)};
	})`

// publishSingle publishes one temperature reading of host, as a
// newcomer's first mosquitto_pub, and waits until it is stored.
func publishSingle(t *testing.T, base, mqttAddr, host string) {
	t.Helper()
	publish(t, mqttAddr, "apd/"+host+"/temperature", "21.5")
	testutil.WaitFor(t, host+"'s reading stored", 10*time.Second, func() bool {
		resp, err := http.Get(base + "/api/v1/query?sensor=temperature&host=" + host + "&format=json")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var rows []json.RawMessage
		return json.NewDecoder(resp.Body).Decode(&rows) == nil && len(rows) == 1
	})
}

// checkSinglePoint checks that host's one temperature reading is drawn:
// a point, with no line to draw it as.
func checkSinglePoint(t *testing.T, b *testutil.Browser, host string) {
	t.Helper()
	var single struct {
		Values int
		Pixels map[string]int
	}
	_ = b.Eval(&single.Values, `const sj = window.apd.state.data.get('temperature');
		const col = sj.hosts.findIndex(h => h.host === arguments[0]); return col < 0 ? -1 : sj.v[col].filter(v => v != null).length`, host)
	_ = b.Eval(&single.Pixels, chartDrawn, host)
	if single.Values != 1 || single.Pixels["temperature"] < 12 {
		t.Errorf("%s's one reading: %d values, %d pixels of its colour on the temperature chart", host, single.Values, single.Pixels["temperature"])
	}
}

// checkView checks what every width must show: each chart drawn, a
// sparkline for each host with numbers for the trend's sensor, and no
// sideways scrolling.
func checkView(t *testing.T, b *testutil.Browser, width, hosts int) {
	t.Helper()
	var drawn map[string]int
	if err := b.Eval(&drawn, chartDrawn, nil); err != nil {
		t.Fatal(err)
	}
	for sensor, n := range drawn {
		if n < 20 {
			t.Errorf("%d px: the %s chart has %d pixels of its lines' colours", width, sensor, n)
		}
	}
	var sparks []struct {
		Host    string
		Pixels  int
		Numbers bool
	}
	if err := b.Eval(&sparks, sparksDrawn); err != nil {
		t.Fatal(err)
	}
	with := 0
	for _, s := range sparks {
		if s.Numbers {
			with++
		}
		if s.Numbers && s.Pixels < 20 {
			t.Errorf("%d px: the sparkline of %s has %d pixels", width, s.Host, s.Pixels)
		}
	}
	if with < hosts {
		t.Errorf("%d px: %d sparklines have numbers, want every host's (%d)", width, with, hosts)
	}
	var scroll struct{ Scroll, Client int }
	_ = b.Eval(&scroll, `return {scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth}`)
	if scroll.Scroll > scroll.Client {
		t.Errorf("%d px: the page is %d px wide in a window of %d: it scrolls sideways", width, scroll.Scroll, scroll.Client)
	}
}

// TestDashboardWidths loads the dashboard at a desk's, a tablet's and a
// phone's width: charts drawn, a sparkline per host, the trend chosen
// from the data (not temperature, which fails on most hosts), a single
// reading shown as a point, titles and formats from the readings, no
// sideways scrolling; screenshots of each.
func TestDashboardWidths(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	base := "http://" + fleet.HTTP
	publishSingle(t, base, fleet.MQTT, "shed")
	for _, width := range []int{1400, 768, 390} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			t.Parallel()
			b := testutil.StartBrowser(t, width, 900)
			b.Open(base + "/")
			b.WaitTrue("every chart rendered", 20*time.Second,
				`return window.apd && window.apd.rendered != null && window.apd.plots.size === 6`)
			var view struct {
				Primary, Trend, Uncharted, LastRAM string
				Sensors                            []string
			}
			_ = b.Eval(&view, `return {primary: window.apd.state.primary, trend: document.querySelector('#trend-sensor').value,
				uncharted: document.querySelector('#uncharted').textContent, sensors: [...window.apd.plots.keys()]}`)
			if view.Primary != "cpu_load" || view.Trend != "cpu_load" {
				t.Errorf("the trend is of %q (picker %q), want cpu_load: the sensor with numbers on most hosts", view.Primary, view.Trend)
			}
			if !strings.Contains(view.Uncharted, "Operating system") || strings.Contains(view.Uncharted, "Os") {
				t.Errorf("sensors without numbers listed as %q, want their own title Operating system", view.Uncharted)
			}
			checkView(t, b, width, len(fleetHosts()))

			checkSinglePoint(t, b, "shed")
			b.WaitTrue("the map drawn", 10*time.Second, `const i = document.querySelector('#map-img'); return !!i && i.complete && i.naturalWidth > 0`)
			b.FitWindow()
			checkView(t, b, width, len(fleetHosts()))
		})
	}
}

// TestDashboardURL: the trend's sensor, the map's and the range are kept
// in the URL, so a reload (or a shared link) shows the same view; RAM
// reads as the CLI writes it.
func TestDashboardURL(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	base := "http://" + fleet.HTTP
	b := testutil.StartBrowser(t, 1000, 900)
	b.Open(base + "/")
	b.WaitTrue("every chart rendered", 20*time.Second, `return window.apd && window.apd.rendered != null && window.apd.plots.size === 6`)
	if err := b.Eval(nil, `const s = document.querySelector('#trend-sensor'); s.value = 'ram_used'; s.dispatchEvent(new Event('change'));
		document.querySelector('#ranges button[data-range="21600"]').click()`); err != nil {
		t.Fatal(err)
	}
	b.WaitTrue("the view in the URL", 10*time.Second, `return location.search.includes('trend=ram_used') && location.search.includes('range=6h')`)
	var search string
	_ = b.Eval(&search, `return location.search`)
	b.Open(base + "/" + search)
	b.WaitTrue("the same view after a reload", 20*time.Second, `return window.apd && window.apd.rendered != null && window.apd.state.primary === 'ram_used'
		&& window.apd.state.range === 21600 && document.querySelector('#ranges button[data-range="21600"]').getAttribute('aria-pressed') === 'true'
		&& document.querySelector('#trend-sensor').value === 'ram_used' && document.querySelector('#map-sensor').value === 'ram_used'`)
	var last string
	_ = b.Eval(&last, `return document.querySelector('#hosts td.last[data-host="node-08"]').firstChild.textContent`)
	if ok, _ := regexp.MatchString(`^\d+\.\d GiB$`, last); !ok {
		t.Errorf("node-08's RAM reads %q, want the CLI's form like 23.0 GiB", last)
	}
	// Every control has a name a screen reader can say.
	var unnamed []string
	_ = b.Eval(&unnamed, `return [...document.querySelectorAll('button, select, input, a[href]')].filter(e => e.offsetParent !== null || e.closest('dialog[open]'))
		.filter(e => !(e.getAttribute('aria-label') || e.labels?.length || e.textContent.trim() || e.title)).map(e => e.outerHTML.slice(0, 80))`)
	if len(unnamed) > 0 {
		t.Errorf("controls without a name: %v", unnamed)
	}
}

// TestDashboardFirstReading: a newcomer's first reading, one number
// published to an empty aggregator, is a point on a chart whose range
// fits it (minutes, not a day with the point at its edge).
func TestDashboardFirstReading(t *testing.T) {
	t.Parallel()
	s := startServeIn(t, t.TempDir())
	base := "http://" + s.http
	publish(t, s.mqtt, "apd/shed/temperature", "21.5")
	b := testutil.StartBrowser(t, 1000, 800)
	testutil.WaitFor(t, "the reading stored", 10*time.Second, func() bool {
		resp, err := http.Get(base + "/api/v1/hosts")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var hosts []json.RawMessage
		return json.NewDecoder(resp.Body).Decode(&hosts) == nil && len(hosts) == 1
	})
	b.Open(base + "/")
	b.WaitTrue("the chart rendered", 20*time.Second, `return window.apd && window.apd.rendered != null && window.apd.plots.size === 1`)
	var x struct{ Min, Max float64 }
	_ = b.Eval(&x, `const u = window.apd.plots.get('temperature'); return {min: u.scales.x.min, max: u.scales.x.max}`)
	if span := x.Max - x.Min; span < 300 || span > 1800 {
		t.Errorf("the first range spans %.0f s for a reading made just now; want minutes", span)
	}
	var drawn map[string]int
	_ = b.Eval(&drawn, chartDrawn, nil)
	if drawn["temperature"] < 12 {
		t.Errorf("the single reading covers %d pixels of its colour: not drawn as a point", drawn["temperature"])
	}
	var sparks []struct{ Pixels int }
	_ = b.Eval(&sparks, sparksDrawn)
	if len(sparks) != 1 || sparks[0].Pixels < 5 {
		t.Errorf("sparklines %+v, want the shed's dot", sparks)
	}
}

// TestDashboard loads the dashboard of a real apd serve in headless
// Chromium: a rendered chart per sensor with a line per host in the
// host's colour, a reading published with mosquitto_pub appearing
// without a reload, zoom, downloads, the dark theme, and no request to
// anywhere but the server.
func TestDashboard(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	browser := testutil.StartBrowser(t, 1400, 1300)
	base := "http://" + fleet.HTTP
	shots := screenshotDir(t)

	browser.Open(base + "/")
	browser.WaitTrue("every chart rendered", 15*time.Second,
		`return window.apd && window.apd.rendered != null && window.apd.plots.size === 6`)
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
	wantLines := map[string]int{"ac_connected": 12, "temperature": 2, "humidity": 4, "cpu_load": 12, "ram_used": 12, "uptime": 12}
	for _, p := range plots {
		if len(p.Labels) != wantLines[p.Sensor] || !p.Canvas {
			t.Errorf("chart %s: lines %v (canvas %v), want %d", p.Sensor, p.Labels, p.Canvas, wantLines[p.Sensor])
		}
		for i, n := range p.Points {
			if n < 50 {
				t.Errorf("chart %s: %s has %d points over a day of 5-minute readings", p.Sensor, p.Labels[i], n)
			}
		}
	}
	// The kitchen's line is drawn in its colour.
	var kitchen map[string]int
	if err := browser.Eval(&kitchen, chartDrawn, "pi-kitchen"); err != nil {
		t.Fatal(err)
	}
	if kitchen["temperature"] < 100 {
		t.Errorf("the kitchen's colour #cc3300 covers %d pixels of the temperature chart", kitchen["temperature"])
	}

	// A reading published now, by a plain MQTT client, appears without a
	// reload.
	_ = browser.Eval(nil, `window.__sameDocument = true`)
	payload := fmt.Sprintf(`{"v":1,"ts":%q,"value":{"magnitude":0.4375,"unit":"ratio"}}`, time.Now().UTC().Format(time.RFC3339Nano))
	publish(t, fleet.MQTT, "apd/pi-kitchen/cpu_load", payload)
	browser.WaitTrue("the published reading on the chart", 15*time.Second, `const u = window.apd.plots.get('cpu_load');
		const col = u.series.findIndex(s => s.label === 'Kitchen');
		return window.__sameDocument === true && col > 0 && u.data[col].includes(43.75)
			&& document.querySelector('#hosts td.last[data-host="pi-kitchen"]').textContent.startsWith('43.8%')`)
	var loads int
	_ = browser.Eval(&loads, `return window.apd.loads`)
	if loads != 1 {
		t.Errorf("the series were fetched %d times; the live reading should have come without a fetch", loads)
	}

	// What is shown downloads as CSV (a row per point) and as the
	// server's PNG of the same range.
	var csv string
	_ = browser.Eval(&csv, `return window.apd.csv()`)
	if lines := strings.Split(strings.TrimSpace(csv), "\n"); lines[0] != "sensor,host,name,time,value,unit" || len(lines) < 42*200 || !strings.Contains(csv, "temperature,pi-kitchen,Kitchen,") {
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
	if !strings.HasPrefix(lastCell, "43.8%") {
		t.Errorf("the kitchen's last CPU load after a fetch: %q, want the published 43.8%%", lastCell)
	}

	_ = browser.Eval(nil, `document.querySelector('#theme').click()`)
	browser.WaitTrue("dark charts", 10*time.Second, `return document.documentElement.classList.contains('dark') && window.apd.plots.size === 6`)
	browser.WaitTrue("the dark map", 10*time.Second, `const i = document.querySelector('#map-img'); return i.src.includes('theme=dark') && i.complete && i.naturalWidth > 0`)
	browser.FitWindow()
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
