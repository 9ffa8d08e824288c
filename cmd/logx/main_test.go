package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/logx-dev/logx"
	"github.com/stretchr/testify/require"
)

// cluster starts three nodes on 127.0.0.1 and returns them with their
// configs; they close when the test ends.
func cluster(t *testing.T) ([]*logx.Logx, []logx.Config) {
	t.Helper()
	return clusterWith(t, nil)
}

// clusterWith is cluster with a change to every node's config.
func clusterWith(t *testing.T, tweak func(*logx.Config)) ([]*logx.Logx, []logx.Config) {
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
			Dir: filepath.Join(base, fmt.Sprintf("n%d", i+1)), File: "app.log", MaxSize: 16 << 10,
			Level: logx.LevelDebug, ElectionTimeout: 300 * time.Millisecond, LogOutput: os.Stderr}
		if tweak != nil {
			tweak(&cfg)
		}
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
	return nodes, cfgs
}

// logSome logs n entries from every node with Append, levels cycling.
func logSome(t *testing.T, nodes []*logx.Logx, tag string, n int) {
	t.Helper()
	levels := []slog.Level{logx.LevelDebug, logx.LevelInfo, logx.LevelWarn, logx.LevelError}
	for k := 0; k < n; k++ {
		for i, lx := range nodes {
			_, err := lx.Append(context.Background(), levels[k%4], "cli entry", "tag", tag, "node", i, "k", k)
			require.NoError(t, err)
		}
	}
	for _, lx := range nodes {
		require.NoError(t, lx.Flush(context.Background()))
	}
}

// waitSeq waits until every node has written sequence number seq.
func waitSeq(t *testing.T, nodes []*logx.Logx, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, lx := range nodes {
		for lx.Stats().Seq < seq {
			require.True(t, time.Now().Before(deadline), "nodes did not reach %d", seq)
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestTailGrepVerify(t *testing.T) {
	nodes, cfgs := cluster(t)
	logSome(t, nodes, "a", 100)
	waitSeq(t, nodes, 300)
	dir := cfgs[0].Dir

	code, out, errs := runCmd(t, "", "tail", "-n", "5", dir)
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 5)
	require.True(t, strings.HasPrefix(lines[4], "seq=300 "), lines[4])

	// The last 40 lines are k=86 (one node) to k=99; ERROR is k%4 == 3.
	code, out, _ = runCmd(t, "", "tail", "-n", "40", "-level", "ERROR", dir)
	require.Equal(t, 0, code)
	require.Equal(t, 12, strings.Count(out, "level=ERROR"))
	require.NotContains(t, out, "level=INFO")

	code, out, errs = runCmd(t, "", "grep", "node=1 k=4", dir) // k=4 and 40-49
	require.Equal(t, 0, code, errs)
	require.Equal(t, 11, strings.Count(out, "\n"))
	// k=40-49 at WARN or above (k%4 is 2 or 3: 42, 43, 46, 47) on two nodes.
	code, out, _ = runCmd(t, "", "grep", "-E", "-level", "WARN", `node=[12] k=4[0-9]$`, dir)
	require.Equal(t, 0, code)
	require.Equal(t, 8, strings.Count(out, "\n"))
	code, _, _ = runCmd(t, "", "grep", "-since", "1m", "no such text", dir)
	require.Equal(t, 1, code)
	code, _, errs = runCmd(t, "", "grep", "-since", "yesterday", "x", dir)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "-since")

	// verify: identical, then one byte changed in a copy.
	for _, lx := range nodes {
		require.NoError(t, lx.Close())
	}
	code, out, errs = runCmd(t, "", "verify", cfgs[0].Dir, cfgs[1].Dir, cfgs[2].Dir)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "identical: 3 directories")
	bad, names := copyFlipped(t, cfgs[1].Dir)
	code, out, _ = runCmd(t, "", "verify", "-file", "app.log", cfgs[0].Dir, bad)
	require.Equal(t, 1, code)
	require.Contains(t, out, fmt.Sprintf("differ: %s", names[1]))
	require.Contains(t, out, "at byte 100")
}

