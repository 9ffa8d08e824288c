package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/logx-dev/logx"
	"github.com/stretchr/testify/require"
)

// freePorts reserves n loopback addresses.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

// buildLogx builds this command into a temporary directory.
func buildLogx(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "logx")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// nodeProc is a running logx node process.
type nodeProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

func startNode(t *testing.T, bin string, args ...string) *nodeProc {
	t.Helper()
	p := &nodeProc{cmd: exec.Command(bin, append([]string{"node"}, args...)...), stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	require.NoError(t, p.cmd.Start())
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit status.
func (p *nodeProc) stop(t *testing.T) int {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		require.NoError(t, err)
		return 0
	case <-time.After(60 * time.Second):
		t.Fatalf("the node did not exit within 60 s of SIGTERM:\n%s", p.stderr)
		return -1
	}
}

// waitHTTP waits until GET url answers 200.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d %s", url, resp.StatusCode, body)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("%s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func postIngest(t *testing.T, url, contentType, body string) (int, ingestReply) {
	t.Helper()
	resp, err := http.Post(url, contentType, strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var r ingestReply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	return resp.StatusCode, r
}

// TestNodeProcesses runs three `logx node` processes, configured by a YAML
// file, a JSON file and flags: they become ready, take lines on /ingest
// (text, and JSON lines into a stream), serve /metrics, apply a new level
// on SIGHUP, log nothing at WARN or above, and on SIGTERM close and exit 0,
// with identical files.
func TestNodeProcesses(t *testing.T) {
	bin := buildLogx(t)
	addrs := freePorts(t, 6)
	peers, https := addrs[:3], addrs[3:]
	base := t.TempDir()
	dirs := []string{filepath.Join(base, "n1"), filepath.Join(base, "n2"), filepath.Join(base, "n3")}

	yamlFile := filepath.Join(base, "n1.yaml")
	writeYAML := func(level string) {
		require.NoError(t, os.WriteFile(yamlFile, fmt.Appendf(nil, `# node 1
node_id: n1
addr: %s
peers: [%s]
dir: %s
file: app.log
format: text
election_timeout: 300ms
level: %s
http: %s
ingest: true
streams:
  - name: audit
    format: text
`, peers[0], strings.Join(peers, ", "), dirs[0], level, https[0]), 0o644))
	}
	writeYAML("INFO")
	jsonFile := filepath.Join(base, "n2.json")
	n2 := map[string]any{"node_id": "n2", "addr": peers[1], "peers": peers, "dir": dirs[1], "file": "app.log",
		"election_timeout": "300ms", "http": https[1], "streams": []map[string]any{{"name": "audit"}}}
	b, err := json.Marshal(n2)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(jsonFile, b, 0o644))

	code, out, errOut := runCmd(t, "", "node", "-config", yamlFile, "-check")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	code, _, errOut = runCmd(t, "", "node", "-config", yamlFile, "-addr", "nohost", "-check")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "Config.Addr")

	nodes := []*nodeProc{
		startNode(t, bin, "-config", yamlFile),
		startNode(t, bin, "-config", jsonFile),
		// Flags only; this node does not declare the stream: the catalog
		// brings it.
		startNode(t, bin, "-id", "n3", "-addr", peers[2], "-peers", strings.Join(peers, ","), "-dir", dirs[2],
			"-file", "app.log", "-http", https[2], "-ingest", "-viewer", "-http-hosts", "logs.test"),
	}
	for _, h := range https {
		waitHTTP(t, "http://"+h+"/readyz")
	}

	code2, r := postIngest(t, "http://"+https[2]+"/ingest?level=WARN", "text/plain", "first line\nsecond line\n\nthird line\n")
	require.Equal(t, http.StatusOK, code2, "%+v", r)
	require.Equal(t, 3, r.Committed)
	require.NotZero(t, r.First)
	code2, r = postIngest(t, "http://"+https[0]+"/ingest?stream=audit", "application/x-ndjson",
		`{"msg":"login","level":"ERROR","user":"ann","tries":3}`+"\n"+`{"msg":"logout","user":"ann"}`+"\n")
	require.Equal(t, http.StatusOK, code2, "%+v", r)
	require.Equal(t, 2, r.Committed)
	for _, bad := range []struct{ body, want string }{
		{`{"msg":"ok"}` + "\n" + `not json`, "line 2"},
		{`{"msg":"x","node":"db-1"}`, "logx's own field"},
		{`{"msg":"x","seq":1}`, "logx's own field"},
		{`{"msg":7}`, "logx's own field"},
		{`{"msg":"x","a":1,"a":2}`, "twice"},
		{`{"msg":"x"}}`, "more than one"},
	} {
		code2, r = postIngest(t, "http://"+https[0]+"/ingest", "application/json", bad.body+"\n")
		require.Equal(t, http.StatusBadRequest, code2, "%s: %+v", bad.body, r)
		require.Contains(t, r.Error, bad.want, bad.body)
		require.Contains(t, r.Error, "nothing committed")
	}
	code2, r = postIngest(t, "http://"+https[0]+"/ingest", "text/plain", strings.Repeat("x\n", maxIngestLines+1))
	require.Equal(t, http.StatusRequestEntityTooLarge, code2, "%+v", r)
	require.Zero(t, r.Committed)
	code2, r = postIngest(t, "http://"+https[0]+"/ingest", "text/plain", "ok\n"+strings.Repeat("y", maxIngestLine+1)+"\n")
	require.Equal(t, http.StatusRequestEntityTooLarge, code2, "%+v", r)
	require.Zero(t, r.Committed)
	code2, r = postIngest(t, "http://"+https[0]+"/ingest?stream=nope", "text/plain", "x\n")
	require.Equal(t, http.StatusNotFound, code2, "%+v", r)
	resp, err := http.Post("http://"+https[1]+"/ingest", "text/plain", strings.NewReader("x\n"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "/ingest is served only when asked for")
	// What a page on another site makes its visitor's browser send: a
	// simple request, no preflight, "json" in a text/plain type.
	forged, err := http.NewRequest("POST", "http://"+https[0]+"/ingest?level=ERROR", strings.NewReader(`{"msg":"forged","level":"ERROR"}`+"\n"))
	require.NoError(t, err)
	forged.Header.Set("Content-Type", "text/plain; x=json")
	forged.Header.Set("Origin", "https://evil.example")
	forged.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = http.DefaultClient.Do(forged)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a browser's cross-site POST to /ingest")
	// DNS rebinding: a page of evil.example, whose name now points at the
	// node, is the same origin to the browser, and over plain HTTP a
	// browser's GET carries no header that tells it from curl's. Refused
	// (421) unless the Host is an IP address, localhost or in http_hosts;
	// /metrics, /healthz and /readyz answer any name.
	browser := func(method, url, host string) int {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader("rebound\n"))
		require.NoError(t, err)
		req.Host = host
		req.Header.Set("Content-Type", "text/plain")
		if method == "POST" {
			req.Header.Set("Origin", "http://"+host)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	_, port, _ := net.SplitHostPort(https[2])
	require.Equal(t, http.StatusMisdirectedRequest, browser("POST", "http://"+https[2]+"/ingest", "evil.example:"+port))
	require.Equal(t, http.StatusMisdirectedRequest, browser("GET", "http://"+https[2]+"/status", "evil.example:"+port))
	require.Equal(t, http.StatusMisdirectedRequest, browser("GET", "http://"+https[0]+"/status", "evil.example:"+port))
	require.Equal(t, http.StatusOK, browser("GET", "http://"+https[2]+"/status", "logs.test:"+port), "a name in -http-hosts")
	require.Equal(t, http.StatusOK, browser("GET", "http://"+https[0]+"/status", "localhost:"+port))
	require.Equal(t, http.StatusOK, browser("GET", "http://"+https[0]+"/status", https[0]))
	require.Equal(t, http.StatusMisdirectedRequest, browser("GET", "http://"+https[2]+"/logs/api/search?q=x", "evil.example:"+port))
	require.Equal(t, http.StatusOK, browser("GET", "http://"+https[2]+"/logs/api/search?q=x", "logs.test:"+port))
	require.Equal(t, http.StatusOK, browser("GET", "http://"+https[0]+"/metrics", "evil.example:"+port), "Prometheus by any name")
	require.Equal(t, http.StatusOK, browser("GET", "http://"+https[0]+"/healthz", "evil.example:"+port))

	resp, err = http.Get("http://" + https[0] + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metrics), `logx_applied_index{node="n1",stream="audit"}`)

	writeYAML("WARN")
	require.NoError(t, nodes[0].cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(nodes[0].stderr.String(), "level INFO -> WARN") },
		30*time.Second, 20*time.Millisecond, "SIGHUP did not apply the level:\n%s", nodes[0].stderr)
	code2, r = postIngest(t, "http://"+https[0]+"/ingest", "text/plain", "below the new level\n")
	require.Equal(t, http.StatusOK, code2, "%+v", r)
	require.Equal(t, ingestReply{BelowLevel: 1}, r, "an INFO line under level WARN")

	// Every node has written everything, in every stream, before they stop.
	require.Eventually(t, func() bool {
		seqs := map[string]map[uint64]bool{}
		for _, h := range https {
			resp, err := http.Get("http://" + h + "/status?all=1")
			if err != nil {
				return false
			}
			var all []logx.Stats
			err = json.NewDecoder(resp.Body).Decode(&all)
			resp.Body.Close()
			if err != nil || len(all) != 2 {
				return false
			}
			for _, st := range all {
				if seqs[st.Stream] == nil {
					seqs[st.Stream] = map[uint64]bool{}
				}
				seqs[st.Stream][st.Seq] = true
			}
		}
		return len(seqs) == 2 && len(seqs["default"]) == 1 && len(seqs["audit"]) == 1 && !seqs["audit"][0]
	}, 30*time.Second, 20*time.Millisecond, "the nodes did not reach the same sequence numbers")
	// The viewer, where asked for: the page, a search, and a live tail
	// left open, which must not hold up the node's stop.
	resp, err = http.Get("http://" + https[2] + "/logs/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(page), `<script src="app.js"`)
	resp, err = http.Get("http://" + https[2] + "/logs/api/search?q=second+line")
	require.NoError(t, err)
	var found struct {
		Lines []struct{ Msg, Level, Node string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&found))
	resp.Body.Close()
	require.Len(t, found.Lines, 1)
	require.Equal(t, struct{ Msg, Level, Node string }{"second line", "WARN", "n3"}, found.Lines[0])
	tail, err := http.Get("http://" + https[2] + "/logs/api/tail")
	require.NoError(t, err)
	defer tail.Body.Close()
	require.Equal(t, "text/event-stream", tail.Header.Get("Content-Type"))
	resp, err = http.Get("http://" + https[0] + "/logs/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "/logs/ is served only when asked for")

	// A normal start logs nothing at WARN or above. (Once nodes stop, the
	// others see a peer go away, and say so.)
	for i, p := range nodes {
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			require.NotContains(t, line, "[WARN]", "node %d:\n%s", i+1, p.stderr)
			require.NotContains(t, line, "[ERROR]", "node %d:\n%s", i+1, p.stderr)
		}
	}
	for i, p := range nodes {
		require.Equal(t, 0, p.stop(t), "node %d:\n%s", i+1, p.stderr)
	}
	for _, s := range []struct{ sub, file string }{{"", "app.log"}, {"streams/audit", "audit.log"}} {
		var want []byte
		for i, d := range dirs {
			got, err := os.ReadFile(filepath.Join(d, s.sub, s.file))
			require.NoError(t, err)
			if i == 0 {
				want = got
				continue
			}
			require.Equal(t, string(want), string(got), "%s differs on node %d", s.file, i+1)
		}
		switch s.file {
		case "app.log":
			require.Contains(t, string(want), `level=WARN node=n3 msg="second line"`)
		case "audit.log":
			require.Contains(t, string(want), `level=ERROR node=n1 msg=login user=ann tries=3`)
		}
	}
}

