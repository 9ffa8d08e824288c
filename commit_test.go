package logx

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// A follower's Flush returns once its own files hold its entries, even
// when nothing else would tell it the leader committed them: with Raft's
// CommitTimeout at an hour, no clock reports and the leader's own pass at
// the end of traffic off, only the follower's request to pass the commit
// index on (commit.go) can.
func TestFollowerFlushPassesCommitIndex(t *testing.T) {
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) {
		sm.commitTimeout = time.Hour
		sm.clockEvery = time.Hour
		sm.tailAfter = time.Hour
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

// When traffic stops, the leader passes its commit index on by itself
// (passTail): the followers' files hold every entry the leader logged, in
// bursts with pauses between them, though nobody on a follower asks and
// Raft's CommitTimeout is an hour. One barrier per burst does it, not one
// per look: no barrier follows another.
func TestLeaderPassesCommitIndex(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) {
		sm.commitTimeout = time.Hour
		sm.clockEvery = time.Hour
	})
	li := c.leaderIndex()
	leader := c.nodes[li]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for burst := range 4 {
		for i := range 50 * (burst + 1) {
			leader.Info("from the leader", "burst", burst, "i", i)
		}
		require.NoError(t, leader.Flush(ctx))
		c.waitSameSeq(leader.Stats().Seq) // the followers' files hold the burst
		// The pass was one barrier: a few looks later, every barrier after
		// it still follows an entry the state machine sees (start-up
		// clock reports may come late), never another barrier.
		last := leader.raft.LastIndex()
		time.Sleep(3 * tailAfter) // room for extra barriers, which must not come
		var l raft.Log
		require.NoError(t, leader.logs.GetLog(last, &l))
		prev := l.Type
		for idx := last + 1; idx <= leader.raft.LastIndex(); idx++ {
			require.NoError(t, leader.logs.GetLog(idx, &l))
			require.False(t, l.Type == raft.LogBarrier && prev == raft.LogBarrier, "burst %d: a barrier after a barrier at %d", burst, idx)
			prev = l.Type
		}
	}
	requireIdentical(t, c.dirs(), leader.cfg.File)
}

// barriersAfter counts the barriers in lx's Raft log after index from.
func barriersAfter(t *testing.T, lx *Logx, from uint64) int {
	n := 0
	for idx := from + 1; idx <= lx.raft.LastIndex(); idx++ {
		var l raft.Log
		require.NoError(t, lx.logs.GetLog(idx, &l))
		if l.Type == raft.LogBarrier {
			n++
		}
	}
	return n
}

// What passing the commit index on costs is bounded: a trickle of lines,
// each after a pause longer than tailAfter, gets a barrier at most every
// passEvery, not one a line, and its lines still reach the followers; an
// idle stream's clock reports and a cluster of one server get none.
func TestPassTailCost(t *testing.T) {
	const after = 20 * time.Millisecond
	quiet := func(_ *Config, sm *seams) {
		sm.commitTimeout = time.Hour
		sm.clockEvery = time.Hour
		sm.tailAfter = after
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("trickle", func(t *testing.T) {
		c := newTestClusterSeams(t, 3, quiet)
		leader := c.nodes[c.leaderIndex()]
		from, start := leader.raft.LastIndex(), time.Now()
		const lines = 12
		for i := range lines {
			leader.Info("a line now and then", "i", i)
			require.NoError(t, leader.Flush(ctx))
			time.Sleep(3 * after) // the trickle's pause: each line a burst of its own
		}
		elapsed := time.Since(start)
		c.waitSameSeq(leader.Stats().Seq) // the trickle reached every follower
		n := barriersAfter(t, leader, from)
		t.Logf("%d lines over %v: %d barriers", lines, elapsed.Round(time.Millisecond), n)
		require.LessOrEqual(t, n, int(time.Since(start)/(500*time.Millisecond))+2, "a barrier a line")
	})

	t.Run("idle", func(t *testing.T) {
		c := newTestClusterSeams(t, 3, quiet)
		leader := c.nodes[c.leaderIndex()]
		require.True(t, waitFor(30*time.Second, leader.idle.Load), "the stream did not go idle")
		from := leader.raft.LastIndex()
		for _, lx := range c.nodes {
			lx.clockNow <- struct{}{} // a clock report now, as an idle stream makes one a minute
		}
		require.True(t, waitFor(10*time.Second, func() bool { return leader.raft.AppliedIndex() >= from+3 }),
			"the clock reports were not committed")
		time.Sleep(5 * after) // room for a pass, which must not come
		require.True(t, leader.idle.Load(), "a clock report woke the stream")
		require.Zero(t, barriersAfter(t, leader, from), "an idle stream passed its clock reports on")
	})

	t.Run("one server", func(t *testing.T) {
		c := newTestClusterSeams(t, 1, quiet)
		lx := c.nodes[0]
		from := lx.raft.LastIndex()
		lx.Info("nobody to tell")
		require.NoError(t, lx.Flush(ctx))
		time.Sleep(5 * after) // room for a pass, which must not come
		require.Zero(t, barriersAfter(t, lx, from), "a barrier with no follower")
	})
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

// Close returns while requests for barriers, batches and membership
// changes keep coming: a
// future Raft took just as it stopped is given up, not waited for
// (hashicorp/raft v1.8.0 may never answer it).
func TestCloseDuringBarriers(t *testing.T) {
	t.Parallel()
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
					switch {
					case g == 6:
						// Membership changes: a non-voter that never
						// answers, added and taken out.
						fake := fmt.Sprintf("127.0.0.1:%d", 1+i%2)
						_ = lx.raftCall(func() error { return lx.raft.AddNonvoter(raft.ServerID(fake), raft.ServerAddress(fake), 0, 0).Error() })
						_ = lx.removeNode(ctx, fake)
					case g%2 == 0:
						_ = lx.passCommitIndex(ctx)
					default:
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

// stuckFuture is a Raft answer that never comes until release is closed.
type stuckFuture struct{ release chan struct{} }

func (f stuckFuture) Error() error  { <-f.release; return nil }
func (f stuckFuture) Index() uint64 { return 0 }
func (f stuckFuture) Response() any { return nil }

// TestAwaitApplyUntil: a wait for a command whose commit does not come (a
// leader whose followers cannot store entries) ends when its context ends,
// as ErrOutcomeUnknown with the context's error, so that node.tend's
// recording of a declared stream, which the node's Close waits for, does
// not hold Close for good, and a change proposed for a caller (a cluster
// level, a catalog change, a node added or removed: awaitFuture) ends with
// the caller's context; without an end it waits for the answer.
func TestAwaitApplyUntil(t *testing.T) {
	lx := newSingle(t, nil)
	f := stuckFuture{release: make(chan struct{})}
	defer close(f.release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := lx.awaitApply(ctx, f)
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	err = awaitFuture(ctx, f)
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	answered := stuckFuture{release: make(chan struct{})}
	close(answered.release)
	require.NoError(t, lx.awaitApply(context.Background(), answered))
	require.NoError(t, awaitFuture(context.Background(), answered))
}