// copyFlipped copies the log files of dir (plain ones) to a new directory,
// with byte 100 of the second file flipped, and returns it and the names.
func copyFlipped(t *testing.T, dir string) (string, []string) {
	t.Helper()
	bad := t.TempDir()
	names, err := logx.LogFiles(dir, "app.log")
	require.NoError(t, err)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		require.NoError(t, err)
		if n == names[1] {
			b[100] ^= 1
		}
		require.NoError(t, os.WriteFile(filepath.Join(bad, n), b, 0o644))
	}
	return bad, names
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTailFollow(t *testing.T) {
	nodes, cfgs := cluster(t)
	logSome(t, nodes, "a", 4)
	waitSeq(t, nodes, 12)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"tail", "-f", "-n", "1", cfgs[1].Dir}, nil, &out, &errb) }()
	logSome(t, nodes, "b", 100) // rotates files under the follower
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "seq=312 ") {
		require.True(t, time.Now().Before(deadline), "tail -f did not print seq 312: %s", errb.String())
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	require.Equal(t, 0, <-done)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, l := range lines {
		require.True(t, strings.HasPrefix(l, fmt.Sprintf("seq=%d ", 12+i)), "line %d: %s", i, l)
	}
}

func TestStatusAndForward(t *testing.T) {
	nodes, cfgs := cluster(t)
	code, out, errs := runCmd(t, "", "status", cfgs[2].Addr)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, `"node_id": "n3"`)

	// Forward 500 lines through a node (any node: followers pass them on).
	var in strings.Builder
	for k := 0; k < 500; k++ {
		fmt.Fprintf(&in, "forwarded line %d with \"quotes\" and\ttab\n", k)
	}
	code, _, errs = runCmd(t, in.String(), "forward", "-node", "fw", "-level", "WARN", cfgs[1].Addr)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "500 lines committed")
	waitSeq(t, nodes, 500)
	code, out, _ = runCmd(t, "", "grep", "-level", "WARN", "node=fw", cfgs[0].Dir)
	require.Equal(t, 0, code)
	got := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, got, 500)
	for k, l := range got {
		require.Contains(t, l, fmt.Sprintf(`msg="forwarded line %d with \"quotes\" and\ttab"`, k))
	}

	// Clear errors for a bad or unreachable address.
	code, _, errs = runCmd(t, "", "status", "not-an-address")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "not-an-address")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	ln.Close()
	code, _, errs = runCmd(t, "some line\n", "forward", "-timeout", "2s", dead)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "no node answered")
	code, _, errs = runCmd(t, "", "bogus")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "unknown command")
}

