package logxview

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx"
	"github.com/stretchr/testify/require"
)

// hostile are messages a page must show as text, never run or render.
var hostile = []string{
	`<script>window.__pwned = 1</script>`,
	`<img src=x onerror="window.__pwned = 2">`,
	`"><svg onload="window.__pwned=3">`,
	`</td></tr><tr><td>forged row`,
}

// cluster starts three nodes on 127.0.0.1, with an "audit" stream, and
// logs a known set of entries from every node: each node i logs, for k in
// 0..perNode-1, "payment k" at ERROR when k%10 == 0, WARN when k%10 == 1,
// INFO otherwise, with attributes; then the hostile messages, at WARN.
func cluster(t testing.TB, perNode int) ([]*logx.Logx, []logx.Config) {
	t.Helper()
	var addrs []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addrs = append(addrs, ln.Addr().String())
		ln.Close()
	}
	base := t.TempDir()
	var nodes []*logx.Logx
	var cfgs []logx.Config
	for i, a := range addrs {
		cfg := logx.Config{NodeID: fmt.Sprintf("n%d", i+1), Addr: a, Peers: addrs,
			Dir: filepath.Join(base, fmt.Sprintf("n%d", i+1)), File: "app.log", MaxSize: 32 << 10,
			Level: logx.LevelDebug, ElectionTimeout: 300 * time.Millisecond, LogOutput: io.Discard,
			Streams: []logx.StreamConfig{{Name: "audit", Format: logx.FormatJSON}}}
		lx, err := logx.New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { lx.Close() })
		nodes, cfgs = append(nodes, lx), append(cfgs, cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, lx := range nodes {
		require.NoError(t, lx.WaitReady(ctx))
	}
	for k := range perNode {
		for i, lx := range nodes {
			level := logx.LevelInfo
			switch k % 10 {
			case 0:
				level = logx.LevelError
			case 1:
				level = logx.LevelWarn
			}
			_, err := lx.Append(ctx, level, fmt.Sprintf("payment %d", k), "node_index", i, "amount", k*10, "note", "a b")
			require.NoError(t, err)
		}
	}
	for _, m := range hostile {
		_, err := nodes[0].Append(ctx, logx.LevelWarn, m, "html", m)
		require.NoError(t, err)
	}
	audit, err := nodes[1].Stream("audit")
	require.NoError(t, err)
	_, err = audit.Append(ctx, logx.LevelInfo, "role granted", "user", 42)
	require.NoError(t, err)
	for _, lx := range nodes {
		require.NoError(t, lx.Flush(ctx))
	}
	waitSeq(t, nodes, uint64(3*perNode+len(hostile)))
	deadline := time.Now().Add(30 * time.Second)
	for _, lx := range nodes {
		a, err := lx.Stream("audit")
		require.NoError(t, err)
		for a.Stats().Seq < 1 {
			require.True(t, time.Now().Before(deadline), "the audit entry did not arrive")
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nodes, cfgs
}

func waitSeq(t testing.TB, nodes []*logx.Logx, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, lx := range nodes {
		for lx.Stats().Seq < seq {
			require.True(t, time.Now().Before(deadline), "nodes did not reach %d", seq)
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func get(t testing.TB, srv *httptest.Server, path string, v url.Values, out any) int {
	t.Helper()
	res, err := http.Get(srv.URL + "/" + path + "?" + v.Encode())
	require.NoError(t, err)
	defer res.Body.Close()
	if out != nil && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		require.NoError(t, json.NewDecoder(res.Body).Decode(out))
	}
	return res.StatusCode
}

type searchResult struct {
	Lines []Entry `json:"lines"`
	More  bool    `json:"more"`
	Error string  `json:"error"`
}

// TestAPI: search, paging, filters, the histogram and the streams, from a
// node of a real cluster, against what was logged.
func TestAPI(t *testing.T) {
	const perNode = 100
	nodes, _ := cluster(t, perNode)
	srv := httptest.NewServer(Handler(nodes[2], Options{}))
	defer srv.Close()
	total := 3*perNode + len(hostile)

	var streams map[string][]string
	require.Equal(t, 200, get(t, srv, "api/streams", nil, &streams))
	require.Equal(t, []string{logx.DefaultStream, "audit"}, streams["streams"])

	// Everything, newest first, in pages that meet without a gap.
	var seen []uint64
	v := url.Values{"limit": {"70"}}
	for {
		var r searchResult
		require.Equal(t, 200, get(t, srv, "api/search", v, &r), r.Error)
		for _, e := range r.Lines {
			seen = append(seen, e.Seq)
		}
		if !r.More {
			break
		}
		v.Set("max_seq", fmt.Sprint(r.Lines[len(r.Lines)-1].Seq-1))
	}
	require.Len(t, seen, total)
	for i, s := range seen {
		require.Equal(t, uint64(total-i), s)
	}

	// A substring, a level, an expression; fields laid out.
	var r searchResult
	require.Equal(t, 200, get(t, srv, "api/search", url.Values{"q": {"payment 7"}, "limit": {"1000"}}, &r))
	require.Len(t, r.Lines, 3*11) // 7 and 70-79 on each node
	e := r.Lines[0]
	require.Equal(t, "INFO", e.Level)
	require.Contains(t, []string{"n1", "n2", "n3"}, e.Node)
	require.Contains(t, e.Caller, "logxview_test.go")
	require.True(t, strings.HasPrefix(e.Msg, "payment 7"), e.Msg)
	require.Equal(t, [][2]string{{"node_index", e.Attrs[0][1]}, {"amount", e.Attrs[1][1]}, {"note", "a b"}}, e.Attrs)
	_, err := time.Parse(time.RFC3339Nano, e.Time)
	require.NoError(t, err)

	require.Equal(t, 200, get(t, srv, "api/search", url.Values{"level": {"ERROR"}, "limit": {"1000"}}, &r))
	require.Len(t, r.Lines, 3*perNode/10)
	for _, e := range r.Lines {
		require.Equal(t, "ERROR", e.Level)
	}
	require.Equal(t, 200, get(t, srv, "api/search", url.Values{"q": {`^seq=\d+ .*msg="payment 9[0-9]"`}, "regexp": {"1"}, "limit": {"1000"}}, &r))
	require.Len(t, r.Lines, 30)
	require.Equal(t, 200, get(t, srv, "api/search", url.Values{"since": {"1h"}, "until": {"59m"}}, &r))
	require.Empty(t, r.Lines)

	// Hostile text comes back as it was logged, as data.
	require.Equal(t, 200, get(t, srv, "api/search", url.Values{"q": {"<"}, "limit": {"1000"}}, &r))
	require.Len(t, r.Lines, len(hostile))
	for i, e := range r.Lines {
		require.Equal(t, hostile[len(hostile)-1-i], e.Msg)
		require.Equal(t, [][2]string{{"html", e.Msg}}, e.Attrs)
	}

	// The other stream, in JSON lines.
	require.Equal(t, 200, get(t, srv, "api/search", url.Values{"stream": {"audit"}}, &r))
	require.Len(t, r.Lines, 1)
	require.Equal(t, "role granted", r.Lines[0].Msg)
	require.Equal(t, [][2]string{{"user", "42"}}, r.Lines[0].Attrs)
	require.Equal(t, "n2", r.Lines[0].Node)

	// The histogram: every entry once, by level.
	var h Hist
	require.Equal(t, 200, get(t, srv, "api/histogram", url.Values{"since": {"10m"}, "buckets": {"7"}}, &h))
	require.Len(t, h.Counts, 7)
	require.Equal(t, int64(total), h.Total)
	byLevel := make([]int64, len(levels))
	for _, c := range h.Counts {
		for k, n := range c {
			byLevel[k] += n
		}
	}
	require.Equal(t, []int64{0, int64(3 * perNode * 8 / 10), int64(3*perNode/10 + len(hostile)), int64(3 * perNode / 10)}, byLevel)
	require.Equal(t, 200, get(t, srv, "api/histogram", url.Values{"since": {"10m"}, "q": {"payment 1"}, "level": {"WARN"}}, &h))
	require.Equal(t, int64(3*3), h.Total) // payment 1 and 10..19, at WARN or above: 1 (WARN), 10 (ERROR), 11 (WARN)

	// Bad input: a clear error, nothing served.
	for _, c := range []struct {
		path string
		v    url.Values
		code int
		msg  string
	}{
		{"api/search", url.Values{"limit": {"0"}}, 400, "limit"},
		{"api/search", url.Values{"limit": {"5000"}}, 400, "limit"},
		{"api/search", url.Values{"max_seq": {"-1"}}, 400, "max_seq"},
		{"api/search", url.Values{"level": {"LOUD"}}, 400, "level"},
		{"api/search", url.Values{"since": {"yesterday"}}, 400, "since"},
		{"api/search", url.Values{"q": {"(a"}, "regexp": {"1"}}, 400, "regexp"},
		{"api/search", url.Values{"q": {"(?:a?){1000}"}, "regexp": {"1"}}, 400, "instructions"},
		{"api/search", url.Values{"q": {strings.Repeat("x", 5000)}}, 400, "4 KiB"},
		{"api/search", url.Values{"stream": {"nope"}}, 404, "nope"},
		{"api/histogram", url.Values{"buckets": {"100000"}}, 400, "buckets"},
		{"api/histogram", url.Values{"since": {"1m"}, "until": {"2m"}}, 400, "before"},
		// More than 292 years: Until.Sub(Since) saturates, and every
		// line fell outside an answer that said 0.
		{"api/histogram", url.Values{"since": {"1700-01-01T00:00:00Z"}}, 400, "spans more than"},
		{"api/tail", url.Values{"from": {"x"}}, 400, "from"},
	} {
		var out map[string]string
		require.Equal(t, c.code, get(t, srv, c.path, c.v, &out), "%s %v", c.path, c.v)
		require.Contains(t, out["error"], c.msg, "%s %v", c.path, c.v)
	}
	// Read-only.
	res, err := http.Post(srv.URL+"/api/search", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, res.StatusCode)

	// With Hosts, another name in the Host header (DNS rebinding) is refused.
	only := httptest.NewServer(Handler(nodes[0], Options{Hosts: []string{"logs.example"}}))
	defer only.Close()
	for host, code := range map[string]int{"logs.example": 200, "logs.example:8080": 200, "evil.example": 421, "": 421} {
		req, _ := http.NewRequest("GET", only.URL+"/api/streams", nil)
		req.Host = host
		if host == "" {
			req.Host = only.Listener.Addr().String()
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, code, res.StatusCode, host)
	}
}

// TestPage: the page and its files are served from the binary, with a
// policy that lets nothing else run or load.
func TestPage(t *testing.T) {
	nodes, _ := cluster(t, 1)
	srv := httptest.NewServer(Handler(nodes[0], Options{}))
	defer srv.Close()
	for _, p := range []string{"/", "/app.js", "/app.css"} {
		res, err := http.Get(srv.URL + p)
		require.NoError(t, err)
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.Equal(t, 200, res.StatusCode, p)
		require.NotEmpty(t, b)
		require.Contains(t, res.Header.Get("Content-Security-Policy"), "script-src 'self'")
		require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
		// Nothing from elsewhere (the SVG namespace is a name, not a fetch).
		body := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		require.False(t, strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "//cdn"), "%s names another site", p)
	}
	// The script never writes HTML from data.
	js, err := assets.ReadFile("assets/app.js")
	require.NoError(t, err)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		require.False(t, strings.Contains(string(js), bad), "app.js uses %s", bad)
	}
}

// TestTail: the live tail sends the lines that arrive, filtered, from the
// one after the last the client saw, and resumes after a reconnection
// without a gap.
func TestTail(t *testing.T) {
	nodes, _ := cluster(t, 5)
	v := Handler(nodes[1], Options{MaxTails: 2})
	// A server with a ReadTimeout, as logx node's: net/http cancels a
	// request's context when its connection's read deadline passes, so a
	// tail that kept the deadline ended then (after a minute in logx node).
	srv := httptest.NewUnstartedServer(v)
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	open := func(v url.Values, lastID string) (*bufio.Reader, func()) {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/tail?"+v.Encode(), nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode)
		require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
		return bufio.NewReader(res.Body), func() { res.Body.Close() }
	}
	next := func(r *bufio.Reader) (id string, e Entry) {
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err)
			switch {
			case strings.HasPrefix(line, "id: "):
				id = strings.TrimSpace(line[4:])
			case strings.HasPrefix(line, "data: "):
				require.NoError(t, json.Unmarshal([]byte(line[6:]), &e))
				return id, e
			}
		}
	}
	r, done := open(url.Values{"q": {"live"}, "level": {"WARN"}}, "")
	// The first comment says the tail is open: lines from now on.
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, ": logx tail\n", line)
	time.Sleep(500 * time.Millisecond) // past the server's ReadTimeout: the tail outlives it
	_, err = nodes[0].Append(ctx, logx.LevelWarn, "live one")
	require.NoError(t, err)
	_, err = nodes[2].Append(ctx, logx.LevelInfo, "live but INFO") // filtered out
	require.NoError(t, err)
	seq, err := nodes[2].Append(ctx, logx.LevelError, "live two", "k", "<b>")
	require.NoError(t, err)
	_, e1 := next(r)
	require.Equal(t, "live one", e1.Msg)
	id, e2 := next(r)
	require.Equal(t, "live two", e2.Msg)
	require.Equal(t, fmt.Sprint(seq), id)
	require.Equal(t, [][2]string{{"k", "<b>"}}, e2.Attrs)

	// A HEAD request takes no turn (its body would be thrown away, so it
	// could never be seen to stop reading): with one tail open, two HEADs
	// answer at once, and one more tail still fits.
	for range 2 {
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		req, _ := http.NewRequestWithContext(hctx, "HEAD", srv.URL+"/api/tail", nil)
		res, err := http.DefaultClient.Do(req)
		hcancel()
		require.NoError(t, err, "a HEAD of a tail did not answer")
		res.Body.Close()
		require.Equal(t, 200, res.StatusCode)
		require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	}
	// At most MaxTails at once.
	_, done2 := open(url.Values{}, "")
	res, err := http.Get(srv.URL + "/api/tail")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	done2()

	// Paused: the connection closes; lines arrive meanwhile; a reconnection
	// with the last id seen gets them. (Once the server has seen both tails
	// go: a handler ends a little after its client closes, and until then
	// its turn is taken.)
	done()
	require.Eventually(t, func() bool { return v.tails.Load() == 0 }, 30*time.Second, 5*time.Millisecond, "the closed tails keep their turns")
	_, err = nodes[0].Append(ctx, logx.LevelWarn, "live three")
	require.NoError(t, err)
	r, done = open(url.Values{"q": {"live"}, "level": {"WARN"}}, id)
	defer done()
	_, e3 := next(r)
	require.Equal(t, "live three", e3.Msg)
	require.Greater(t, e3.Seq, seq)
}

