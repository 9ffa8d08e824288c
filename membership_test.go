package logx

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// addJoiner starts one more node with Join set, listing the current nodes as
// its Peers, and returns its index. It is not a member until AddNode.
func (c *testCluster) addJoiner() int {
	c.t.Helper()
	return c.addJoinerWith(nil)
}

// addJoinerWith is addJoiner with the new node's Config and hooks
// changed by tweak (nil: none).
func (c *testCluster) addJoinerWith(tweak func(*Config, *seams)) int {
	c.t.Helper()
	addr := freeAddrs(c.t, 1)[0]
	cfg := c.cfgs[0]
	cfg.NodeID = fmt.Sprintf("n%d", len(c.cfgs)+1)
	cfg.Addr = addr
	cfg.Peers = slices.Clone(c.cfgs[0].Peers)
	cfg.Dir = filepath.Join(filepath.Dir(c.cfgs[0].Dir), cfg.NodeID)
	cfg.Join = true
	c.cfgs = append(c.cfgs, cfg)
	if len(c.seams) > 0 {
		// The cluster's hooks, less those that belong to one node.
		sm := c.seams[0]
		sm.powerCut, sm.fetchHook, sm.diskFault, sm.dialFrom, sm.now = nil, nil, nil, "", nil
		for len(c.seams) < len(c.cfgs)-1 {
			c.seams = append(c.seams, seams{})
		}
		c.seams = append(c.seams, sm)
	}
	c.nodes = append(c.nodes, nil)
	i := len(c.cfgs) - 1
	if tweak != nil {
		for len(c.seams) < len(c.cfgs) {
			c.seams = append(c.seams, seams{})
		}
		tweak(&c.cfgs[i], &c.seams[i])
	}
	c.start(i)
	return i
}

// members returns the addresses and voter flags of lx's configuration.
func members(t testing.TB, lx *Logx) map[string]bool {
	t.Helper()
	ms, err := lx.Members()
	require.NoError(t, err)
	out := map[string]bool{}
	for _, m := range ms {
		out[m.Addr] = m.Voter
	}
	return out
}

func (c *testCluster) leaderIndex() int {
	for i, lx := range c.nodes {
		if lx != nil && lx.Stats().State == "Leader" {
			return i
		}
	}
	return -1
}

// waitLeader returns the index of the node that leads, waiting up to
// 10 s for an election to end.
func (c *testCluster) waitLeader() int {
	c.t.Helper()
	l := -1
	require.True(c.t, waitFor(10*time.Second, func() bool { l = c.leaderIndex(); return l >= 0 }), "no leader")
	return l
}

// moveLeader makes node i the leader (lead) or a follower (!lead), asking
// Raft to transfer the leadership until it holds.
func (c *testCluster) moveLeader(i int, lead bool) {
	c.t.Helper()
	require.True(c.t, waitFor(20*time.Second, func() bool {
		l := c.leaderIndex()
		switch {
		case l < 0:
			return false // an election under way
		case (l == i) == lead:
			return true
		}
		var f raft.Future
		if lead {
			a := raft.ServerAddress(c.cfgs[i].Addr)
			f = c.nodes[l].raft.LeadershipTransferToServer(raft.ServerID(a), a)
		} else {
			f = c.nodes[l].raft.LeadershipTransfer() // to whichever follower is ready
		}
		_ = f.Error() // tried again until it holds
		return false
	}), "n%d leading: %v", i+1, lead)
}

// TestAddNode: a new node joins a running cluster that has compacted its
// Raft log, so it catches up by copying files; AddNode is called on a
// follower and forwarded to the leader while every node keeps logging. The
// new node ends a voter, byte-identical to the others.
func TestAddNode(t *testing.T) {
	t.Parallel()
	c := catchUpCluster(t)
	c.logAppend("before", 100)
	c.snapshotAll()
	n := c.addJoiner()

	// Not a member yet: it knows no leader.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	require.Error(t, c.nodes[n].WaitReady(ctx))
	cancel()

	// Keep logging from the old nodes while the new one is added.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c2 := &testCluster{t: t, cfgs: c.cfgs[:n], nodes: slices.Clone(c.nodes[:n])}
		c2.logAppend("during", 50)
	}()
	follower := (c.leaderIndex() + 1) % n
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[follower].AddNode(ctx, c.cfgs[n].Addr))
	wg.Wait()

	ms := members(t, c.nodes[0])
	require.Len(t, ms, 4)
	for addr, voter := range ms {
		require.True(t, voter, "%s is not a voter", addr)
	}
	require.NoError(t, c.nodes[n].WaitReady(ctx))
	require.Equal(t, uint64(1), c.nodes[n].Stats().CatchUps, "the new node should have copied files")

	c.logAppend("after", 20) // from all four
	c.flushAll()
	total := uint64(3*100 + 3*50 + 4*20)
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	requireUnique(t, readLines(t, c.cfgs[n].Dir, "app.log"), "tag", "node", "k")

	// Adding a voter again changes nothing.
	require.NoError(t, c.nodes[n].AddNode(ctx, c.cfgs[n].Addr))
	require.Len(t, members(t, c.nodes[0]), 4)
}