// TestTLSCommands: certs writes a test CA and certificates; a cluster
// configured with those files answers status and forward given -ca, -cert
// and -key, and nothing without them.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	code, _, errs := runCmd(t, "", "certs", "-out", dir, "-host", "127.0.0.1", "n1", "n2", "n3", "client")
	require.Equal(t, 0, code, errs)
	for _, f := range []string{"ca.pem", "ca-key.pem", "n1.pem", "n1-key.pem", "client.pem", "client-key.pem"} {
		require.FileExists(t, filepath.Join(dir, f))
	}
	nodes, cfgs := clusterWith(t, func(cfg *logx.Config) {
		cfg.TLSCAFile = filepath.Join(dir, "ca.pem")
		cfg.TLSCertFile = filepath.Join(dir, cfg.NodeID+".pem")
		cfg.TLSKeyFile = filepath.Join(dir, cfg.NodeID+"-key.pem")
	})
	creds := []string{"-ca", filepath.Join(dir, "ca.pem"), "-cert", filepath.Join(dir, "client.pem"), "-key", filepath.Join(dir, "client-key.pem")}

	code, out, errs := runCmd(t, "", append(append([]string{"status"}, creds...), cfgs[0].Addr)...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, `"node_id": "n1"`)
	code, _, _ = runCmd(t, "", "status", cfgs[0].Addr)
	require.Equal(t, 2, code, "no certificate: refused")
	code, _, errs = runCmd(t, "", "status", "-ca", filepath.Join(dir, "ca.pem"), cfgs[0].Addr)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "go together")

	code, _, errs = runCmd(t, "one\ntwo\n", append(append([]string{"forward", "-node", "tls"}, creds...), cfgs[1].Addr)...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "2 lines committed")
	waitSeq(t, nodes, 2)
	code, _, _ = runCmd(t, "three\n", "forward", "-timeout", "2s", cfgs[1].Addr)
	require.Equal(t, 2, code, "no certificate: nothing forwarded")

	// grep -addr over TLS, with a certificate; refused without one.
	code, _, errs = runCmd(t, "", append(append([]string{"grep", "-addr", cfgs[2].Addr}, creds...), "three")...)
	require.Equal(t, 1, code, "nothing matches yet: %s", errs)
	code, out, errs = runCmd(t, "", append(append([]string{"grep", "-c", "-addr", cfgs[2].Addr}, creds...), "msg=")...)
	require.Equal(t, 0, code, errs)
	require.Equal(t, "2\n", out)
	code, _, _ = runCmd(t, "", "grep", "-addr", cfgs[2].Addr, "msg=")
	require.Equal(t, 2, code, "no certificate: nothing read")

	// The cluster level, read and set through each node in turn, two of
	// them followers: each shows the level it just set, as it applied it
	// before the command printed it. A level above ERROR is refused.
	code, out, errs = runCmd(t, "", append(append([]string{"level"}, creds...), cfgs[0].Addr)...)
	require.Equal(t, 0, code, errs)
	require.Equal(t, "stream default on "+cfgs[0].Addr+": level DEBUG, cluster level none\n", out)
	for i, l := range []string{"WARN", "ERROR", "INFO"} {
		code, out, errs = runCmd(t, "", append(append([]string{"level"}, creds...), cfgs[i].Addr, strings.ToLower(l))...)
		require.Equal(t, 0, code, errs)
		require.Equal(t, fmt.Sprintf("stream default on %s: level %s, cluster level %s\n", cfgs[i].Addr, l, l), out)
	}
	require.Eventually(t, func() bool {
		for _, lx := range nodes {
			if lx.Level() != logx.LevelInfo {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "every node takes the cluster level")
	code, _, errs = runCmd(t, "", append(append([]string{"level"}, creds...), cfgs[0].Addr, "error+1")...)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "above ERROR")
	code, _, _ = runCmd(t, "", "level", cfgs[0].Addr, "warn")
	require.Equal(t, 2, code, "no certificate: no level set")
	require.Equal(t, logx.LevelInfo, nodes[0].Level())

	code, _, errs = runCmd(t, "", "certs", "-out", dir, "../escape")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "not a usable name")
}