// TestParseFields: the fields of lines as logx renders them, in both
// formats, with quoting.
func TestParseFields(t *testing.T) {
	for _, c := range []struct {
		line string
		want [][2]string
	}{
		{`seq=1 time=2026-12-02T10:00:00.000001Z level=INFO node=n1 caller=a/b.go:3 msg="hello world" k=v "odd key"="x\"y" n=3`,
			[][2]string{{"seq", "1"}, {"time", "2026-12-02T10:00:00.000001Z"}, {"level", "INFO"}, {"node", "n1"}, {"caller", "a/b.go:3"}, {"msg", "hello world"}, {"k", "v"}, {"odd key", `x"y`}, {"n", "3"}}},
		{`{"seq":2,"level":"WARN","node":"n2","msg":"a <b>","n":1.5,"o":{"x":[1]}}`,
			[][2]string{{"seq", "2"}, {"level", "WARN"}, {"node", "n2"}, {"msg", "a <b>"}, {"n", "1.5"}, {"o", `{"x":[1]}`}}},
		{`seq=3 level=INFO msg="broken`, [][2]string{{"seq", "3"}, {"level", "INFO"}}},
		{`not a log line`, nil},
	} {
		require.Equal(t, c.want, parseFields([]byte(c.line)), c.line)
	}
}

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	code := m.Run()
	if benchLog.dir != "" {
		os.RemoveAll(benchLog.dir)
	}
	os.Exit(code)
}