// TestAddNodeFromItself: the new node asks to be added; it does not know
// the leader, so it asks its Peers and follows their hint.
func TestAddNodeFromItself(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	c.logAppend("before", 20)
	n := c.addJoiner()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[n].AddNode(ctx, c.cfgs[n].Addr))
	require.NoError(t, c.nodes[n].WaitReady(ctx))
	c.logAppend("after", 20)
	c.flushAll()
	total := uint64(3*20 + 4*20)
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	require.Zero(t, c.nodes[n].Stats().CatchUps, "a short log is replayed, not copied")
	// The first nodes fetch (catch-up, repair) from the added one too,
	// which their Peers do not name: after a year of changes Peers may
	// name only removed hosts.
	for i := range n {
		require.NotContains(t, c.cfgs[i].Peers, c.cfgs[n].Addr)
		require.Contains(t, c.nodes[i].defaultStream.fetchPeers(), c.cfgs[n].Addr, "node %d", i+1)
	}

	// The joined node restarts as a member, Join or not.
	c.stop(n)
	c.cfgs[n].Join = false
	c.cfgs[n].Peers = append(c.cfgs[n].Peers, c.cfgs[n].Addr)
	c.start(n)
	c.waitReady()
	c.logAppend("restarted", 5)
	c.flushAll()
	total += 4 * 5
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
}

// TestRemoveNode: a follower is removed from another follower, then the
// leader is removed; the rest keep a leader, keep logging, and stay
// identical. The removed nodes stop taking entries.
func TestRemoveNode(t *testing.T) {
	c := newTestCluster(t, 5, nil)
	c.logAppend("five", 10)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	leader := c.leaderIndex()
	var followers []int
	for i := range c.nodes {
		if i != leader {
			followers = append(followers, i)
		}
	}
	victim, caller := followers[0], followers[1]
	require.NoError(t, c.nodes[caller].RemoveNode(ctx, c.cfgs[victim].Addr))
	// Committed on the leader; the caller learns of it with the next
	// heartbeat.
	require.True(t, waitFor(10*time.Second, func() bool {
		_, ok := members(t, c.nodes[caller])[c.cfgs[victim].Addr]
		return !ok
	}), "the caller still lists the removed node")
	removed := []int{victim}
	// The removed node was told, and takes no more entries.
	require.True(t, waitFor(10*time.Second, func() bool { return c.nodes[victim].removed.Load() }))
	_, err := c.nodes[victim].Append(ctx, LevelInfo, "from a removed node")
	require.ErrorIs(t, err, ErrRemoved)
	// A wait for this node to apply something ends too (it never will).
	err = c.nodes[victim].SetClusterLevel(ctx, LevelInfo)
	require.ErrorIs(t, err, ErrRemoved)
	require.NoError(t, ctx.Err(), "SetClusterLevel on a removed node waited for its context")
	require.True(t, waitFor(10*time.Second, func() bool { return c.nodes[victim].Stats().State == "Shutdown" }),
		"the removed node's Raft: %s (hashicorp/raft's state: %s)", c.nodes[victim].Stats().State, c.nodes[victim].raft.State())

	err = c.nodes[caller].RemoveNode(ctx, c.cfgs[victim].Addr)
	require.ErrorIs(t, err, ErrNotMember)

	// Remove the leader, asked from a follower.
	require.NoError(t, c.nodes[caller].RemoveNode(ctx, c.cfgs[leader].Addr))
	removed = append(removed, leader)
	rest := &testCluster{t: t}
	for i := range c.nodes {
		if !slices.Contains(removed, i) {
			rest.cfgs = append(rest.cfgs, c.cfgs[i])
			rest.nodes = append(rest.nodes, c.nodes[i])
		}
	}
	require.True(t, waitFor(30*time.Second, func() bool {
		l := rest.leaderIndex()
		return l >= 0 && len(members(t, rest.nodes[l])) == 3
	}), "no leader among the remaining three")
	rest.waitReady()
	rest.logAppend("three", 10)
	rest.flushAll()
	total := uint64(5*10 + 3*10)
	require.Equal(t, total, rest.waitSameSeq(total))
	requireIdentical(t, rest.dirs(), "app.log")
	requireUnique(t, readLines(t, rest.cfgs[0].Dir, "app.log"), "tag", "node", "k")
}

// TestMembershipBadInput: bad addresses get clear errors; a join without
// anyone to ask gives up when its context ends.
func TestMembershipBadInput(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.ErrorContains(t, c.nodes[0].AddNode(ctx, "not an address"), "AddNode")
	require.ErrorContains(t, c.nodes[0].RemoveNode(ctx, ""), "RemoveNode")
	require.ErrorIs(t, c.nodes[0].RemoveNode(ctx, "127.0.0.1:1"), ErrNotMember)

	// A joining node whose peers are unreachable: AddNode honours ctx.
	cfg := testConfig(t, 0, freeAddrs(t, 2), t.TempDir())
	cfg.Peers = cfg.Peers[1:] // nobody listens there
	cfg.Join = true
	lx, err := New(cfg)
	require.NoError(t, err)
	defer lx.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	err = lx.AddNode(sctx, cfg.Addr)
	require.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
}

// TestRemovedNodeCloses: a follower removed while it logs closes cleanly:
// its last batches may never be applied there (the leader stopped
// replicating to it), and Close does not wait for them.
func TestRemovedNodeCloses(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.CloseTimeout = 5 * time.Second })
	l := c.leaderIndex()
	victim, caller := (l+1)%3, (l+2)%3
	var wg sync.WaitGroup
	wctx, stopWriters := context.WithCancel(context.Background())
	defer stopWriters()
	started := make(chan struct{}, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; wctx.Err() == nil; k++ {
				if _, err := c.nodes[victim].Append(wctx, LevelInfo, "x", "k", k); err == nil && k == 0 {
					started <- struct{}{}
				}
			}
		}()
	}
	for range 4 {
		<-started
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[caller].RemoveNode(ctx, c.cfgs[victim].Addr))
	require.True(t, waitFor(10*time.Second, func() bool { return c.nodes[victim].Stats().State == "Shutdown" }),
		"the removed node's Raft: %s (hashicorp/raft's state: %s)", c.nodes[victim].Stats().State, c.nodes[victim].raft.State())
	stopWriters()
	wg.Wait()
	require.NoError(t, c.nodes[victim].Close())
	c.nodes[victim] = nil
}

