package testutil

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Browser is a headless Chromium driven over WebDriver by chromedriver,
// both started for one test and stopped when it ends.
type Browser struct {
	tb      testing.TB
	base    string // chromedriver's URL
	session string
	driver  *Process
	profile string // Chromium's user data directory
}

// RequireBrowserEnv, when set to 1, makes a missing Chromium or
// chromedriver a failure instead of a skip (CI sets it).
const RequireBrowserEnv = "APD_REQUIRE_BROWSER"

// StartBrowser starts chromedriver on a loopback port it picks and a headless
// Chromium session in a window of w×h. Chromium may reach only
// 127.0.0.1: every other name fails to resolve, so a page that tried to
// load anything from elsewhere shows it in the network log (see
// Requests). Without the Debian packages chromium and chromium-driver the
// test is skipped, saying so, unless RequireBrowserEnv is 1.
func StartBrowser(tb testing.TB, w, h int) *Browser {
	tb.Helper()
	driverPath, err1 := exec.LookPath("chromedriver")
	chromium, err2 := exec.LookPath("chromium")
	if err1 != nil || err2 != nil {
		msg := "browser tests need chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
		if os.Getenv(RequireBrowserEnv) == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	profile, err := os.MkdirTemp("", "apd-chromium-")
	if err != nil {
		tb.Fatal(err)
	}
	b := &Browser{tb: tb, profile: profile}
	// Cleanups run last first: the session ends (Chromium quits), the
	// driver is killed, the profile removed.
	tb.Cleanup(b.removeProfile)
	var m []string
	b.driver, m = StartProcess(tb, exec.Command(driverPath, "--port=0", "--allowed-ips=127.0.0.1"),
		regexp.MustCompile(`started successfully on port (\d+)`), 20*time.Second)
	b.base = "http://127.0.0.1:" + m[1]
	tb.Cleanup(b.endSession)
	WaitFor(tb, "chromedriver ready", 20*time.Second, func() bool {
		var st struct {
			Value struct{ Ready bool } `json:"value"`
		}
		return b.call(http.MethodGet, "/status", nil, &st) == nil && st.Value.Ready
	})
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
				"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
				"--disable-quic", "--disable-extensions", "--disable-default-apps", "--hide-scrollbars",
				fmt.Sprintf("--window-size=%d,%d", w, h), "--user-data-dir=" + profile,
				"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"},
		},
		"goog:loggingPrefs": map[string]string{"performance": "ALL", "browser": "ALL"},
	}}}
	var created struct {
		Value struct {
			SessionID string `json:"sessionId"`
		} `json:"value"`
	}
	if err := b.call(http.MethodPost, "/session", caps, &created); err != nil {
		tb.Fatalf("start chromium: %v\n%s", err, b.driver.Log)
	}
	b.session = "/session/" + created.Value.SessionID
	return b
}

func (b *Browser) endSession() {
	if b.session != "" {
		_ = b.call(http.MethodDelete, b.session, nil, nil)
	}
}

func (b *Browser) removeProfile() {
	// Chromium's last processes may still be writing their profile for a
	// moment after the session ends.
	deadline := time.Now().Add(10 * time.Second)
	for os.RemoveAll(b.profile) != nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
}