// TestExitOnSecondSignal: while the node closes, SIGHUP is ignored and the
// second SIGTERM or SIGINT exits at once: the first during the close if
// none began it (the HTTP server stopped), the next if one did.
func TestExitOnSecondSignal(t *testing.T) {
	for _, sig := range []os.Signal{syscall.SIGTERM, syscall.SIGINT} {
		for _, n := range []int{1, 2} {
			sigs := make(chan os.Signal, 3)
			sigs <- syscall.SIGHUP
			for range n {
				sigs <- sig
			}
			var stderr bytes.Buffer
			code := -1
			exitOnSecondSignal(sigs, n, &stderr, "n1", func(c int) { code = c })
			require.Equal(t, 1, code, "%v, n %d", sig, n)
			require.Contains(t, stderr.String(), "exiting now")
			require.Empty(t, sigs, "exited at the %d-th", n)
		}
	}
}

func TestKnownHost(t *testing.T) {
	hosts := []string{"logs.test", "ops.example:8080"}
	for host, want := range map[string]bool{
		"127.0.0.1:9000": true, "[::1]:9000": true, "10.1.2.3": true, "localhost:9000": true, "LOCALHOST": true,
		"logs.test": true, "logs.test:9000": true, "LOGS.test:1": true, "ops.example:8080": true,
		"logs.test.:9000": true, "localhost.:1": true, "[fe80::1%eth0]:9000": true, "[::1]": true,
		"ops.example:9090": false, "evil.example:9000": false, "localhost.evil.example": false, "": false, "127.0.0.1.evil.example": false,
	} {
		require.Equal(t, want, knownHost(host, hosts), host)
	}
}