// sendRemoved sends the node at to a "removed" notice naming victim, over
// a connection of its own (TLS with tlsCfg if it is set), as anyone who
// can reach the node could, and returns the answer.
func sendRemoved(t *testing.T, to, victim string, tlsCfg *tls.Config) controlResponse {
	t.Helper()
	c, err := net.DialTimeout("tcp", to, 5*time.Second)
	require.NoError(t, err)
	if tlsCfg != nil {
		c, err = tlsClient(context.Background(), c, tlsCfg, to, 5*time.Second)
		require.NoError(t, err)
	}
	defer c.Close()
	_, err = c.Write([]byte{wire.ProtoControl})
	require.NoError(t, err)
	resp, err := controlExchange(context.Background(), c, controlRequest{Op: "removed", Addr: victim}, time.Now().Add(10*time.Second))
	require.NoError(t, err)
	return resp
}

// requireStillMember checks that lx did not take itself for removed: its
// Raft runs and it logs.
func requireStillMember(t *testing.T, lx *Logx) {
	t.Helper()
	require.False(t, lx.removed.Load(), "%s marked itself removed", lx.cfg.NodeID)
	require.NotEqual(t, "Shutdown", lx.Stats().State, "%s stopped its Raft", lx.cfg.NodeID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := lx.Append(ctx, LevelInfo, "after a forged removal notice")
	require.NoError(t, err, "%s", lx.cfg.NodeID)
}

// TestLeavesOut: what counts as a member confirming that this node was
// removed. A member with no configuration yet (emptied, waiting for the
// leader's first entries) lists nobody, and is no answer either way.
func TestLeavesOut(t *testing.T) {
	me, peer := "127.0.0.1:2", "127.0.0.1:1"
	lists := []PeerStats{{Addr: me, Voter: true}}
	for _, tc := range []struct {
		st      Stats
		want    bool
		noCount bool
		why     string
	}{
		{Stats{Addr: peer, State: "Follower", CommitIndex: 5, Peers: lists}, false, false, "a member that lists this node"},
		{Stats{Addr: peer, State: "Leader", CommitIndex: 5, Peers: []PeerStats{{Addr: "127.0.0.1:3", Voter: true}}}, true, false, "a configuration without this node"},
		{Stats{Addr: peer, State: "Leader", CommitIndex: 5}, true, false, "a member alone in its configuration"},
		{Stats{Addr: peer, State: "Follower", AppliedIndex: 5}, true, false, "a member restarted, alone in what it applied"},
		{Stats{Addr: peer, State: "Follower"}, false, true, "an emptied member with no configuration yet"},
		{Stats{Addr: peer, State: "Follower", Term: 4}, false, true, "an emptied member that voted, still with no configuration"},
		{Stats{Addr: "127.0.0.1:9", State: "Leader", CommitIndex: 5}, false, true, "answered as another address"},
	} {
		got, err := leavesOut(tc.st, peer, me)
		require.Equal(t, tc.noCount, err != nil, "%s: %v", tc.why, err)
		require.Equal(t, tc.want, got, tc.why)
	}
}

// TestForgedRemovalIgnored: a "removed" notice that no member's
// configuration backs, sent by anyone to a follower and to the leader, is
// ignored once the node has asked the others: both keep logging, their
// Raft runs, and the files stay identical. A later notice is checked
// again; one naming another node is refused.
func TestForgedRemovalIgnored(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	c.logAppend("before", 10)
	l := c.leaderIndex()
	require.GreaterOrEqual(t, l, 0)
	f := (l + 1) % 3
	for _, v := range []int{f, l} {
		resp := sendRemoved(t, c.cfgs[v].Addr, c.cfgs[v].Addr, nil)
		require.Empty(t, resp.Error)
	}
	resp := sendRemoved(t, c.cfgs[f].Addr, c.cfgs[l].Addr, nil)
	require.Contains(t, resp.Error, "is not this node")
	for _, v := range []int{f, l} {
		require.True(t, waitFor(30*time.Second, func() bool { return c.nodes[v].Stats().IgnoredRemovals == 1 }),
			"%s did not finish checking the notice", c.cfgs[v].NodeID)
		requireStillMember(t, c.nodes[v])
	}

	// Checked again, not written off after the first.
	require.Empty(t, sendRemoved(t, c.cfgs[f].Addr, c.cfgs[f].Addr, nil).Error)
	require.True(t, waitFor(30*time.Second, func() bool { return c.nodes[f].Stats().IgnoredRemovals == 2 }))
	requireStillMember(t, c.nodes[f])
	// One that comes while a check runs is checked once that ends, not
	// dropped (a genuine notice could come during a check of forged ones).
	require.Empty(t, sendRemoved(t, c.cfgs[f].Addr, c.cfgs[f].Addr, nil).Error)
	require.True(t, c.nodes[f].defaultStream.checkingRemoval.Load(), "the first check ended before the second notice")
	require.Empty(t, sendRemoved(t, c.cfgs[f].Addr, c.cfgs[f].Addr, nil).Error)
	require.True(t, waitFor(30*time.Second, func() bool { return c.nodes[f].Stats().IgnoredRemovals == 4 }),
		"ignored %d: the notice that came during a check was dropped", c.nodes[f].Stats().IgnoredRemovals)
	requireStillMember(t, c.nodes[f])

	c.logAppend("after", 10)
	c.flushAll()
	total := uint64(3*10 + 3*10 + 4) // requireStillMember appends one
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	require.Len(t, members(t, c.nodes[l]), 3)
}

// TestControlOutcome: a control change the leader proposed before it lost
// the leadership (it may yet commit under the next leader) fails with
// ErrOutcomeUnknown when carrying it out again could change its result,
// and goes to the next leader otherwise. A request that a node drops
// unread (here a real listener that reads it whole and hangs up, as a node
// does for a stream it does not have) is a plain error, not "unknown".
func TestControlOutcome(t *testing.T) {
	for _, op := range []string{"set-level", "delete-stream", "remove"} {
		require.ErrorIs(t, outcomeOf(controlRequest{Op: op}, raft.ErrLeadershipLost), ErrOutcomeUnknown, op)
		require.NotErrorIs(t, outcomeOf(controlRequest{Op: op}, raft.ErrNotLeader), ErrOutcomeUnknown, op)
	}
	for _, op := range []string{"truncate", "create-stream", "add", "commit", "status"} {
		require.NotErrorIs(t, outcomeOf(controlRequest{Op: op}, raft.ErrLeadershipLost), ErrOutcomeUnknown, op)
	}
	var s Stream // the Unknown answer needs no Raft
	resp := s.controlAnswer(0, outcomeOf(controlRequest{Op: "set-level"}, raft.ErrLeadershipLost))
	require.True(t, resp.Unknown, "%+v", resp)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var served sync.WaitGroup
	defer served.Wait() // after the Close below ends Accept
	defer ln.Close()
	served.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if _, _, err := wire.ReadPreface(c, func(string) bool { return true }, ""); err == nil {
				_, _ = wire.ReadFrame(c, nil, maxControlFrame)
			}
			c.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = SetClusterLevel(ctx, ln.Addr().String(), "nosuch", LevelWarn, nil)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrOutcomeUnknown, "nothing was carried out")
	require.NoError(t, ctx.Err(), "the node asked fails at once")
}

