package logx

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A follower's Flush returns once its own files hold its entries, even
// when nothing else would tell it the leader committed them: with Raft's
// CommitTimeout at an hour and no clock reports, only the follower's
// request to pass the commit index on (commit.go) can.
func TestFollowerFlushPassesCommitIndex(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.commitTimeout = time.Hour
		cfg.clockEvery = time.Hour
	})
	leader := c.leaderIndex()
	for round := 0; round < 3; round++ {
		for i, lx := range c.nodes {
			if i == leader {
				continue
			}
			lx.Info("from a follower", "node", i, "round", round)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			require.NoError(t, lx.Flush(ctx), "node %d round %d", i+1, round)
			cancel()
			seq := c.nodes[leader].Stats().Seq
			require.GreaterOrEqual(t, lx.Stats().Seq, seq, "node %d's files after its Flush", i+1)
		}
	}
}

// Requests to pass the commit index on share barriers: many at once all
// succeed, on the leader; a follower refuses them with a hint.
func TestPassCommitIndexConcurrent(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.nodes[c.leaderIndex()]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Go(func() { errs[i] = leader.passCommitIndex(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "request %d", i)
	}
	follower := c.nodes[(c.leaderIndex()+1)%3]
	resp, err := follower.sendControl(ctx, follower.cfg.Addr, controlRequest{Op: "commit"})
	require.NoError(t, err)
	require.True(t, resp.NotLeader, "a follower's answer: %+v", resp)
	require.Equal(t, leader.cfg.Addr, resp.Leader)
}