// Every command takes -stream; verify checks every stream; grep -all
// merges the streams by time; status -all lists every stream.
func TestStreamsCLI(t *testing.T) {
	nodes, cfgs := clusterWith(t, func(cfg *logx.Config) {
		cfg.Streams = []logx.StreamConfig{{Name: "audit", Format: logx.FormatJSON}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	audit, err := nodes[1].Stream("audit")
	require.NoError(t, err)
	for k := range 5 {
		_, err := nodes[0].Append(ctx, logx.LevelInfo, "both default", "k", k)
		require.NoError(t, err)
		_, err = audit.Append(ctx, logx.LevelWarn, "both audit", "k", k)
		require.NoError(t, err)
	}
	code, _, errs := runCmd(t, "a\nb\n", "forward", "-stream", "audit", "-node", "cli", cfgs[2].Addr)
	require.Equal(t, 0, code, errs)
	for _, lx := range nodes {
		s, err := lx.Stream("audit")
		require.NoError(t, err)
		require.NoError(t, s.Flush(ctx))
		require.NoError(t, lx.Flush(ctx))
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, lx := range nodes {
		s, _ := lx.Stream("audit")
		for (s.Stats().Seq < 7 || lx.Stats().Seq < 5) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}

	code, out, errs := runCmd(t, "", "verify", cfgs[0].Dir, cfgs[1].Dir, cfgs[2].Dir)
	require.Equal(t, 0, code, errs+out)
	require.Contains(t, out, "== stream default")
	require.Contains(t, out, "== stream audit")
	require.Equal(t, 2, strings.Count(out, "identical: 3 directories"), out)
	code, out, _ = runCmd(t, "", "verify", "-stream", "audit", cfgs[0].Dir, cfgs[2].Dir)
	require.Equal(t, 0, code)
	require.Contains(t, out, "audit.log")
	require.NotContains(t, out, "app.log")
	// A stream one directory lacks (a node that never opened it): differ,
	// whichever directory comes first.
	lone := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(lone, "streams", "audit"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(lone, "app.log"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(lone, "streams", "audit", "audit.log"), nil, 0o644))
	bare := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bare, "app.log"), nil, 0o644))
	for _, order := range [][]string{{bare, lone}, {lone, bare}} {
		code, out, _ = runCmd(t, "", append([]string{"verify"}, order...)...)
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "has stream audit")
	}

	code, out, errs = runCmd(t, "", "grep", "-all", "both", cfgs[2].Dir)
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 10)
	var d, a int
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "default: ") && strings.Contains(l, "both default"):
			d++
		case strings.HasPrefix(l, "audit: {") && strings.Contains(l, "both audit"):
			a++
		default:
			t.Fatalf("unexpected line %q", l)
		}
	}
	require.Equal(t, 5, d)
	require.Equal(t, 5, a)
	// Appended alternately, one after the other's commit: merged by time,
	// the streams alternate too.
	for i := 1; i < len(lines); i++ {
		require.NotEqual(t, lines[i][:5], lines[i-1][:5], "lines %d and %d: %q, %q", i-1, i, lines[i-1], lines[i])
	}
	// -limit is the whole output's, not each stream's: the first 3 of
	// the merged 10 (it printed 3 of each stream, 6).
	code, out, errs = runCmd(t, "", "grep", "-all", "-limit", "3", "both", cfgs[2].Dir)
	require.Equal(t, 0, code, errs)
	require.Equal(t, strings.Join(lines[:3], "\n")+"\n", out)
	code, _, errs = runCmd(t, "", "grep", "-all", "-limit", "3", "-C", "1", "both", cfgs[2].Dir)
	require.Equal(t, 2, code, "context lines would part from their matches at the limit: %s", errs)
	code, out, _ = runCmd(t, "", "grep", "-stream", "audit", "cli", cfgs[0].Dir)
	require.Equal(t, 0, code)
	require.Equal(t, 2, strings.Count(out, "\n"), out)
	code, _, errs = runCmd(t, "", "grep", "-all", "-stream", "audit", "x", cfgs[0].Dir)
	require.Equal(t, 2, code, errs)

	code, out, _ = runCmd(t, "", "tail", "-stream", "audit", "-n", "2", cfgs[1].Dir)
	require.Equal(t, 0, code)
	require.Equal(t, 2, strings.Count(out, "\n"))
	require.Contains(t, out, `"msg":"b"`)

	code, out, errs = runCmd(t, "", "status", "-all", cfgs[0].Addr)
	require.Equal(t, 0, code, errs)
	var all []logx.Stats
	require.NoError(t, json.Unmarshal([]byte(out), &all))
	require.Len(t, all, 2)
	require.Equal(t, logx.DefaultStream, all[0].Stream)
	require.Equal(t, "audit", all[1].Stream)
	require.Equal(t, "audit.log", all[1].File)
	require.NotEmpty(t, all[1].Leader)
	code, out, _ = runCmd(t, "", "status", "-stream", "audit", cfgs[0].Addr)
	require.Equal(t, 0, code)
	require.Contains(t, out, `"stream": "audit"`)
	code, _, errs = runCmd(t, "", "status", "-stream", "nope", cfgs[0].Addr)
	require.Equal(t, 2, code)
	require.Contains(t, errs, `stream "nope"`)
}