// TestRaftPoolDropsRemoved: the connections Raft keeps for reuse to a node
// that was removed and stopped are closed (pruneRaftPool); hashicorp/raft
// never drops them itself, so a cluster whose nodes are replaced under new
// addresses held three more per stream each time, each with a descriptor
// and a 256 KiB buffer. Counted from the endpoint's own connections, by
// the address they lead to.
func TestRaftPoolDropsRemoved(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) { sm.clockEvery = 200 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j := c.addJoiner()
	addr := c.cfgs[j].Addr
	leader := c.leaderIndex()
	require.NoError(t, c.nodes[leader].AddNode(ctx, addr))
	c.logAppend("with four", 5)
	require.Equal(t, uint64(4*5), c.waitSameSeq(4*5))
	// toGone counts the leader's connections whose far end is addr: those
	// it dialed (an accepted one's far end is the peer's own port).
	toGone := func() int {
		e := c.nodes[leader].mux
		e.mu.Lock()
		defer e.mu.Unlock()
		n := 0
		for conn := range e.conns {
			if conn.RemoteAddr().String() == addr {
				n++
			}
		}
		return n
	}
	require.Positive(t, toGone(), "the leader holds no connection to the new node")
	require.NoError(t, c.nodes[leader].RemoveNode(ctx, addr))
	require.NoError(t, c.nodes[j].Close())
	c.nodes[j] = nil
	require.True(t, waitFor(20*time.Second, func() bool { return toGone() == 0 }),
		"the leader still holds %d connections to the removed node", toGone())
	require.NotContains(t, c.nodes[leader].mux.raftTargets(), addr)
	// The others' are dialed again as Raft needs them.
	c.logAppend("with three", 5)
	require.Equal(t, uint64(4*5+3*5), c.waitSameSeq(4*5+3*5))
}

// slowStreamCluster is a 3-node cluster whose node 0 does not open stream
// "x" until release is called; a stream "x" is created (on node 1) at once.
func slowStreamCluster(t *testing.T) (c *testCluster, release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	c = newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		if cfg.NodeID == "n1" {
			sm.opening = func(name, stage string) error {
				if name == "x" && stage == "begin" {
					<-ch // node 0 is slow to open it
				}
				return nil
			}
		}
	})
	t.Cleanup(release) // before the cluster's Close (cleanups run last first)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.nodes[1].CreateStream(ctx, StreamConfig{Name: "x"}))
	return c, release
}

// releaseWhen calls release once the default stream's members, as node 0
// has them, satisfy cond.
func (c *testCluster) releaseWhen(release func(), cond func([]Member) bool) {
	go func() {
		waitFor(30*time.Second, func() bool {
			ms, err := c.nodes[0].Members()
			return err == nil && cond(ms)
		})
		release()
	}()
}

// awaitMembers waits until node 0's group of stream x (which may trail its
// leader's) satisfies cond.
func (c *testCluster) awaitMembers(ctx context.Context, name string, cond func([]Member) bool, why string) {
	c.t.Helper()
	require.NoError(c.t, c.nodes[0].node.waitStream(ctx, name, true))
	s := c.stream(0, name)
	var ms []Member
	require.True(c.t, waitFor(10*time.Second, func() bool {
		ms, _ = s.Members()
		return cond(ms)
	}), "%s: %+v", why, ms)
}