// call makes one WebDriver request and decodes the answer into out.
func (b *Browser) call(method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.base+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("webdriver %s %s: %s: %s", method, path, resp.Status, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// Open loads url in the window.
func (b *Browser) Open(url string) {
	b.tb.Helper()
	if err := b.call(http.MethodPost, b.session+"/url", map[string]string{"url": url}, nil); err != nil {
		b.tb.Fatal(err)
	}
}

// Eval runs script (a function body; arguments as arguments[i]) in the
// page and decodes what it returns into out (when not nil).
func (b *Browser) Eval(out any, script string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	var res struct {
		Value json.RawMessage `json:"value"`
	}
	if err := b.call(http.MethodPost, b.session+"/execute/sync", map[string]any{"script": script, "args": args}, &res); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(res.Value, out)
}

// WaitTrue evaluates script until it returns true, failing the test
// after timeout with what the page's console said.
func (b *Browser) WaitTrue(what string, timeout time.Duration, script string, args ...any) {
	b.tb.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		var ok bool
		if lastErr = b.Eval(&ok, script, args...); lastErr == nil && ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.tb.Fatalf("waited %s for %s (last error: %v); console: %s", timeout, what, lastErr, strings.Join(b.Console(), "\n"))
}

// FitWindow makes the window as tall as the page, so a screenshot shows
// all of it, and waits until the page has drawn itself at that size.
func (b *Browser) FitWindow() {
	b.tb.Helper()
	var size struct{ W, H int }
	if err := b.Eval(&size, `return {w: window.outerWidth, h: document.documentElement.scrollHeight + (window.outerHeight - window.innerHeight)}`); err != nil {
		b.tb.Fatal(err)
	}
	if err := b.call(http.MethodPost, b.session+"/window/rect", map[string]int{"width": size.W, "height": size.H}, nil); err != nil {
		b.tb.Fatal(err)
	}
	// The size the browser gave the window (it may differ from the one
	// asked for), as the page will see it.
	var rect struct {
		Value struct{ Height int } `json:"value"`
	}
	if err := b.call(http.MethodGet, b.session+"/window/rect", nil, &rect); err != nil {
		b.tb.Fatal(err)
	}
	b.WaitTrue("the page resized", 10*time.Second, `return window.outerHeight === arguments[0]`, rect.Value.Height)
	b.NextFrame()
}

// NextFrame waits until the page has drawn its next frame, so that what
// scripts changed so far is on the screen.
func (b *Browser) NextFrame() {
	b.tb.Helper()
	if err := b.Eval(nil, `return new Promise(drawn => requestAnimationFrame(() => requestAnimationFrame(() => drawn(true))))`); err != nil {
		b.tb.Fatal(err)
	}
}

// Screenshot saves the window as a PNG at path.
func (b *Browser) Screenshot(path string) {
	b.tb.Helper()
	var res struct {
		Value string `json:"value"`
	}
	if err := b.call(http.MethodGet, b.session+"/screenshot", nil, &res); err != nil {
		b.tb.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(res.Value)
	if err != nil {
		b.tb.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.tb.Fatal(err)
	}
}

// logEntries reads (and empties) one of Chromium's logs.
func (b *Browser) logEntries(kind string) []string {
	var res struct {
		Value []struct {
			Message string `json:"message"`
		} `json:"value"`
	}
	if err := b.call(http.MethodPost, b.session+"/se/log", map[string]string{"type": kind}, &res); err != nil {
		b.tb.Logf("read the %s log: %v", kind, err)
		return nil
	}
	out := make([]string, len(res.Value))
	for i, e := range res.Value {
		out[i] = e.Message
	}
	return out
}

// Console returns what the page logged since the last call.
func (b *Browser) Console() []string { return b.logEntries("browser") }

// Requests returns the URL of every request that pages under origin made
// since the last call, from the browser's network log: loaded, failed or
// blocked alike. (Chromium's own pages, such as the new tab it starts
// with, are left out.)
func (b *Browser) Requests(origin string) []string {
	var urls []string
	for _, m := range b.logEntries("performance") {
		var e struct {
			Message struct {
				Method string `json:"method"`
				Params struct {
					Request struct {
						URL string `json:"url"`
					} `json:"request"`
					DocumentURL string `json:"documentURL"`
				} `json:"params"`
			} `json:"message"`
		}
		if json.Unmarshal([]byte(m), &e) == nil && e.Message.Method == "Network.requestWillBeSent" &&
			strings.HasPrefix(e.Message.Params.DocumentURL, origin) {
			urls = append(urls, e.Message.Params.Request.URL)
		}
	}
	return urls
}