// logx truncate sets the truncation point through any node: every node
// then holds its lines from the file that holds the point on. Bad
// sequence numbers are refused with a clear error.
func TestTruncateCLI(t *testing.T) {
	nodes, cfgs := clusterWith(t, func(cfg *logx.Config) { cfg.MaxSize = 4 << 10 })
	ctx := t.Context()
	for k := range 200 {
		_, err := nodes[k%3].Append(ctx, logx.LevelInfo, "truncate me", "k", k)
		require.NoError(t, err)
	}
	for _, lx := range nodes {
		require.NoError(t, lx.Flush(ctx))
	}
	code, out, errs := runCmd(t, "", "truncate", cfgs[1].Addr, "100")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "truncated before 100")
	require.Equal(t, uint64(100), nodes[1].Stats().TruncatedBefore, "applied on the node asked before the command returned")
	for i, lx := range nodes {
		require.Eventually(t, func() bool {
			code, out, _ := runCmd(t, "", "tail", "-n", "100000", cfgs[i].Dir)
			first := strings.SplitN(out, " ", 2)[0]
			var seq uint64
			_, err := fmt.Sscanf(first, "seq=%d", &seq)
			return code == 0 && err == nil && seq > 1 && seq <= 100 && lx.Stats().TruncatedBefore == 100
		}, 10*time.Second, 20*time.Millisecond, "node %d should hold its lines from the file that holds 100 on", i+1)
	}

	code, out, _ = runCmd(t, "", "truncate", cfgs[0].Addr, "50")
	require.Equal(t, 0, code)
	require.Contains(t, out, "truncated before 100 (it was already past 50")
	code, _, errs = runCmd(t, "", "truncate", cfgs[0].Addr, "abc")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "not a sequence number")
	code, _, errs = runCmd(t, "", "truncate", cfgs[0].Addr, "99999999")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "beyond the end of the log")
}

// logx retention sets a cluster's retention through any node: every node
// retires what the limits leave out; a limit a Config could not hold is
// refused.
func TestRetentionCLI(t *testing.T) {
	nodes, cfgs := clusterWith(t, func(cfg *logx.Config) { cfg.MaxSize = 4 << 10 })
	ctx := t.Context()
	for k := range 200 {
		_, err := nodes[k%3].Append(ctx, logx.LevelInfo, "retain me", "k", k)
		require.NoError(t, err)
	}
	for _, lx := range nodes {
		require.NoError(t, lx.Flush(ctx))
	}
	code, _, errs := runCmd(t, "", "retention", "-max-files", "1", cfgs[2].Addr)
	require.Equal(t, 2, code, "both limits, always")
	require.Contains(t, errs, "give both")
	code, out, errs := runCmd(t, "", "retention", "-max-files", "1", "-max-age", "0", cfgs[2].Addr)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "retention set to max-files 1")
	for i := range nodes {
		require.Eventually(t, func() bool {
			names, err := logx.LogFiles(cfgs[i].Dir, cfgs[i].File)
			return err == nil && len(names) == 2
		}, 10*time.Second, 20*time.Millisecond, "node %d: one rotated file and the active one", i+1)
	}
	code, _, errs = runCmd(t, "", "retention", "-max-files", "0", "-max-age", "1s", cfgs[0].Addr)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "less than")
	code, _, _ = runCmd(t, "", "retention", "-max-files", "1", "-max-age", "0")
	require.Equal(t, 2, code, "no address")
}

