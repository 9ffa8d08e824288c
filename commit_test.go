package logx

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// A follower's Flush returns once its own files hold its entries, even
// when nothing else would tell it the leader committed them: with Raft's
// CommitTimeout at an hour and no clock reports, only the follower's
// request to pass the commit index on (commit.go) can.
func TestFollowerFlushPassesCommitIndex(t *testing.T) {
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) {
		sm.commitTimeout = time.Hour
		sm.clockEvery = time.Hour
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

// Barriers at the end of the log are not lag: the state machine never
// sees them, and a flood of requests for them must not make every node
// look behind (Stats.Lag, the lag alarm, logxprom's /healthz).
func TestBarriersAreNotLag(t *testing.T) {
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) { sm.clockEvery = time.Hour })
	leader := c.nodes[c.leaderIndex()]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 50 {
		require.NoError(t, leader.passCommitIndex(ctx))
	}
	require.True(t, waitFor(10*time.Second, func() bool {
		for _, lx := range c.nodes {
			if st := lx.Stats(); st.Lag != 0 || st.CommitIndex < leader.raft.LastIndex()-1 {
				return false
			}
		}
		return true
	}), "lag after 50 barriers: %d %d %d", c.nodes[0].Stats().Lag, c.nodes[1].Stats().Lag, c.nodes[2].Stats().Lag)
}

// Close returns while requests for barriers and batches keep coming: a
// future Raft took just as it stopped is given up, not waited for
// (hashicorp/raft v1.8.0 may never answer it).
func TestCloseDuringBarriers(t *testing.T) {
	runs := 20
	if testing.Short() {
		runs = 5
	}
	for run := range runs {
		c := newTestCluster(t, 1, nil)
		lx := c.nodes[0]
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				ctx := context.Background()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if g%2 == 0 {
						_ = lx.passCommitIndex(ctx)
					} else {
						batch := wire.NewBatch(wire.Header{Producer: uint64(100 + g), FirstPSeq: uint64(i + 1), Count: 1},
							wire.AppendRecord(nil, LevelInfo, time.Now().UnixNano(), appendBodyStart(nil, FormatText, time.Now(), LevelInfo, "n1", "", "x")), false)
						_, _, _ = lx.applyLocal(batch, nil)
					}
				}
			})
		}
		closed := make(chan error, 1)
		go func() { closed <- lx.Close() }()
		select {
		case <-closed:
		case <-time.After(60 * time.Second):
			close(stop)
			c.nodes[0] = nil // the cleanup's Close would wait for this one
			t.Fatalf("run %d: Close did not return", run)
		}
		close(stop)
		wg.Wait()
		c.nodes[0] = nil
	}
}