// http_hosts, and viewer_hosts (its earlier name), are both read.
func TestHTTPHostsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.yaml")
	require.NoError(t, os.WriteFile(path, []byte("http_hosts: [logs.test]\nviewer_hosts: [old.test]\n"), 0o644))
	nf, err := readNodeFile(path)
	require.NoError(t, err)
	require.Equal(t, []string{"logs.test", "old.test"}, nf.hosts())
	require.True(t, knownHost("old.test:8080", nf.hosts()))
}

// TestSlowBodyDoesNotHoldAnswer: a GET /healthz whose body comes a byte
// at a time is answered at once, its connection closed after; net/http
// read the body the handler left before answering, for up to the
// server's ReadTimeout, and such requests held the slots the probes
// needed. A request without a body keeps its connection.
func TestSlowBodyDoesNotHoldAnswer(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: hostGuard(nil, ok), ReadTimeout: time.Minute}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	ask := func(req string) *http.Response {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = io.WriteString(c, req)
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err, "answered before the body came")
		return resp
	}
	resp := ask("GET /healthz HTTP/1.1\r\nHost: 1.2.3.4\r\nContent-Length: 200000\r\n\r\nx")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, resp.Close, "the connection is closed after")
	resp = ask("GET /healthz HTTP/1.1\r\nHost: 1.2.3.4\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, resp.Close)
	resp = ask("GET /healthz HTTP/1.1\r\nHost: 1.2.3.4\r\n\r\n")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.False(t, resp.Close, "no body: the connection stays")
}