// grep's -A/-B/-C, -c, -r, -limit and -json, on a node's files.
func TestGrepCLIOptions(t *testing.T) {
	nodes, cfgs := cluster(t)
	ctx := t.Context()
	for k := range 20 {
		msg := fmt.Sprintf("hay %02d", k)
		if k == 3 || k == 4 || k == 10 || k == 19 {
			msg = fmt.Sprintf("needle %02d", k)
		}
		_, err := nodes[k%3].Append(ctx, logx.LevelInfo, msg)
		require.NoError(t, err)
	}
	waitSeq(t, nodes, 20)
	dir := cfgs[1].Dir
	msgs := func(out string) []string {
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "--" {
				got = append(got, l)
				continue
			}
			_, m, _ := strings.Cut(l, `msg="`)
			got = append(got, strings.TrimSuffix(m, `"`))
		}
		return got
	}
	code, out, errs := runCmd(t, "", "grep", "-C", "1", "needle", dir)
	require.Equal(t, 0, code, errs)
	require.Equal(t, []string{"hay 02", "needle 03", "needle 04", "hay 05", "--", "hay 09", "needle 10", "hay 11", "--", "hay 18", "needle 19"}, msgs(out))
	// The same through the node's address, for operators without a shell
	// on it.
	code, remote, errs := runCmd(t, "", "grep", "-C", "1", "-addr", cfgs[1].Addr, "needle")
	require.Equal(t, 0, code, errs)
	require.Equal(t, out, remote)
	code, _, errs = runCmd(t, "", "grep", "-addr", cfgs[1].Addr, "needle", dir)
	require.Equal(t, 2, code, "-addr takes the pattern only")
	require.Contains(t, errs, "usage")
	code, out, _ = runCmd(t, "", "grep", "-c", "needle", dir)
	require.Equal(t, 0, code)
	require.Equal(t, "4\n", out)
	code, out, _ = runCmd(t, "", "grep", "-r", "-limit", "2", "needle", dir)
	require.Equal(t, 0, code)
	require.Equal(t, []string{"needle 19", "needle 10"}, msgs(out))
	code, out, _ = runCmd(t, "", "grep", "-json", "-B", "1", "-limit", "1", "-since", "1h", "needle", dir)
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	var first, second struct {
		Seq     uint64
		Level   string
		Context bool
		Line    string
		Time    time.Time
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	require.Equal(t, uint64(3), first.Seq)
	require.True(t, first.Context)
	require.Equal(t, uint64(4), second.Seq)
	require.False(t, second.Context)
	require.Equal(t, "INFO", second.Level)
	require.Contains(t, second.Line, `msg="needle 03"`)
	require.WithinDuration(t, time.Now(), second.Time, time.Minute)
	code, _, _ = runCmd(t, "", "grep", "-c", "no such thing", dir)
	require.Equal(t, 1, code)
	code, _, errs = runCmd(t, "", "grep", "-r", "-A", "1", "needle", dir)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "not with -r")
}

// TestCompressedCLI: tail, grep and verify read nodes that keep their
// rotated files compressed as they read plain ones.
func TestCompressedCLI(t *testing.T) {
	nodes, cfgs := clusterWith(t, func(c *logx.Config) { c.Compress = c.NodeID != "n3" })
	logSome(t, nodes, "z", 150)
	waitSeq(t, nodes, 450)
	for _, lx := range nodes {
		require.NoError(t, lx.Close())
	}
	// Close may stop a compression half-way, leaving that file plain:
	// start the compressing nodes again, alone, until all is compressed.
	for i := range 2 {
		lx, err := logx.New(cfgs[i])
		require.NoError(t, err)
		deadline := time.Now().Add(30 * time.Second)
		for {
			names, err := logx.LogFiles(cfgs[i].Dir, "app.log")
			require.NoError(t, err)
			plain := 0
			for _, n := range names[:len(names)-1] {
				if !strings.HasSuffix(n, ".zst") {
					plain++
				}
			}
			if plain == 0 && len(names) > 3 {
				break
			}
			require.True(t, time.Now().Before(deadline), "not compressed: %v", names)
			time.Sleep(10 * time.Millisecond)
		}
		require.NoError(t, lx.Close())
	}
	for _, args := range [][]string{{"tail", "-n", "400"}, {"grep", "node=1 k=4"}, {"grep", "-r", "-limit", "7", "cli entry"},
		{"grep", "-C", "2", "-E", `node=2 k=1[0-9]$`}} {
		code, want, errs := runCmd(t, "", append(args, cfgs[2].Dir)...)
		require.Equal(t, 0, code, errs)
		code, got, errs := runCmd(t, "", append(args, cfgs[0].Dir)...)
		require.Equal(t, 0, code, errs)
		require.Equal(t, want, got, "%v", args)
		require.NotEmpty(t, got)
	}
	code, out, errs := runCmd(t, "", "verify", cfgs[0].Dir, cfgs[1].Dir, cfgs[2].Dir)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "identical: 3 directories")
	require.Contains(t, out, "(compressed in 2 of 3)")

	// A compressed file and a plain one that differ at byte 100.
	bad, names := copyFlipped(t, cfgs[2].Dir)
	code, out, _ = runCmd(t, "", "verify", "-file", "app.log", cfgs[0].Dir, bad)
	require.Equal(t, 1, code)
	require.Contains(t, out, fmt.Sprintf("differ: %s", names[1]))
	require.Contains(t, out, "at byte 100")

	// A damaged compressed file is an error that names it.
	zn, err := logx.LogFiles(cfgs[1].Dir, "app.log")
	require.NoError(t, err)
	path := filepath.Join(cfgs[1].Dir, zn[0])
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)-1] ^= 0xff // the seek table's magic
	require.NoError(t, os.WriteFile(path, b, 0o644))
	code, _, errs = runCmd(t, "", "verify", cfgs[0].Dir, cfgs[1].Dir)
	require.NotEqual(t, 0, code)
	require.Contains(t, errs, zn[0])
	require.Contains(t, errs, "corrupt")
}

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain line\twith tab":  "plain line\twith tab",
		"é日本 ok":                "é日本 ok",
		"\x1b]0;pwned\x07 x":    `\x1b]0;pwned\x07 x`,
		"a\rb\nc\x7fd":          `a\x0db\x0ac\x7fd`,
		"c1 \u009b31m csi":      `c1 \u009b31m csi`,
		"\u0080\u009f\u00a0end": `\u0080\u009f` + "\u00a0end",
		"\xc2":                  `\xc2`, // not UTF-8
		"8-bit \x9b31m csi":     `8-bit \x9b31m csi`,
	} {
		require.Equal(t, want, termSafe(in), "%q", in)
		require.Equal(t, want, string(appendTermSafe(nil, []byte(in))), "%q", in)
	}
}