func isVoter(addr string) func([]Member) bool {
	return func(ms []Member) bool {
		return slices.ContainsFunc(ms, func(m Member) bool { return m.Addr == addr && m.Voter })
	}
}

// TestAddNodeStreamCreatedMeanwhile: a stream created while AddNode runs,
// before the new node is a voter of the default stream, starts without it;
// AddNode, called on a node that has the creation in its catalog but has
// not opened the stream yet, waits for it and adds the node to it too. It
// returned once its pass over the open streams found none left.
func TestAddNodeStreamCreatedMeanwhile(t *testing.T) {
	t.Parallel()
	c, release := slowStreamCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j := c.addJoinerWith(func(_ *Config, sm *seams) { sm.opening = nil })
	addr := c.cfgs[j].Addr
	c.releaseWhen(release, isVoter(addr))
	require.NoError(t, c.nodes[0].AddNode(ctx, addr))
	c.awaitMembers(ctx, "x", isVoter(addr), "the new node is a voter of the stream created meanwhile")
}

// TestRemoveNodeStreamCreatedMeanwhile: the same for RemoveNode, whose one
// pass left the node in the group of a stream created meanwhile.
func TestRemoveNodeStreamCreatedMeanwhile(t *testing.T) {
	t.Parallel()
	c, release := slowStreamCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := c.cfgs[2].Addr
	in := func(ms []Member) bool { return slices.ContainsFunc(ms, func(m Member) bool { return m.Addr == addr }) }
	c.releaseWhen(release, func(ms []Member) bool { return !in(ms) })
	require.NoError(t, c.nodes[0].RemoveNode(ctx, addr))
	c.awaitMembers(ctx, "x", func(ms []Member) bool { return !in(ms) }, "the node left the stream created meanwhile")
}

// TestCreateStreamCloseMeanwhile: CreateStream on a node that closes after
// the creation is committed, before it opens the stream, fails with
// ErrClosed and says the stream is created, which it is: the other nodes
// open it. (It returned ErrClosed alone, as if nothing had been made.)
func TestCreateStreamCloseMeanwhile(t *testing.T) {
	held := make(chan struct{})
	release := make(chan struct{})
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		if cfg.NodeID == "n1" {
			sm.opening = func(name, stage string) error {
				if name == "x" && stage == "begin" {
					close(held)
					<-release
				}
				return nil
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.nodes[0].CreateStream(ctx, StreamConfig{Name: "x"}) }()
	<-held // committed, and node 0 is opening it
	closed := make(chan error, 1)
	go func() { closed <- c.nodes[0].Close() }()
	err := <-errc
	close(release)
	require.ErrorIs(t, err, ErrClosed)
	require.Contains(t, err.Error(), `stream "x" is created in the catalog`)
	require.NoError(t, <-closed)
	require.True(t, waitFor(30*time.Second, func() bool { return slices.Contains(c.nodes[1].Streams(), "x") }), "the other nodes open the stream")
}

// proposedPeer listens at addr and answers every control request as a
// node that proposed the change and then lost the leadership; other
// connections it closes.
func proposedPeer(t *testing.T, addr string) {
	fakePeer(t, addr, func(c net.Conn) {
		_, proto, err := wire.ReadPreface(c, validStreamName, DefaultStream)
		if err != nil || proto != wire.ProtoControl {
			return
		}
		if _, err := wire.ReadFrame(bufio.NewReader(c), nil, maxControlFrame); err != nil {
			return
		}
		_ = writeJSONFrame(c, controlResponse{NotLeader: true, Proposed: true})
	})
}

// TestControlProposedThenNoAnswer: a change whose leader proposed it and
// then lost the leadership (the next leader may commit it) is tried again
// elsewhere; if no answer comes before ctx ends, the caller gets
// ErrOutcomeUnknown, not a failure, from a node (Stream.TruncateBefore)
// and from a Client's call (TruncateBefore). The answer says so only for
// a proposal (controlAnswer). (A peer that answers "not the leader"
// without having proposed leaves a plain failure, but for a context that
// ends during an exchange, which is unknown too: not tested here.)
func TestControlProposedThenNoAnswer(t *testing.T) {
	t.Parallel()
	addrs := freeAddrs(t, 3)
	proposedPeer(t, addrs[1]) // nothing listens at addrs[2]: no leader
	cfg := testConfig(t, 0, addrs, filepath.Join(t.TempDir(), "n1"))
	cfg.CloseTimeout = 100 * time.Millisecond
	lx, err := New(cfg)
	require.NoError(t, err)
	defer lx.Close()
	require.True(t, lx.controlAnswer(0, fmt.Errorf("x: %w", raft.ErrLeadershipLost)).Proposed, "proposed, then the leadership lost")
	require.False(t, lx.controlAnswer(0, raft.ErrNotLeader).Proposed, "never proposed")
	for _, change := range []func(context.Context) error{
		func(ctx context.Context) error { return lx.TruncateBefore(ctx, 1) },
		func(ctx context.Context) error { return TruncateBefore(ctx, addrs[1], DefaultStream, 1, nil) },
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := change(ctx)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, ErrOutcomeUnknown)
	}
}

