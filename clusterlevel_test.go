package logx

import (
	"context"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// levels returns each running node's level on stream name.
func (c *testCluster) levels(name string) []slog.Level {
	var ls []slog.Level
	for _, lx := range c.nodes {
		if lx == nil {
			continue
		}
		s, err := lx.Stream(name)
		require.NoError(c.t, err)
		ls = append(ls, s.Level())
	}
	return ls
}

func (c *testCluster) allAtLevel(name string, l slog.Level) bool {
	for _, got := range c.levels(name) {
		if got != l {
			return false
		}
	}
	return true
}

// SetClusterLevel, called on a follower, sets the level on every node; it
// returns once the calling node applied it. A node's SetLevel is local and
// holds until the next cluster level reaches it. A node that restarts
// takes the cluster level over its Config.Level. Each stream has its own.
// The files stay identical: the level command writes no line.
func TestClusterLevel(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Streams = []StreamConfig{{Name: "audit"}} })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	follower := c.nodes[0]
	for _, lx := range c.nodes {
		if lx.raft.State() != raft.Leader {
			follower = lx
			break
		}
	}
	_, set := follower.ClusterLevel()
	require.False(t, set)

	require.NoError(t, follower.SetClusterLevel(ctx, LevelWarn))
	require.Equal(t, LevelWarn, follower.Level(), "SetClusterLevel returns once the calling node applied it")
	l, set := follower.ClusterLevel()
	require.True(t, set)
	require.Equal(t, LevelWarn, l)
	require.True(t, waitFor(10*time.Second, func() bool { return c.allAtLevel(DefaultStream, LevelWarn) }), "levels %v", c.levels(DefaultStream))
	require.True(t, c.allAtLevel("audit", LevelInfo), "the audit stream keeps its own level (its StreamConfig's default): %v", c.levels("audit"))
	st := follower.Stats()
	require.Equal(t, "WARN", st.Level)
	require.Equal(t, "WARN", st.ClusterLevel)

	for i, lx := range c.nodes {
		seq, err := lx.Append(ctx, LevelInfo, "below the cluster level", "node", i)
		require.NoError(t, err)
		require.Zero(t, seq, "an Info entry under a WARN cluster level is not logged")
		_, err = lx.Append(ctx, LevelWarn, "at the cluster level", "node", i)
		require.NoError(t, err)
	}

	// SetLevel is local: node 2 logs Debug until the next cluster level.
	c.nodes[1].SetLevel(LevelDebug)
	seq, err := c.nodes[1].Append(ctx, LevelDebug, "local debug")
	require.NoError(t, err)
	require.NotZero(t, seq)
	require.Equal(t, LevelWarn, c.nodes[2].Level())
	require.NoError(t, c.nodes[2].SetClusterLevel(ctx, LevelInfo))
	require.True(t, waitFor(10*time.Second, func() bool { return c.allAtLevel(DefaultStream, LevelInfo) }), "levels %v", c.levels(DefaultStream))

	audit, err := c.nodes[0].Stream("audit")
	require.NoError(t, err)
	require.NoError(t, audit.SetClusterLevel(ctx, LevelError))
	require.True(t, waitFor(10*time.Second, func() bool { return c.allAtLevel("audit", LevelError) }), "levels %v", c.levels("audit"))
	require.True(t, c.allAtLevel(DefaultStream, LevelInfo))

	// A restart: the cluster level wins over Config.Level (Debug in these
	// tests), on both streams.
	c.stop(2)
	c.start(2)
	c.waitReady()
	require.Equal(t, LevelInfo, c.nodes[2].Level())
	a2, err := c.nodes[2].Stream("audit")
	require.NoError(t, err)
	require.Equal(t, LevelError, a2.Level())

	c.flushAll()
	require.Equal(t, uint64(4), c.waitSameSeq(4)) // 3 WARN, 1 local debug, nothing else
	requireIdentical(t, c.dirs(), "app.log")
	lines := readLines(t, c.cfgs[0].Dir, "app.log")
	require.Len(t, lines, 4)
}