// Terminal controls in a line (a damaged file, a compromised peer's grep
// answer) reach the terminal escaped; as JSON (grep -json) too, where
// encoding/json leaves DEL and C1 characters (U+009B is a CSI) as they
// are.
func TestTailEscapesControls(t *testing.T) {
	dir := t.TempDir()
	line := "seq=1 time=2026-12-06T00:00:00.000000Z level=INFO node=n1 msg=\x1b]0;pwned\x07\x1b[2J\u009b2J\x7f user=\u202eerdna\u202c\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "app.log"), []byte(line), 0o644))
	for _, args := range [][]string{{"tail", dir}, {"grep", "pwned", dir}, {"grep", "-json", "pwned", dir}} {
		code, out, errs := runCmd(t, "", args...)
		require.Equal(t, 0, code, errs)
		require.False(t, hasTermControl([]byte(strings.TrimSuffix(out, "\n"))), "%v: %q", args, out)
		if args[1] == "-json" {
			var v struct{ Line string }
			require.NoError(t, json.Unmarshal([]byte(out), &v))
			require.Equal(t, strings.TrimSuffix(line, "\n"), v.Line, "the same line, escaped only for the terminal")
			continue
		}
		require.Contains(t, out, `msg=\x1b]0;pwned\x07\x1b[2J\u009b2J\x7f user=\u202eerdna\u202c`, args)
	}
}

// jsonTermSafe leaves the JSON value as it was and no terminal control in
// it, whatever the string (random runes, C0, DEL and C1 among them).
func TestJSONTermSafe(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pool := []rune{'a', 'z', ' ', '\t', '\n', 0x1b, 0x7f, 0x80, 0x9b, 0x9f, 0xa0, 'é', '日', '"', '\\', '<', 0x2028, 0xfffd,
		0x202e, 0x2066, 0x2069, 0x200f, 0x061c, 0x200b, 0xfeff, 0x200d, 0x2060, 0x2067}
	for range 2000 {
		rs := make([]rune, rng.IntN(12))
		for i := range rs {
			rs[i] = pool[rng.IntN(len(pool))]
		}
		in := string(rs)
		b, err := json.Marshal(map[string]string{"line": in})
		require.NoError(t, err)
		safe := jsonTermSafe(b)
		require.False(t, hasTermControl(safe), "%q -> %q", in, safe)
		for _, r := range string(safe) {
			shown := r == '\t' || unicode.IsGraphic(r) || r == 0x200d // a joiner stays
			require.True(t, shown, "%q -> %q holds %U", in, safe, r)
		}
		var back map[string]string
		require.NoError(t, json.Unmarshal(safe, &back), "%q", safe)
		require.Equal(t, in, back["line"])
	}
}