// TestEntryFields: the head's fields go to their columns; everything after
// msg is an attribute, whatever its name.
func TestEntryFields(t *testing.T) {
	e := entry(logx.Line{Seq: 7, Level: logx.LevelWarn, Text: []byte(
		`seq=7 time=2026-12-02T10:00:00.000001Z level=WARN node=n1 caller=a.go:3 msg=hi node=pod-7 msg=inner seq=9 level=x`)})
	require.Equal(t, "n1", e.Node)
	require.Equal(t, "a.go:3", e.Caller)
	require.Equal(t, "hi", e.Msg)
	require.Equal(t, [][2]string{{"node", "pod-7"}, {"msg", "inner"}, {"seq", "9"}, {"level", "x"}}, e.Attrs)
}

// fakeSource serves lines from memory; its Grep can be held.
type fakeSource struct {
	lines []logx.Line
	hold  chan struct{} // if set, Grep waits for it
	seq   uint64
}

func (f *fakeSource) Grep(ctx context.Context, q logx.Query, fn func(logx.Line) error) error {
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i := len(f.lines) - 1; i >= 0; i-- {
		if q.MaxSeq > 0 && f.lines[i].Seq > q.MaxSeq {
			continue
		}
		if err := fn(f.lines[i]); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSource) Watch(ctx context.Context, from uint64, _ slog.Leveler, fn func(logx.Line) error) error {
	for _, l := range f.lines {
		if l.Seq < from {
			continue
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeSource) Stats() logx.Stats { return logx.Stats{Seq: f.seq} }

// TestBounds: searches wait for a turn and are refused after a second; an
// answer holds about 4 MiB of lines and says there is more; a tail replays
// at most MaxReplay lines and says how many it skipped.
func TestBounds(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	src := &fakeSource{seq: 100}
	for i := uint64(1); i <= 100; i++ {
		src.lines = append(src.lines, logx.Line{Seq: i, Level: logx.LevelInfo, Text: []byte(fmt.Sprintf("seq=%d level=INFO node=n1 msg=%s", i, big))})
	}
	v := newHandler(func(string) (Source, error) { return src, nil }, func() []string { return nil }, Options{MaxQueries: 1, MaxReplay: 5})
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	t.Cleanup(v.Close)

	var r searchResult
	require.Equal(t, 200, get(t, srv, "api/search", url.Values{"limit": {"1000"}}, &r))
	require.True(t, r.More)
	require.Len(t, r.Lines, 2) // 4 MiB of JSON: each line as its text and its fields

	// Lines whose JSON is six times their size ('<' is \u003c): the bound
	// is on the answer as sent, not on the lines' bytes.
	html := strings.Repeat("<", 256<<10)
	for i := range src.lines {
		src.lines[i].Text = []byte(fmt.Sprintf("seq=%d level=INFO node=n1 msg=%s", i+1, html))
	}
	res, err := http.Get(srv.URL + "/api/search?limit=1000")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(body, &r))
	require.True(t, r.More)
	require.LessOrEqual(t, len(body), maxSearchBytes+2*6*len(html)+4096, "an answer of %d lines", len(r.Lines))
	for i := range src.lines {
		src.lines[i].Text = []byte(fmt.Sprintf("seq=%d level=INFO node=n1 msg=%s", i+1, big))
	}

	src.hold = make(chan struct{})
	first := make(chan int)
	go func() { first <- get(t, srv, "api/search", nil, nil) }()
	require.Eventually(t, func() bool { return len(v.queries) == 1 }, 10*time.Second, time.Millisecond)
	var out map[string]string
	start := time.Now()
	require.Equal(t, http.StatusServiceUnavailable, get(t, srv, "api/histogram", nil, &out))
	require.Contains(t, out["error"], "try again")
	require.GreaterOrEqual(t, time.Since(start), time.Second)
	close(src.hold)
	require.Equal(t, 200, <-first)
	src.hold = nil

	res, err = http.Get(srv.URL + "/api/tail?from=1")
	require.NoError(t, err)
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	var head []string
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if line == "\n" {
			break
		}
		head = append(head, strings.TrimSpace(line))
	}
	require.Equal(t, []string{": logx tail", "id: 95", "event: gap", "data: 95"}, head)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "id: 96\n", line)
	res.Body.Close()
	// The slot is given back once the tail's Watch has stopped.
	require.Eventually(t, func() bool { return v.tails.Load() == 0 }, 10*time.Second, time.Millisecond)
}

