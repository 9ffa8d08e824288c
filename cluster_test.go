package logx

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCluster is n nodes in this process over real TCP on 127.0.0.1.
type testCluster struct {
	t     testing.TB
	cfgs  []Config
	seams []seams // the nodes' test hooks, by index (missing: none)
	nodes []*Logx // nil while a node is down
}

// freeAddrs reserves n loopback addresses.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for i := 0; i < n; i++ {
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

// testConfig is a node config with short timeouts for tests.
func testConfig(t testing.TB, id int, addrs []string, dir string) Config {
	return Config{
		NodeID:          fmt.Sprintf("n%d", id+1),
		Addr:            addrs[id],
		Peers:           addrs,
		Dir:             dir,
		File:            "app.log",
		Level:           LevelDebug,
		ElectionTimeout: 300 * time.Millisecond,
		CloseTimeout:    10 * time.Second,
		LogOutput:       testWriter{t},
	}
}

// testWriter sends diagnostics to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func newTestCluster(t testing.TB, n int, tweak func(*Config)) *testCluster {
	t.Helper()
	return newTestClusterSeams(t, n, func(cfg *Config, _ *seams) {
		if tweak != nil {
			tweak(cfg)
		}
	})
}

// newTestClusterSeams is newTestCluster whose setup also sets each node's
// test hooks.
func newTestClusterSeams(t testing.TB, n int, setup func(*Config, *seams)) *testCluster {
	t.Helper()
	c := startTestCluster(t, n, setup)
	c.waitReady()
	return c
}

// startTestCluster is newTestClusterSeams without waiting for every
// stream to be ready; the nodes close when the test ends.
func startTestCluster(t testing.TB, n int, setup func(*Config, *seams)) *testCluster {
	t.Helper()
	addrs := freeAddrs(t, n)
	base := t.TempDir()
	c := &testCluster{t: t}
	for i := 0; i < n; i++ {
		cfg := testConfig(t, i, addrs, filepath.Join(base, fmt.Sprintf("n%d", i+1)))
		var sm seams
		setup(&cfg, &sm)
		c.cfgs = append(c.cfgs, cfg)
		c.seams = append(c.seams, sm)
		c.nodes = append(c.nodes, nil)
	}
	for i := range c.cfgs {
		c.start(i)
	}
	t.Cleanup(c.closeAll)
	return c
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	var sm seams
	if i < len(c.seams) {
		sm = c.seams[i]
	}
	lx, err := newNode(c.cfgs[i], sm)
	require.NoError(c.t, err)
	c.nodes[i] = lx
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	require.NoError(c.t, c.nodes[i].Close())
	c.nodes[i] = nil
}

func (c *testCluster) closeAll() {
	for i, lx := range c.nodes {
		if lx != nil {
			if err := lx.Close(); err != nil {
				c.t.Logf("closing node %d: %v", i+1, err)
			}
			c.nodes[i] = nil
		}
	}
}

func (c *testCluster) waitReady() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, lx := range c.nodes {
		if lx != nil {
			require.NoError(c.t, lx.WaitReady(ctx))
		}
	}
}

func (c *testCluster) flushAll() {
	c.t.Helper()
	c.flushAllLosing(false)
}

// flushAllLosing flushes every running node; with lost, a Flush may report
// entries the test made fail (ErrEntriesLost) and is then made again.
func (c *testCluster) flushAllLosing(lost bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, lx := range c.nodes {
		if lx != nil {
			err := lx.Flush(ctx)
			if lost && errors.Is(err, ErrEntriesLost) {
				err = lx.Flush(ctx)
			}
			require.NoError(c.t, err)
		}
	}
}

// waitSameSeq waits until every running node has written the same last
// sequence number, at least min, and returns it.
func (c *testCluster) waitSameSeq(min uint64) uint64 {
	c.t.Helper()
	var seqs []uint64
	ok := waitFor(60*time.Second, func() bool {
		seqs = seqs[:0]
		for _, lx := range c.nodes {
			if lx != nil {
				seqs = append(seqs, lx.fsm.seq.Load())
			}
		}
		for _, s := range seqs {
			if s != seqs[0] || s < min {
				return false
			}
		}
		return true
	})
	require.True(c.t, ok, "nodes did not converge: sequence numbers %v, want >= %d", seqs, min)
	return seqs[0]
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fileHashes returns name → sha256 of every log file of a node directory.
func fileHashes(t testing.TB, dir, name string) map[string]string {
	t.Helper()
	names, err := LogFiles(dir, name)
	require.NoError(t, err)
	out := map[string]string{}
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		require.NoError(t, err)
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		require.NoError(t, err)
		out[n] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// requireIdentical checks that every given node directory holds the same
// file names with the same bytes.
func requireIdentical(t testing.TB, dirs []string, name string) map[string]string {
	t.Helper()
	first := fileHashes(t, dirs[0], name)
	require.NotEmpty(t, first)
	for _, d := range dirs[1:] {
		require.Equal(t, first, fileHashes(t, d, name), "files of %s differ from %s", d, dirs[0])
	}
	return first
}

func (c *testCluster) dirs() []string {
	var d []string
	for _, cfg := range c.cfgs {
		d = append(d, cfg.Dir)
	}
	return d
}

// readLines returns every line of a node's log files in order.
func readLines(t testing.TB, dir, name string) [][]byte {
	t.Helper()
	names, err := LogFiles(dir, name)
	require.NoError(t, err)
	return readLinesFiles(t, dir, names)
}

// readLinesFiles returns every line of the named files of dir, in order.
func readLinesFiles(t testing.TB, dir string, names []string) [][]byte {
	t.Helper()
	var lines [][]byte
	for _, n := range names {
		f, err := OpenLogFile(filepath.Join(dir, n))
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
		require.NoError(t, sc.Err())
		f.Close()
	}
	return lines
}

// Compression is each node's own choice: a cluster where one node sends
// plain batches and the others compressed ones writes the same files, with
// every entry once.
// logFromEveryNode logs perNode entries on every node, async, waits until
// every node has them all, and checks that the files are identical and
// hold each entry once.
func (c *testCluster) logFromEveryNode(perNode int) {
	c.t.Helper()
	for i, lx := range c.nodes {
		for k := range perNode {
			lx.Info("request served for a customer", "node", i, "k", k)
		}
	}
	c.flushAll()
	c.waitSameSeq(uint64(len(c.nodes) * perNode))
	requireIdentical(c.t, c.dirs(), "app.log")
	lines := readLines(c.t, c.dirs()[0], "app.log")
	require.Len(c.t, lines, len(c.nodes)*perNode)
	requireUnique(c.t, lines, "node", "k")
}

func TestMixedCompression(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.DisableCompression = cfg.NodeID == "n2" })
	c.logFromEveryNode(3000)
	for _, lx := range c.nodes {
		st := lx.Stats()
		require.Zero(t, st.Duplicates)
		require.NotZero(t, st.RecordBytes)
		if lx.cfg.DisableCompression {
			require.Equal(t, st.RecordBytes, st.BatchBytes, "n2 sends plain batches")
		} else {
			require.Less(t, st.BatchBytes, st.RecordBytes/2, "%s compresses", lx.cfg.NodeID)
		}
	}
}