// TestCreateStreamOpenFails: CreateStream on a node that cannot open the
// stream after its creation committed says the stream is created, which it
// is: the other nodes open it.
func TestCreateStreamOpenFails(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		if cfg.NodeID == "n1" {
			sm.opening = func(name, stage string) error {
				if name == "x" && stage == "begin" {
					return errors.New("injected")
				}
				return nil
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.nodes[0].CreateStream(ctx, StreamConfig{Name: "x"})
	require.ErrorContains(t, err, `stream "x" is created in the catalog, but opening it here failed`)
	require.ErrorContains(t, err, "injected")
	require.True(t, waitFor(30*time.Second, func() bool { return slices.Contains(c.nodes[1].Streams(), "x") }), "the other nodes open the stream")
}

// TestAddNodeStreamNotOpenHere: AddNode on a node that does not open a
// stream created meanwhile in time says so, and that a call once it is
// open adds the node to it; it returned nil, the node in every stream but
// that one. The node is a voter of the default stream all the same.
func TestAddNodeStreamNotOpenHere(t *testing.T) {
	t.Parallel()
	c, release := slowStreamCluster(t) // node 0 does not open "x" until released
	j := c.addJoinerWith(func(_ *Config, sm *seams) { sm.opening = nil })
	addr := c.cfgs[j].Addr
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := c.nodes[0].AddNode(ctx, addr)
	require.ErrorContains(t, err, `stream "x", created meanwhile, did not open here in time`)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	ms, merr := c.nodes[0].Members()
	require.NoError(t, merr)
	require.True(t, isVoter(addr)(ms), "a voter of the default stream: %v", ms)
	release()
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.nodes[0].AddNode(ctx, addr), "called again once the stream is open")
	c.awaitMembers(ctx, "x", isVoter(addr), "the new node is a voter of the stream")
}

// TestAddNodeRacesRemoveNode: a RemoveNode made while AddNode waits for
// the new node to catch up is not undone by AddNode's last step (an
// AddVoter of a server the configuration lacks would add it back): AddNode
// fails, saying so, and the node stays out.
func TestAddNodeRacesRemoveNode(t *testing.T) {
	t.Parallel()
	reached, release := make(chan string, 4), make(chan struct{})
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) {
		sm.beforeVoter = func(addr string) {
			reached <- addr
			<-release
		}
	})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	n := c.addJoiner()
	addr := c.cfgs[n].Addr
	l := c.leaderIndex()
	require.GreaterOrEqual(t, l, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.nodes[l].AddNode(ctx, addr) }()
	select {
	case got := <-reached:
		require.Equal(t, addr, got)
	case err := <-done:
		t.Fatalf("AddNode returned before its last step: %v", err)
	case <-ctx.Done():
		t.Fatal("AddNode did not reach its last step")
	}
	require.NoError(t, c.nodes[l].RemoveNode(ctx, addr))
	free()
	require.ErrorContains(t, <-done, "was removed while it caught up")
	_, listed := members(t, c.nodes[l])[addr]
	require.False(t, listed, "AddNode undid the RemoveNode made meanwhile")
}

// TestRemovalConfirmedByOtherVoters: a removed node honours the leader's
// notice once a majority of the other voters (the configuration the
// removal committed in) confirm it: with two voters, the one left; with
// four, two of the other three while the third is down. A majority of all
// voters, itself counted, could not be reached there.
func TestRemovalConfirmedByOtherVoters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		nodes int
		down  bool
	}{{"two voters", 2, false}, {"four voters, one down", 4, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, tc.nodes, nil)
			l := c.leaderIndex()
			require.GreaterOrEqual(t, l, 0)
			victim := (l + 1) % tc.nodes
			if tc.down {
				c.stop((l + 2) % tc.nodes)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, c.nodes[l].RemoveNode(ctx, c.cfgs[victim].Addr))
			require.True(t, waitFor(20*time.Second, func() bool { return c.nodes[victim].removed.Load() }),
				"the removed node did not honour the notice (ignored %d)", c.nodes[victim].Stats().IgnoredRemovals)
			require.Zero(t, c.nodes[victim].Stats().IgnoredRemovals)
			_, err := c.nodes[victim].Append(ctx, LevelInfo, "from a removed node")
			require.ErrorIs(t, err, ErrRemoved)
		})
	}
}

