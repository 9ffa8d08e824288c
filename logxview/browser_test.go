package logxview

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx"
	"github.com/stretchr/testify/require"
)

// The browser test drives the page in headless Chromium through
// ChromeDriver (the W3C WebDriver protocol: JSON over HTTP, spoken here
// with net/http). It runs when chromium and chromedriver are on the PATH,
// and must run with -browser (scripts/browser-test.sh installs them from
// Debian's packages and passes it).
var (
	browserFlag  = flag.Bool("browser", false, "run TestBrowser, failing if Chromium or ChromeDriver is missing")
	browserShots = flag.String("browser.shots", "", "directory for TestBrowser's screenshots (default: the test's temporary directory)")
)

func TestBrowser(t *testing.T) {
	chromium, err1 := exec.LookPath("chromium")
	driver, err2 := exec.LookPath("chromedriver")
	if err1 != nil || err2 != nil {
		if *browserFlag {
			t.Fatalf("-browser: chromium (%v) and chromedriver (%v) are needed: scripts/browser-test.sh installs them", err1, err2)
		}
		t.Skip("no chromium and chromedriver here (scripts/browser-test.sh installs them)")
	}
	shots := *browserShots
	if shots == "" {
		shots = t.TempDir()
	}
	const perNode = 60
	nodes, _ := cluster(t, perNode)
	recent := 3*perNode + len(hostile) // the last seconds' entries
	// Entries over the 50 minutes before the last two, through slog with
	// their own times, a node a minute, at a rate that rises and falls,
	// with an incident of errors half an hour ago: a histogram with a
	// shape, as the README's screenshot shows.
	ctx := context.Background()
	msgs := []string{"request served", "cache miss", "upstream slow", "session renewed"}
	begin := time.Now().Add(-52 * time.Minute)
	spread := 0
	for m := range 50 {
		n := 12 + int(8*math.Sin(float64(m)/5))
		incident := m >= 20 && m < 24
		if incident {
			n += 25
		}
		lx := nodes[m%3]
		for k := range n {
			level := slog.LevelInfo
			switch {
			case incident && k%2 == 0, k%29 == 0:
				level = slog.LevelError
			case k%9 == 0:
				level = slog.LevelWarn
			case k%11 == 0:
				level = slog.LevelDebug
			}
			msg := msgs[(m+k)%len(msgs)]
			if incident && level == slog.LevelError {
				msg = "upstream refused connection"
			}
			at := begin.Add(time.Duration(m)*time.Minute + time.Duration(k)*time.Minute/time.Duration(n))
			var pc [1]uintptr
			runtime.Callers(1, pc[:])
			rec := slog.NewRecord(at, level, msg, pc[0])
			rec.AddAttrs(slog.Int("request", 1000+spread), slog.String("path", fmt.Sprintf("/api/items/%d", spread*7%1000)))
			require.NoError(t, lx.Handler().Handle(ctx, rec))
			spread++
		}
		require.NoError(t, lx.Flush(ctx))
	}
	// A line whose invisible characters would make it read as another, and
	// one longer than a cell shows.
	bidi := "bidi \u202eevil\u202c ad\u200bmin"
	_, err := nodes[0].Append(ctx, slog.LevelInfo, bidi)
	require.NoError(t, err)
	_, err = nodes[1].Append(ctx, slog.LevelInfo, "long "+strings.Repeat("z", 5000))
	require.NoError(t, err)
	total := recent + spread + 2
	waitSeq(t, nodes, uint64(total))
	v := Handler(nodes[1], Options{})
	// Requests of the search "held" wait, outside the viewer, until the
	// page gives them up, and say so: a newer search must abort them.
	held, aborted := make(chan struct{}, 8), make(chan struct{}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("q") != "held" {
			v.ServeHTTP(w, r)
			return
		}
		held <- struct{}{}
		select {
		case <-r.Context().Done():
			aborted <- struct{}{}
		case <-time.After(20 * time.Second):
		}
		http.Error(w, "held too long", http.StatusServiceUnavailable)
	}))
	// Cleanups run last first: the browser quits, then the tails end, then
	// the server closes (it waits for its requests).
	t.Cleanup(srv.Close)
	t.Cleanup(v.Close)
	d := startDriver(t, driver, chromium)

	d.navigate(srv.URL + "/")
	d.wait("the first results", `return document.querySelectorAll("#rows tr").length > 0 && status().includes("entries in range")`)

	// The last hour, newest first, a page at a time, every field laid out.
	require.EqualValues(t, 200, d.js(`return rows().length`))
	require.EqualValues(t, total, d.js(`return rows()[0].seq`))
	require.Contains(t, d.js(`return status()`), fmt.Sprintf("%d entries in range", total))
	require.EqualValues(t, false, d.js(`return document.getElementById("older").hidden`))
	d.click("#older")
	d.wait("the older lines", `return rows().length === 400`)
	seqs := d.js(`return rows().map(r => r.seq)`).([]any)
	for i, s := range seqs {
		require.EqualValues(t, total-i, s, "row %d", i)
	}
	// Levels are coloured: an ERROR cell in red.
	require.EqualValues(t, "rgb(200, 50, 30)", d.js(`return getComputedStyle(document.querySelector("#rows .lvl-ERROR")).color`))
	require.Positive(t, d.js(`return document.querySelectorAll("#histogram rect.bar").length`))

	// A search still under way is given up for a newer one: both its
	// requests (lines and histogram) end at the server.
	twice := func(ch <-chan struct{}, what string) {
		t.Helper()
		for range 2 {
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Fatal(what)
			}
		}
	}
	d.setValue("#q", "held")
	d.click("#search")
	twice(held, "the held search's requests did not come")
	d.setValue("#q", "payment 7")
	d.search("#search")
	twice(aborted, "the newer search did not abort the requests of the one it replaced")
	row := d.js(`return Array.from(document.querySelector("#rows tr").children).map(td => td.textContent)`).([]any)
	require.Len(t, row, 7)
	require.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+$`, row[1])
	require.Contains(t, []any{"n1", "n2", "n3"}, row[3])
	require.Contains(t, row[4], "logxview_test.go:")
	require.Regexp(t, `^payment 7\d?$`, row[5])
	require.Regexp(t, `^node_index=\damount=\d+note=a b$`, row[6])

	// Hostile lines are text: no script ran, no element came from them,
	// and each shows as it was logged.
	d.setValue("#q", "<")
	d.search("#search")
	require.EqualValues(t, len(hostile), d.js(`return rows().length`))
	require.Nil(t, d.js(`return window.__pwned === undefined ? null : window.__pwned`))
	require.EqualValues(t, 1, d.js(`return document.querySelectorAll("script").length`))
	require.EqualValues(t, 0, d.js(`return document.querySelectorAll("#rows img, #rows svg, #rows script").length`))
	shown := d.js(`return Array.from(document.querySelectorAll("#rows td.msg")).map(td => td.textContent)`).([]any)
	for _, h := range hostile {
		require.Contains(t, shown, h)
	}
	// Invisible format characters show as \uXXXX, as logx tail writes
	// them; a long value is cut, saying so.
	d.setValue("#q", "bidi")
	d.search("#search")
	require.EqualValues(t, []any{`bidi \u202eevil\u202c ad\u200bmin`}, d.js(`return rows().map(r => r.msg)`))
	d.setValue("#q", "long zzz")
	d.search("#search")
	require.EqualValues(t, []any{"long " + strings.Repeat("z", 1995) + " … (3005 more characters)"}, d.js(`return rows().map(r => r.msg)`))

	// Search, then filter by level.
	d.setValue("#q", "payment 4")
	d.search("#search")
	d.wait("the search", `return rows().length === 33 && rows().every(r => r.msg.startsWith("payment 4"))`)
	d.search("", "#level", "ERROR")
	d.wait("the level filter", `return rows().length === 3 && rows().every(r => r.level === "ERROR" && r.msg === "payment 40")`)
	require.Contains(t, d.js(`return status()`), "3 entries in range")

	// A bar of the histogram narrows the range to its bucket.
	d.search("", "#level", "")
	d.setValue("#q", "")
	d.search("#search")
	require.Contains(t, d.js(`return status()`), fmt.Sprintf("%d entries in range", total))
	d.js(`const bars = Array.from(document.querySelectorAll("#histogram rect.bar"));
		let best = bars[0];
		for (const b of bars) if (+b.getAttribute("height") > +best.getAttribute("height")) best = b;
		best.id = "target-bar";`)
	from := d.js(`return document.getElementById("target-bar").dataset.from`).(string)
	d.search("#target-bar")
	require.EqualValues(t, "custom", d.js(`return document.getElementById("range").value`))
	lo, hi := d.js(`return document.getElementById("from").value`).(string), d.js(`return document.getElementById("to").value`).(string)
	require.True(t, strings.HasPrefix(from, lo), "from %s, bar %s", lo, from)
	times := d.js(`return rows().map(r => r.time)`).([]any)
	require.NotEmpty(t, times)
	for _, tm := range times {
		s := strings.Replace(tm.(string), " ", "T", 1)
		require.True(t, s >= lo && s[:19] <= hi, "a line at %s outside [%s, %s]", s, lo, hi)
	}
	d.screenshot(filepath.Join(shots, "viewer-narrowed.png"))

	// Live tail: a line logged on another node appears at the top; one
	// logged while paused appears once resumed.
	d.search("", "#range", "15m")
	d.click("#live")
	d.wait("the tail", `return status().startsWith("live")`)
	_, err = nodes[0].Append(ctx, logx.LevelWarn, "live line <i>1</i>")
	require.NoError(t, err)
	d.wait("the live line", `return rows()[0].msg === "live line <i>1</i>"`)
	// A hidden tab gives its tail back, and takes it again when shown.
	require.EqualValues(t, 1, v.tails.Load())
	d.js(`Object.defineProperty(document, "hidden", {value: true, configurable: true});
		document.dispatchEvent(new Event("visibilitychange"));`)
	require.Eventually(t, func() bool { return v.tails.Load() == 0 }, 10*time.Second, 10*time.Millisecond, "the hidden tab kept its tail")
	d.js(`Object.defineProperty(document, "hidden", {value: false, configurable: true});
		document.dispatchEvent(new Event("visibilitychange"));`)
	require.Eventually(t, func() bool { return v.tails.Load() == 1 }, 10*time.Second, 10*time.Millisecond, "the tab shown again did not take its tail back")
	d.wait("the tail again", `return status().startsWith("live: new lines")`)
	d.click("#live") // pause
	d.wait("the pause", `return status() === "paused"`)
	_, err = nodes[2].Append(ctx, logx.LevelError, "logged while paused")
	require.NoError(t, err)
	waitSeq(t, nodes, uint64(total+2))
	require.NotEqual(t, "logged while paused", d.js(`return rows()[0].msg`))
	d.click("#live") // resume
	d.wait("the line logged while paused", `return rows()[0].msg === "logged while paused" && rows()[1].msg === "live line <i>1</i>"`)
	require.EqualValues(t, total+2, d.js(`return rows()[0].seq`))
	require.EqualValues(t, total+1, d.js(`return rows()[1].seq`))
	require.EqualValues(t, total, d.js(`return rows()[2].seq`)) // the newest line before the tail
	d.screenshot(filepath.Join(shots, "viewer-live.png"))

	// The README's picture: the hour before the last minute.
	d.click("#live") // pause
	d.js(`document.getElementById("from").value = new Date(Date.now() - 55*60e3).toISOString().slice(0, 19);
		document.getElementById("to").value = new Date(Date.now() - 60e3).toISOString().slice(0, 19);
		document.getElementById("custom").hidden = false;`)
	d.search("", "#range", "custom")
	require.Contains(t, d.js(`return status()`), fmt.Sprintf("%d entries in range", spread))
	d.screenshot(filepath.Join(shots, "viewer.png"))
	require.Nil(t, d.js(`return window.__pwned === undefined ? null : window.__pwned`))
}

// driver is a WebDriver session.
type driver struct {
	t    *testing.T
	base string // the session's URL
}

// helpers start every script the test runs in the page.
const helpers = `
const status = () => document.getElementById("status").textContent;
const rows = () => Array.from(document.querySelectorAll("#rows tr")).map(tr => ({
	seq: +tr.dataset.seq,
	time: tr.querySelector("td.time").textContent,
	level: tr.querySelector("td.lvl span").textContent,
	msg: tr.querySelector("td.msg").textContent,
}));`

func startDriver(t *testing.T, driverPath, chromium string) *driver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var logb bytes.Buffer
	cmd := exec.Command(driverPath, fmt.Sprintf("--port=%d", port), "--allowed-ips=127.0.0.1")
	cmd.Stdout, cmd.Stderr = &logb, &logb
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("chromedriver:\n%s", logb.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(base + "/status")
		if err == nil {
			res.Body.Close()
			break
		}
		require.True(t, time.Now().Before(deadline), "chromedriver did not start: %v", err)
		time.Sleep(50 * time.Millisecond)
	}
	d := &driver{t: t, base: base}
	var s struct {
		SessionID string `json:"sessionId"`
	}
	d.call("POST", "/session", map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{"binary": chromium, "args": []string{
			"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--window-size=1400,900", "--no-first-run", "--disable-extensions"}},
	}}}, &s)
	require.NotEmpty(t, s.SessionID)
	d.base = base + "/session/" + s.SessionID
	t.Cleanup(func() { d.call("DELETE", "", nil, nil) })
	return d
}

// call sends a WebDriver command and decodes its value into out.
func (d *driver) call(method, path string, body, out any) {
	d.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(d.t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.base+path, r)
	require.NoError(d.t, err)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(d.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(d.t, err)
	if res.StatusCode != http.StatusOK {
		d.t.Fatalf("WebDriver %s %s: %s: %s", method, path, res.Status, b)
	}
	if out == nil {
		return
	}
	var v struct{ Value json.RawMessage }
	require.NoError(d.t, json.Unmarshal(b, &v))
	require.NoError(d.t, json.Unmarshal(v.Value, out))
}

func (d *driver) navigate(url string) {
	d.t.Helper()
	d.call("POST", "/url", map[string]string{"url": url}, nil)
}

// js runs script (a function body, after the helpers) and returns its value.
func (d *driver) js(script string) any {
	d.t.Helper()
	var v any
	d.call("POST", "/execute/sync", map[string]any{"script": helpers + script, "args": []any{}}, &v)
	return v
}

// wait polls cond (a script returning a boolean) until it is true.
func (d *driver) wait(what, cond string) {
	d.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for d.js(cond) != true {
		if time.Now().After(deadline) {
			d.t.Fatalf("waiting for %s: %s never held; status %q", what, cond, d.js(`return status()`))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// element finds the element css selects.
func (d *driver) element(css string) string {
	d.t.Helper()
	var e map[string]string
	d.call("POST", "/element", map[string]string{"using": "css selector", "value": css}, &e)
	for _, id := range e {
		return id
	}
	d.t.Fatalf("no element %s", css)
	return ""
}

// click clicks the element as a user would (WebDriver moves the pointer
// to it and clicks).
func (d *driver) click(css string) {
	d.t.Helper()
	d.call("POST", "/element/"+d.element(css)+"/click", map[string]any{}, nil)
}

// search starts a search by clicking css (or, with css "", by setting the
// select sel to v) and waits until its results are shown.
func (d *driver) search(css string, selValue ...string) {
	d.t.Helper()
	d.js(`document.getElementById("status").textContent = ""`)
	if css != "" {
		d.click(css)
	} else {
		d.setValue(selValue[0], selValue[1])
	}
	d.wait("the results", `return status().includes("entries in range") || document.getElementById("status").className === "error"`)
	require.NotEqual(d.t, "error", d.js(`return document.getElementById("status").className`), "status %q", d.js(`return status()`))
}

// setValue sets an input's or a select's value and fires its input and
// change events, as a user's edit would.
func (d *driver) setValue(css, v string) {
	d.t.Helper()
	b, _ := json.Marshal(v)
	c, _ := json.Marshal(css)
	d.js(fmt.Sprintf(`const e = document.querySelector(%s); e.value = %s;
		e.dispatchEvent(new Event("input", {bubbles: true}));
		if (e.tagName === "SELECT") e.dispatchEvent(new Event("change", {bubbles: true}));`, c, b))
}

func (d *driver) screenshot(path string) {
	d.t.Helper()
	var b64 string
	d.call("GET", "/screenshot", nil, &b64)
	png, err := base64.StdEncoding.DecodeString(b64)
	require.NoError(d.t, err)
	require.NoError(d.t, os.WriteFile(path, png, 0o644))
	d.t.Logf("screenshot: %s", path)
}