// Every rune, in JSON and in text: what jsonTermSafe writes decodes to
// the same value, and neither leaves a rune that changes what a terminal
// shows without being shown (by Unicode's tables: a control but tab, a
// format character, a line or paragraph separator, another default
// ignorable, a variation selector; but the zero width joiners, the emoji
// and text presentation selectors and the Mongolian free variation
// selectors), nor a byte that is not UTF-8. (Runes past U+FFFF were written
// as five hex digits, which JSON reads as another rune and a digit.)
func TestTermSafeEveryRune(t *testing.T) {
	unsafe := func(r rune) bool {
		switch r {
		case '\t', 0x200c, 0x200d, 0xfe0e, 0xfe0f, 0x180b, 0x180c, 0x180d, 0x180f:
			return false
		case 0x2028, 0x2029, 0x034f, 0x115f, 0x1160, 0x3164, 0xffa0, 0x17b4, 0x17b5, 0xe0100, 0xe01ef, 0xfe00:
			return true
		}
		return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
	}
	check := func(what string, out []byte) {
		t.Helper()
		require.True(t, utf8.Valid(out), "%s: not UTF-8", what)
		for _, r := range string(out) {
			require.False(t, unsafe(r), "%s holds %U", what, r)
		}
	}
	var rs []rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		if rs = append(rs, r); len(rs) == 4096 || r == unicode.MaxRune {
			in := string(rs) + "\xff\x9b" // and bytes that are not UTF-8
			b, err := json.Marshal(map[string]string{"line": in})
			require.NoError(t, err)
			safe := jsonTermSafe(b)
			check(fmt.Sprintf("JSON of %U..%U", rs[0], r), safe)
			var back map[string]string
			require.NoError(t, json.Unmarshal(safe, &back))
			require.Equal(t, string(rs)+"\ufffd\ufffd", back["line"], "%U..%U", rs[0], r) // json.Marshal's replacements
			check(fmt.Sprintf("text of %U..%U", rs[0], r), appendTermSafe(nil, []byte(in)))
			rs = rs[:0]
		}
	}
	require.Equal(t, `a\U000e0001b\x9b`, termSafe("a\U000e0001b\x9b"))
}

// logx node's stderr (termSafeWriter) escapes what its lines quote, a
// peer's error text among them, and keeps its newlines.
func TestTermSafeWriter(t *testing.T) {
	var b strings.Builder
	w := termSafeWriter{&b}
	in := "logx: removing n2: peer says \x1b]0;pwned\x07\u202e\nsecond line\n"
	n, err := w.Write([]byte(in))
	require.NoError(t, err)
	require.Equal(t, len(in), n)
	require.Equal(t, "logx: removing n2: peer says \\x1b]0;pwned\\x07\\u202e\nsecond line\n", b.String())
}

// logx tail skips a line that does not parse and goes on; an active file
// whose start cannot be known (its first line damaged, nothing before it)
// is an error, never a loop.
func TestTailSkipsBadLine(t *testing.T) {
	dir := t.TempDir()
	line := func(seq int) string {
		return fmt.Sprintf("seq=%d time=2026-12-06T00:00:00.000000Z level=INFO node=n1 msg=m%d\n", seq, seq)
	}
	body := line(1) + "#garbage\n" + line(3) + line(4)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "app.log"), []byte(body), 0o644))
	code, out, errs := runCmd(t, "", "tail", "-n", "10", dir)
	require.Equal(t, 0, code, errs)
	require.Equal(t, line(1)+line(3)+line(4), out)
	require.Contains(t, errs, "skipping")

	// A damaged last line: -n counts from the last line that parses.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "app.log"), []byte(line(1)+line(2)+line(3)+"#garbage\n"), 0o644))
	code, out, errs = runCmd(t, "", "tail", "-n", "2", dir)
	require.Equal(t, 0, code, errs)
	require.Equal(t, line(2)+line(3), out)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "app.log"), []byte("#"+body[1:]), 0o644))
	done := make(chan struct{})
	go func() {
		defer close(done)
		code, _, errs = runCmd(t, "", "tail", "-f", dir)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("logx tail did not end")
	}
	require.Equal(t, 2, code)
	require.Contains(t, errs, "says where it starts")
}