// A node that catches up from a snapshot (its peers compacted their Raft
// logs past the level command) learns the cluster level from the
// snapshot's manifest.
func TestClusterLevelCatchUp(t *testing.T) {
	c := catchUpCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.logAppend("before", 20)
	c.stop(2)
	require.NoError(t, os.RemoveAll(c.cfgs[2].Dir))
	require.NoError(t, c.nodes[0].SetClusterLevel(ctx, LevelWarn))
	c.logAppend("while-down", 50) // Info: not logged any more
	for i := range 2 {
		for k := range 50 {
			_, err := c.nodes[i].Append(ctx, LevelWarn, "warn while down", "k", k)
			require.NoError(t, err)
		}
	}
	c.snapshotAll()
	c.start(2)
	c.waitReady()
	require.True(t, waitFor(20*time.Second, func() bool {
		_, set := c.nodes[2].ClusterLevel()
		return set
	}))
	require.Equal(t, LevelWarn, c.nodes[2].Level())
	require.Equal(t, uint64(1), c.nodes[2].Stats().CatchUps, "the node should have caught up from the snapshot")
}

// parseLevelCmd reads back what appendLevelCmd writes, and refuses
// anything else with an error.
func TestLevelCmd(t *testing.T) {
	for _, l := range []slog.Level{LevelDebug, LevelInfo, LevelWarn + 2, LevelError, -100} {
		got, err := parseLevelCmd(appendLevelCmd(nil, l))
		require.NoError(t, err)
		require.Equal(t, l, got)
	}
	for _, bad := range [][]byte{nil, {cmdLevel}, append([]byte{cmdLevel}, `{"level":"LOUD"}`...),
		append([]byte{cmdLevel}, `{"level":"INFO+99999999999999999999"}`...), append([]byte{cmdCatalog}, `{"level":"INFO"}`...),
		append([]byte{cmdLevel}, make([]byte, maxLevelCmd)...)} {
		_, err := parseLevelCmd(bad)
		require.Error(t, err, "%q", bad)
	}
}

// A node's SetLevel holds until the next cluster level reaches it: a redo
// after a write error, which applies the entries since the checkpoint
// again (a level command among them), leaves it alone.
func TestLocalLevelSurvivesRedo(t *testing.T) {
	var full [3]atomic.Bool
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		sm.diskFault = fullWhen(&full, cfg.NodeID)
		cfg.CheckpointInterval = time.Hour // the level command stays after the checkpoint
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	victim := (c.leaderIndex() + 1) % 3
	require.NoError(t, c.nodes[victim].SetClusterLevel(ctx, LevelWarn))
	c.nodes[victim].SetLevel(LevelDebug)

	full[victim].Store(true)
	for i, lx := range c.nodes {
		if i != victim {
			_, err := lx.Append(ctx, LevelWarn, "while the disk is full", "node", i)
			require.NoError(t, err)
		}
	}
	require.True(t, waitFor(10*time.Second, func() bool { return c.nodes[victim].Stats().WriteError != "" }),
		"the victim should have failed a write")
	full[victim].Store(false)
	c.flushAll()
	require.Equal(t, uint64(2), c.waitSameSeq(2))
	require.Equal(t, LevelDebug, c.nodes[victim].Level(), "the redo applied the level command again")
	requireIdentical(t, c.dirs(), "app.log")
}

// TestChangeAfterAskerGaveUp: a change whose asker gave up (its context
// ended while the leader asked the voters which version they run) is not
// made: the asker was told it failed, or may have.
func TestChangeAfterAskerGaveUp(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	level := LevelWarn
	for _, req := range []controlRequest{{Op: "set-level", Level: &level}, {Op: "truncate", Seq: 1}} {
		var resp controlResponse
		require.True(t, waitFor(30*time.Second, func() bool { // on the leader, wherever it is now
			lead := c.leaderIndex()
			if lead < 0 {
				return false
			}
			resp = c.nodes[lead].doControl(ctx, req)
			return !resp.NotLeader
		}))
		require.ErrorContains(t, resp.err(), context.Canceled.Error(), req.Op)
	}
	for _, lx := range c.nodes {
		_, set := lx.ClusterLevel()
		require.False(t, set, "the level was set")
		require.Zero(t, lx.Stats().TruncatedBefore)
	}
}
