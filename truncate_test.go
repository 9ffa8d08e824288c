package logx

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// firstLineSeq is the sequence number of the first line a node's files hold.
func firstLineSeq(t *testing.T, dir string) uint64 {
	t.Helper()
	lines := readLines(t, dir, "app.log")
	require.NotEmpty(t, lines)
	var seq uint64
	_, err := fmt.Sscanf(string(lines[0]), "seq=%d ", &seq)
	require.NoError(t, err, "%s", lines[0])
	return seq
}

// TruncateBefore, called on a follower, retires on every node the rotated
// files whose lines all lie below the point, and only those: the file that
// holds it stays. A node that was down replays the command and retires the
// same files; the point survives a restart, only rises, and one beyond the
// log's end is refused.
func TestTruncateBefore(t *testing.T) {
	t.Parallel()
	c, follower := downedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const point = 150
	require.NoError(t, c.nodes[follower].TruncateBefore(ctx, point))
	// It returns once the calling node applied the point; the other one
	// applies it with the next commit index it hears of. (If node 3 led,
	// the caller may be the new leader: the other node is then told by
	// the leader's pass at the end of traffic, commit.go.)
	require.Equal(t, uint64(point), c.nodes[follower].Stats().TruncatedBefore)
	require.True(t, waitFor(10*time.Second, func() bool {
		return c.nodes[0].Stats().TruncatedBefore == point && c.nodes[1].Stats().TruncatedBefore == point
	}), "the truncation point did not reach both nodes: %d %d", c.nodes[0].Stats().TruncatedBefore, c.nodes[1].Stats().TruncatedBefore)
	require.True(t, waitFor(10*time.Second, func() bool {
		for i := range 2 {
			if first := firstLineSeq(t, c.cfgs[i].Dir); first == 1 || first > point {
				return false
			}
		}
		return true
	}), "every node should hold its lines from the file that holds %d on", point)
	retired := c.nodes[0].Stats().Retired
	require.Positive(t, retired)

	// Points that change nothing, or are refused.
	require.NoError(t, c.nodes[0].TruncateBefore(ctx, 100))
	require.Equal(t, uint64(point), c.nodes[0].Stats().TruncatedBefore, "the point only rises")
	err := c.nodes[0].TruncateBefore(ctx, 1<<40)
	require.ErrorContains(t, err, "beyond the end of the log")
	require.Error(t, c.nodes[0].TruncateBefore(ctx, 0))

	// The node that was down replays the truncation.
	c.start(2)
	c.waitReady()
	c.logAppend("after", 10)
	c.flushAll()
	require.Equal(t, uint64(330), c.waitSameSeq(330))
	requireIdentical(t, c.dirs(), "app.log")
	require.Equal(t, uint64(point), c.nodes[2].Stats().TruncatedBefore)
	require.Equal(t, firstLineSeq(t, c.cfgs[0].Dir), firstLineSeq(t, c.cfgs[2].Dir))

	// A restart keeps the point.
	c.stop(0)
	c.start(0)
	c.waitReady()
	require.Equal(t, uint64(point), c.nodes[0].Stats().TruncatedBefore)
}

// downedCluster starts 3 nodes whose files rotate every 4 KiB, logs 300
// lines of about 110 bytes (some 8 files), stops node 3 and returns a
// follower of the two others, for a retention change made while a node is
// down.
func downedCluster(t *testing.T) (*testCluster, int) {
	t.Helper()
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.MaxSize = 4 << 10 })
	c.logAppend("before", 100)
	c.flushAll()
	c.waitSameSeq(300)
	c.stop(2)
	follower := (c.leaderIndex() + 1) % 3
	if follower == 2 {
		follower = (follower + 1) % 3
	}
	return c, follower
}

// parseTruncateCmd reads back what appendTruncateCmd writes, and refuses
// anything else.
func TestTruncateCmd(t *testing.T) {
	for _, seq := range []uint64{1, 150, 1<<64 - 1} {
		got, err := parseTruncateCmd(appendTruncateCmd(nil, seq))
		require.NoError(t, err)
		require.Equal(t, seq, got)
	}
	for _, bad := range [][]byte{nil, {cmdTruncate}, append([]byte{cmdTruncate}, `{"before":0}`...),
		append([]byte{cmdTruncate}, `{"before":-1}`...), append([]byte{cmdLevel}, `{"before":5}`...),
		append([]byte{cmdTruncate}, make([]byte, maxTruncateCmd)...)} {
		_, err := parseTruncateCmd(bad)
		require.Error(t, err, "%q", bad)
	}
}

// A node that catches up from a snapshot taken after the truncation (its
// directory wiped) takes the truncation point from the snapshot's
// manifest, and ends with the same files.
func TestTruncateCatchUp(t *testing.T) {
	t.Parallel()
	c := catchUpCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.logAppend("before", 100)
	c.stop(2)
	require.NoError(t, os.RemoveAll(c.cfgs[2].Dir))
	require.NoError(t, c.nodes[0].TruncateBefore(ctx, 150))
	c.logAppend("while-down", 30)
	c.snapshotAll()
	c.start(2)
	c.waitReady()
	c.flushAll()
	total := uint64(3*100 + 2*30)
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	require.Equal(t, uint64(150), c.nodes[2].Stats().TruncatedBefore)
	require.Equal(t, uint64(1), c.nodes[2].Stats().CatchUps, "it should have caught up from the snapshot")
}