// TestRemovalVerdict: a removal notice is confirmed by a majority of the
// other voters that leave this node out, the leader among them: members
// whose configuration is older than this node's (a member restored from a
// snapshot from before this node joined, catching up) cannot confirm a
// forged notice on their own.
func TestRemovalVerdict(t *testing.T) {
	v := func(addr string) raft.Server {
		return raft.Server{ID: raft.ServerID(addr), Address: raft.ServerAddress(addr), Suffrage: raft.Voter}
	}
	nv := raft.Server{ID: "n", Address: "n", Suffrage: raft.Nonvoter}
	gone, leads, lists, silent := removalAnswer{gone: true}, removalAnswer{gone: true, leader: true}, removalAnswer{leader: true}, removalAnswer{err: errors.New("down")}
	named := func(a removalAnswer, leader string) removalAnswer { a.leaderAddr = leader; return a }
	for _, tc := range []struct {
		why    string
		others []raft.Server
		ans    []removalAnswer
		want   bool
	}{
		{"two voters: the leader left confirms", []raft.Server{v("a")}, []removalAnswer{leads}, true},
		{"two voters: a follower restored from an old snapshot, no leader", []raft.Server{v("a")}, []removalAnswer{gone}, false},
		{"three voters: the leader and the other", []raft.Server{v("a"), v("b")}, []removalAnswer{leads, gone}, true},
		{"three voters: the other alone", []raft.Server{v("a"), v("b")}, []removalAnswer{lists, gone}, false},
		{"three voters: the leader alone", []raft.Server{v("a"), v("b")}, []removalAnswer{leads, silent}, false},
		{"four voters, one down: the leader and one", []raft.Server{v("a"), v("b"), v("c")}, []removalAnswer{leads, gone, silent}, true},
		{"four voters: two followers that do not know this node yet", []raft.Server{v("a"), v("b"), v("c")}, []removalAnswer{lists, gone, gone}, false},
		{"a non-voter does not count", []raft.Server{v("a"), v("b"), nv}, []removalAnswer{leads, silent, gone}, false},
		{"a leader this node lists as a non-voter (promoted since), named by a voter: its word counts, not its vote", []raft.Server{v("a"), nv}, []removalAnswer{named(gone, "n"), leads}, true},
		{"a non-voter that says it leads, named by no voter", []raft.Server{v("a"), nv}, []removalAnswer{gone, leads}, false},
		{"a non-voter that says it leads, the voters naming another", []raft.Server{v("a"), v("b"), nv}, []removalAnswer{named(gone, "c"), named(gone, "c"), leads}, false},
		{"a non-voter's word alone", []raft.Server{v("a"), v("b"), nv}, []removalAnswer{lists, silent, leads}, false},
	} {
		got, _, verdict := removalVerdict(tc.others, tc.ans)
		require.Equal(t, tc.want, got, "%s: %s", tc.why, verdict)
	}
	// Unsettled: some voter leaves this node out, none lists it, not
	// confirmed; the check goes on (checkRemoval).
	for _, tc := range []struct {
		why    string
		others []raft.Server
		ans    []removalAnswer
		want   bool
	}{
		{"the leader down, two of three other voters confirm", []raft.Server{v("a"), v("b"), v("c")}, []removalAnswer{silent, gone, gone}, true},
		{"three voters: the leader down, the other confirms", []raft.Server{v("a"), v("b")}, []removalAnswer{silent, gone}, true},
		{"three voters: the leader confirms, the other down", []raft.Server{v("a"), v("b")}, []removalAnswer{leads, silent}, true},
		{"a voter lists this node", []raft.Server{v("a"), v("b"), v("c")}, []removalAnswer{silent, gone, lists}, false},
		{"a non-voter's confirmation alone", []raft.Server{v("a"), nv}, []removalAnswer{silent, gone}, false},
		{"confirmed", []raft.Server{v("a"), v("b"), v("c")}, []removalAnswer{leads, gone, silent}, false},
		{"nobody answers", []raft.Server{v("a"), v("b")}, []removalAnswer{silent, silent}, false},
	} {
		_, unsettled, verdict := removalVerdict(tc.others, tc.ans)
		require.Equal(t, tc.want, unsettled, "%s: %s", tc.why, verdict)
	}
	// The leader the confirming voters name, if this node's configuration
	// lacks it (its log stalled while a member was added and led), is
	// asked too; one it lists, itself, or one named by a member that lists
	// it or does not vote, is not.
	others := []raft.Server{v("a"), v("b"), nv}
	require.Equal(t, "n2", unlistedLeader(others, []removalAnswer{named(gone, "n2"), gone, gone}, "me"))
	require.Empty(t, unlistedLeader(others, []removalAnswer{named(gone, "a"), gone, gone}, "me"))
	require.Empty(t, unlistedLeader(others, []removalAnswer{named(gone, "me"), gone, gone}, "me"))
	require.Empty(t, unlistedLeader(others, []removalAnswer{named(lists, "n2"), silent, named(gone, "n2")}, "me"))
}

// TestAddNodeRefuses: AddNode refuses a member under another spelling of
// its address (it would count twice: three nodes would need all three),
// and a removed node whose Raft has stopped (it would stay a non-voter that
// never catches up); neither enters the configuration. And called on the
// leader with a context without a deadline, an add of an address nothing
// answers at ends at the bound (here, by a seam, 3 s instead of 10 minutes).
func TestAddNodeRefuses(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) { sm.controlTimeout = 3 * time.Second })
	c.waitReady()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	lead := c.waitLeader()
	other := (lead + 1) % 3
	_, port, err := net.SplitHostPort(c.cfgs[other].Addr)
	require.NoError(t, err)
	alias := net.JoinHostPort("localhost", port)
	err = c.nodes[lead].AddNode(ctx, alias)
	require.ErrorContains(t, err, fmt.Sprintf("answers as %q", c.cfgs[other].Addr))
	require.Len(t, members(t, c.nodes[lead]), 3, "the alias is not a member")

	nowhere := freeAddrs(t, 1)[0]
	done := make(chan error, 1)
	go func() { done <- c.nodes[lead].AddNode(context.Background(), nowhere) }()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("AddNode with no deadline, of an address nothing answers at, did not end at the bound")
	}

	victim := (lead + 2) % 3
	require.NoError(t, c.nodes[lead].RemoveNode(ctx, c.cfgs[victim].Addr))
	require.True(t, waitFor(10*time.Second, func() bool { return c.nodes[victim].Stats().State == "Shutdown" }))
	err = c.nodes[lead].AddNode(ctx, c.cfgs[victim].Addr)
	require.ErrorContains(t, err, "has stopped")
	require.NotContains(t, members(t, c.nodes[lead]), c.cfgs[victim].Addr, "the removed node is not a member again")
}

