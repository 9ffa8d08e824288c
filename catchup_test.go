package logx

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// logAppend logs n entries with Append from every running node.
func (c *testCluster) logAppend(tag string, n int) {
	c.t.Helper()
	var wg sync.WaitGroup
	for i, lx := range c.nodes {
		if lx == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < n; k++ {
				if _, err := lx.Append(context.Background(), LevelInfo, "catch-up entry", "tag", tag, "node", i, "k", k); err != nil {
					c.t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// snapshotAll makes every running node take a Raft snapshot, so Raft
// compacts its log down to TrailingLogs entries.
func (c *testCluster) snapshotAll() {
	c.t.Helper()
	for _, lx := range c.nodes {
		if lx != nil {
			require.NoError(c.t, lx.raft.Snapshot().Error())
		}
	}
}

func catchUpCluster(t *testing.T) *testCluster {
	return newTestCluster(t, 3, func(cfg *Config) {
		cfg.MaxSize = 16 << 10
		cfg.TrailingLogs = 8
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
		cfg.walSegmentSize = 16 << 10   // so that compaction drops segments
	})
}

// TestCatchUpAfterCompaction: a node that was down while the others logged
// and compacted their Raft logs past its position catches up by copying
// file tails from a peer, and ends byte-identical.
func TestCatchUpAfterCompaction(t *testing.T) {
	c := catchUpCluster(t)
	c.logAppend("before", 100)
	c.stop(2)
	c.logAppend("while-down", 300)
	c.snapshotAll()
	c.start(2)
	c.waitReady()
	c.logAppend("after", 50)
	c.flushAll()
	total := uint64(3*100 + 2*300 + 3*50)
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	requireUnique(t, readLines(t, c.cfgs[2].Dir, "app.log"), "tag", "node", "k")
	st := c.nodes[2].Stats()
	require.Equal(t, uint64(1), st.CatchUps)
	require.Positive(t, st.FetchedBytes)
	var served uint64
	for _, lx := range c.nodes[:2] {
		served += lx.Stats().ServedBytes
	}
	require.Equal(t, st.FetchedBytes, served)
}

// TestCatchUpWipedDir: a node whose directory was wiped comes back empty and
// copies the whole log.
func TestCatchUpWipedDir(t *testing.T) {
	c := catchUpCluster(t)
	c.logAppend("before", 200)
	c.snapshotAll()
	c.stop(2)
	require.NoError(t, os.RemoveAll(c.cfgs[2].Dir))
	c.logAppend("while-down", 100)
	c.snapshotAll()
	c.start(2)
	c.waitReady()
	c.logAppend("after", 20)
	c.flushAll()
	total := uint64(3*200 + 2*100 + 3*20)
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	st := c.nodes[2].Stats()
	require.Equal(t, uint64(1), st.CatchUps)
	// Everything before the snapshot was copied, not replayed.
	require.Greater(t, st.FetchedBytes, uint64(3*200*100))
}
