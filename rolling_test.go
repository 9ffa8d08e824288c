package logx

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// finish stops every node's writers (ENTRIES 0), waits until the nodes
// converge, stops them, and verifies their files (procCluster.verify).
func (c *procCluster) finish() (entries, acked int) {
	c.t.Helper()
	var nodes []int
	for i := range c.procs {
		if c.procs[i] == nil {
			continue
		}
		nodes = append(nodes, i)
		_, err := c.stdins[i].Write([]byte("stop\n"))
		require.NoError(c.t, err)
	}
	for _, i := range nodes {
		c.waitStatus(i, "writers done", func(s procStatus) bool { return s.done })
	}
	c.waitConverged()
	for _, i := range nodes {
		c.stop(i)
	}
	return c.verify(nodes...)
}

// term sends node i SIGTERM, as an operator stopping it does, and waits
// for a clean exit.
func (c *procCluster) term(i int) {
	c.t.Helper()
	require.NoError(c.t, c.procs[i].Process.Signal(syscall.SIGTERM))
	select {
	case err := <-c.exited[i]:
		c.procs[i] = nil
		require.NoError(c.t, err, "node n%d did not exit cleanly after SIGTERM", i+1)
	case <-time.After(60 * time.Second):
		c.dumpGoroutinesOf(i)
		c.t.Fatalf("node n%d did not exit after SIGTERM", i+1)
	}
}

// TestRollingRestart restarts each node of a 3-process cluster in turn
// (SIGTERM, then start on the same Dir) while every node's writers Append,
// as an operator rolling out a new version does. No acknowledged entry is
// lost, none is written twice, and the files end identical. It reports the
// Appends' latencies over the whole run: the longest is the longest write
// stall (the handover of a leader that stops), against a goal of
// 2 × ElectionTimeout (docs/guarantees.md).
func TestRollingRestart(t *testing.T) {
	t.Parallel() // waits more than it computes (parallelTests, logx_test.go)
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	c := newProcCluster(t, 3, 2, 0) // writers run until told to stop
	c.env = append(c.env, "LOGX_INTERVAL_MS=5", "LOGX_LAT="+c.path(0, "lat"))
	for i := range 3 {
		c.start(i, c.writers)
	}
	for i := range 3 {
		c.waitStatus(i, "progress", func(s procStatus) bool { return s.seq > 100 })
	}
	for r := range rounds {
		for i := range 3 {
			wasLeader := c.status(i).state == "Leader"
			before := c.status((i + 1) % 3).seq
			c.term(i)
			// The others go on while it is down.
			c.waitStatus((i+1)%3, "progress while a node is down", func(s procStatus) bool { return s.seq > before+300 })
			c.start(i, c.writers)
			c.waitStatus(i, "back", func(s procStatus) bool { return s.seq > before+600 })
			t.Logf("round %d: restarted n%d (leader: %v)", r+1, i+1, wasLeader)
		}
	}
	n, acked := c.finish()

	f, err := os.Open(c.path(0, "lat"))
	require.NoError(t, err)
	defer f.Close()
	var lat []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		us, err := strconv.ParseInt(sc.Text(), 10, 64)
		require.NoError(t, err)
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	require.NoError(t, sc.Err())
	require.Equal(t, acked, len(lat), "a latency for every acknowledged Append")
	slices.Sort(lat)
	p := func(q float64) time.Duration {
		return lat[min(len(lat)-1, int(q*float64(len(lat))))].Round(time.Millisecond)
	}
	t.Logf("rolling restart, %d rounds over 3 nodes: %d entries, %d acknowledged, 0 lost, 0 duplicates; Append latency p50 %v, p99 %v, p99.9 %v, longest %v (ElectionTimeout 300ms)",
		rounds, n, acked, p(0.5), p(0.99), p(0.999), lat[len(lat)-1].Round(time.Millisecond))
}