// smallBufListener gives every accepted connection a small send buffer,
// so that a client that does not read blocks the server's writes.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// TestStalledReaderGivesTurnBack: a search whose client stops reading
// its answer gives its turn back once the answer's write times out. (It
// held it for as long as the connection stayed open: two such clients,
// and every search and histogram after them got 503.)
func TestStalledReaderGivesTurnBack(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	src := &fakeSource{seq: 8}
	for i := uint64(1); i <= 8; i++ {
		src.lines = append(src.lines, logx.Line{Seq: i, Level: logx.LevelInfo, Text: []byte(fmt.Sprintf("seq=%d level=INFO node=n1 msg=%s", i, big))})
	}
	v := newHandler(func(string) (Source, error) { return src, nil }, func() []string { return nil }, Options{MaxQueries: 1})
	v.writeTimeout = 300 * time.Millisecond
	srv := httptest.NewUnstartedServer(v)
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(v.Close)

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.(*net.TCPConn).SetReadBuffer(4096))
	_, err = fmt.Fprintf(c, "GET /api/search?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(v.queries) == 1 }, 10*time.Second, time.Millisecond, "the search started")
	// Never read: the turn comes back when the write times out.
	require.Eventually(t, func() bool { return len(v.queries) == 0 }, 10*time.Second, 10*time.Millisecond,
		"a client that does not read holds the search's turn")
	var hist map[string]any
	require.Equal(t, http.StatusOK, get(t, srv, "api/histogram", nil, &hist))
}