// TestRemoveNodeRacesAddNodeAcrossStreams: an AddNode has made the node a
// voter of the default stream and waits for it to open another stream; a
// RemoveNode then takes it out of the default stream and finds it not a
// member of the other. Once the node opens that stream, AddNode must not
// add it there: the other stream's leader finds the default stream
// without it (joinConflict). The stream ends without the node.
func TestRemoveNodeRacesAddNodeAcrossStreams(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[0].CreateStream(ctx, StreamConfig{Name: "s"}))
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	x := c.addJoinerWith(func(_ *Config, sm *seams) {
		sm.opening = func(name, stage string) error {
			if name == "s" && stage == "begin" {
				<-release
			}
			return nil
		}
	})
	addr := c.cfgs[x].Addr
	added := make(chan error, 1)
	go func() { added <- c.nodes[0].AddNode(ctx, addr) }()
	require.True(t, waitFor(60*time.Second, func() bool { return members(t, c.nodes[0])[addr] }), "a voter of the default stream")

	require.NoError(t, c.nodes[1].RemoveNode(ctx, addr))
	free()
	require.ErrorContains(t, <-added, "not a member of the default stream", "AddNode does not complete")
	s, err := c.nodes[0].Stream("s")
	require.NoError(t, err)
	require.True(t, waitFor(10*time.Second, func() bool {
		ms, err := s.Members()
		return err == nil && !slices.ContainsFunc(ms, func(m Member) bool { return m.Addr == addr })
	}), "stream s does not keep the removed node")
	require.NotContains(t, members(t, c.nodes[0]), addr)
}

// TestRemovalLeaderDown: in a cluster of three, the leader that removed a
// node and sent it the notice is cut off, as by a crash (its connections
// and listener closed, its Raft stopped), before the node's check reaches
// it: the other voter leaves the node out, the leader does not answer,
// and no leader is elected (the two left need both). The node keeps
// asking until the leader is back and confirms, and then stops (before,
// it ignored the notice, never got another, and called elections for
// good).
func TestRemovalLeaderDown(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(free)
	var victimAddr atomic.Pointer[string]
	var victimRounds atomic.Int64
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		addr := cfg.Addr
		sm.removalRound = func(round int) {
			if v := victimAddr.Load(); v != nil && *v == addr {
				if round == 0 {
					<-hold
				}
				victimRounds.Store(int64(round))
			}
		}
	})
	c.waitReady()
	lead := c.waitLeader()
	victim := (lead + 1) % len(c.nodes)
	victimAddr.Store(&c.cfgs[victim].Addr)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[lead].RemoveNode(ctx, c.cfgs[victim].Addr))
	c.nodes[lead].mux.m.shut() // cut off as by a crash: no handover (Close hands over)
	require.NoError(t, c.nodes[lead].shutdownRaft())
	c.nodes[lead].Close()
	c.nodes[lead] = nil
	free()
	rounds := removalCheckRounds + 1 // past the check's first rounds, the leader still down
	require.True(t, waitFor(30*time.Second, func() bool { return victimRounds.Load() >= int64(rounds) }))
	require.False(t, c.nodes[victim].removed.Load(), "not confirmed while the leader is down")
	c.start(lead)
	require.True(t, waitFor(60*time.Second, func() bool { return c.nodes[victim].removed.Load() }),
		"the removed node learned it once a leader answered (ignored notices: %d)", c.nodes[victim].Stats().IgnoredRemovals)
}

// TestStaleNonvoterDropped: a non-voter whose heartbeats have failed for
// staleNonvoterAfter (here, by a seam, a second) is taken out by its
// leader: an AddNode that stopped after adding it left it listed, and
// nothing else would. A voter that is down as long stays, and does not
// take the membership slot every round (each release counts as a change
// for the apply rules' retries); so does a non-voter that answers.
func TestStaleNonvoterDropped(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) { sm.staleNonvoter = time.Second })
	c.waitReady()
	lead := c.waitLeader()
	down := (lead + 1) % 3
	c.stop(down)
	dead := freeAddrs(t, 1)[0]
	require.NoError(t, c.nodes[lead].raft.AddNonvoter(raft.ServerID(dead), raft.ServerAddress(dead), 0, 0).Error())
	require.Contains(t, members(t, c.nodes[lead]), dead)
	require.True(t, waitFor(30*time.Second, func() bool {
		_, listed := members(t, c.nodes[lead])[dead]
		return !listed
	}), "the stale non-voter is taken out")
	n, s := c.nodes[lead].node, c.nodes[lead].defaultStream
	// A non-voter that answers stays, though its failures are recorded as
	// an hour old (hashicorp/raft does not report a heartbeat that resumed
	// in a new term).
	live := c.cfgs[c.addJoiner()].Addr
	require.NoError(t, c.nodes[lead].raft.AddNonvoter(raft.ServerID(live), raft.ServerAddress(live), 0, 0).Error())
	s.peerWatch.mu.Lock()
	s.peerWatch.failing[raft.ServerID(live)] = failure{since: time.Now().Add(-time.Hour)}
	s.peerWatch.mu.Unlock()
	require.True(t, waitFor(10*time.Second, func() bool { return !s.dropping.Load() }))
	r0, gen := n.rounds.Load(), s.confGen.Load()
	require.True(t, waitFor(30*time.Second, func() bool { return n.rounds.Load() >= r0+3 }))
	require.True(t, members(t, c.nodes[lead])[c.cfgs[down].Addr], "the voter that is down stays, three rounds on")
	require.Contains(t, members(t, c.nodes[lead]), live, "the non-voter that answers stays")
	require.Equal(t, gen, s.confGen.Load(), "the voter that is down does not take the membership slot each round")
}