// endlessSource's Watch sends long lines, 13 MB/s of them, until fn fails
// or ctx ends.
type endlessSource struct{ fakeSource }

func (e *endlessSource) Watch(ctx context.Context, from uint64, _ slog.Leveler, fn func(logx.Line) error) error {
	text := []byte("seq=1 level=INFO msg=" + strings.Repeat("a", 64<<10))
	for seq := from; ; seq++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(logx.Line{Seq: seq, Level: logx.LevelInfo, Text: text}); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTailMatchCost: a live tail whose expression costs more than its
// share of the tail's time ends with an error event that says so; one
// with a cheap expression over the same lines goes on.
func TestTailMatchCost(t *testing.T) {
	share, burst := tailMatchShare, tailMatchBurst
	t.Cleanup(func() { tailMatchShare, tailMatchBurst = share, burst }) // after the server's, which end the tails
	tailMatchBurst = 200 * time.Millisecond
	src := &endlessSource{fakeSource{seq: 1}}
	v := newHandler(func(string) (Source, error) { return src, nil }, func() []string { return nil }, Options{})
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	t.Cleanup(v.Close)
	tail := func(expr string, d time.Duration) (errEvent string, lines int) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/tail?"+url.Values{"q": {expr}, "regexp": {"1"}, "from": {"1"}}.Encode(), nil)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, 200, res.StatusCode)
		r := bufio.NewReader(res.Body)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return "", lines
			}
			switch {
			case line == "event: error\n":
				data, err := r.ReadString('\n')
				require.NoError(t, err)
				return data, lines
			case strings.HasPrefix(line, "data: "):
				lines++
			}
		}
	}
	errEvent, _ := tail(`[^"]{0,400}Z`, 20*time.Second)
	require.Contains(t, errEvent, "more than a live tail may")
	errEvent, lines := tail(`^seq=1 level=(INFO|WARN)`, 2*time.Second)
	require.Empty(t, errEvent, "a cheap expression goes on")
	require.Positive(t, lines)
}
