package logx

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// TestEmptyNodesWaitForLeader: both followers of a 3-node cluster
// restarted on empty Dirs together, the leader up. Each asks its peers,
// finds the leader's group running and does not bootstrap, in the default
// stream, and neither can be elected over a log of its own with the
// other's vote (two empty nodes are a majority); they follow the old
// leader, and every entry of both streams is kept, the files identical.
// A first start, where no peer has a history, still bootstraps (every
// other test's cluster; TestBootstrapFirstStart).
func TestEmptyNodesWaitForLeader(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.Streams = []StreamConfig{{Name: "audit"}}
		cfg.ElectionTimeout = time.Second // the leader's answer comes within it, however loaded the machine
	})
	c.waitReady()
	lead := c.leaderIndex()
	require.GreaterOrEqual(t, lead, 0)
	c.logAppend("before", 50)
	c.waitSameSeq(150)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	audit := func(i int) *Stream {
		a, err := c.nodes[i].Stream("audit")
		require.NoError(t, err)
		return a
	}
	for k := range 20 {
		_, err := audit(lead).Append(ctx, LevelInfo, "before", "k", k)
		require.NoError(t, err)
	}
	auditHolds := func(n uint64) bool {
		for i := range c.nodes {
			if a, err := c.nodes[i].Stream("audit"); err != nil || a.Stats().Seq < n {
				return false
			}
		}
		return true
	}
	require.True(t, waitFor(30*time.Second, func() bool { return auditHolds(20) }))
	var empties []int
	for i := range c.cfgs {
		if i != lead {
			empties = append(empties, i)
			c.stop(i)
			require.NoError(t, os.RemoveAll(c.cfgs[i].Dir))
		}
	}
	for _, i := range empties {
		c.start(i)
		require.True(t, c.nodes[i].skippedBootstrap(), "node %d bootstrapped the default stream", i+1)
	}
	for _, i := range empties {
		m := c.nodes[i].runsWith.Load()
		require.NotNil(t, m)
		require.Contains(t, *m, c.cfgs[lead].Addr, "the members the leader listed")
	}
	logAndCompare(c, 150+3*10)
	// audit: a declared stream, opened before the catalog says who its
	// voters are, then bootstrapped only if no member runs it (or already
	// given its configuration by the leader): what it held is kept.
	for i := range c.nodes {
		_, err := audit(i).Append(ctx, LevelInfo, "after", "i", i)
		require.NoError(t, err)
	}
	require.True(t, waitFor(30*time.Second, func() bool { return auditHolds(20 + 3) }), "audit converges")
	for i := range c.nodes {
		require.NoError(t, audit(i).Flush(ctx))
	}
	requireIdentical(t, streamDirs(c, "audit"), "audit.log")
}

// restartHeld closes every node of c, empties the Dirs of all but node
// 0, and starts all three at once, node 0's default stream held at stage
// ("begin" or "raft", seams.opening) until release is closed (a member
// with Raft state slow to start: a whole cluster restarted with two lost
// disks); node 0 then opens it, or fails with fail if not nil. It returns
// the number of times node 0 answered that it was starting, the release,
// and a function that waits for the New of each node given and installs
// it in c (an error other than fail, or a minute without an answer, fails
// the test). The test's end releases node 0 if the test did not.
func restartHeld(c *testCluster, stage string, fail error) (*atomic.Int64, func(), func(nodes ...int)) {
	t := c.t
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	c.closeAll()
	for i := 1; i < len(c.cfgs); i++ {
		require.NoError(t, os.RemoveAll(c.cfgs[i].Dir))
	}
	var answers atomic.Int64
	held := make(chan struct{})
	c.seams[0].opening = func(name, at string) error {
		if name == DefaultStream && at == stage {
			close(held)
			<-hold
			return fail
		}
		return nil
	}
	c.seams[0].startingAnswered = func() { answers.Add(1) }
	type started struct {
		lx  *Logx
		err error
	}
	done := make([]chan started, len(c.cfgs))
	for i := range c.cfgs {
		done[i] = make(chan started, 1)
		go func() {
			lx, err := newNode(c.cfgs[i], c.seams[i])
			done[i] <- started{lx, err}
		}()
		if i == 0 { // node 0 listens before the others ask it
			select {
			case <-held:
			case s := <-done[0]:
				t.Fatalf("node 1 started without reaching %q: %v", stage, s.err)
			case <-time.After(time.Minute):
				t.Fatalf("node 1 did not reach %q within a minute", stage)
			}
		}
	}
	return &answers, release, func(nodes ...int) {
		t.Helper()
		for _, i := range nodes {
			select {
			case s := <-done[i]:
				if i == 0 && fail != nil {
					require.ErrorIs(t, s.err, fail)
					continue
				}
				require.NoError(t, s.err, "node %d", i+1)
				c.nodes[i] = s.lx
			case <-time.After(time.Minute):
				t.Fatalf("node %d did not start within a minute", i+1)
			}
		}
	}
}

// TestEmptyNodesWaitForStartingMember: the whole cluster restarted at
// once, two of its three nodes on empty Dirs, the one with the log slow to
// open its stream (held before it opens anything, or before NewRaft).
// It answers their status requests that it is starting with Raft state;
// they ask again rather than bootstrap when the election timeout passes
// (bootstrapped, they would be a majority with a log of their own), and
// once it is open they follow it: every entry is kept, the files
// identical. They ask again about every fifth of an election timeout, so
// 20 answers mean about two election timeouts of waiting: without the
// waiting each would have asked once and bootstrapped.
func TestEmptyNodesWaitForStartingMember(t *testing.T) {
	for _, stage := range []string{"begin", "raft"} {
		t.Run(stage, func(t *testing.T) {
			c := newTestCluster(t, 3, func(cfg *Config) { cfg.ElectionTimeout = time.Second })
			c.logAppend("before", 50)
			c.waitSameSeq(150)
			answers, release, started := restartHeld(c, stage, nil)
			waited := waitFor(30*time.Second, func() bool { return answers.Load() >= 20 })
			release()
			started(0, 1, 2)
			require.True(t, waited, "the emptied nodes asked %d times while node 1 was starting", answers.Load())
			for i := 1; i < 3; i++ {
				require.True(t, c.nodes[i].skippedBootstrap(), "node %d bootstrapped while node 1, which has the log, was starting", i+1)
			}
			c.waitReady()
			logAndCompare(c, 150+3*10)
		})
	}
}

// TestStartingMemberGone: the member that answered it was starting with
// Raft state fails to start; once it no longer answers, the emptied nodes
// bootstrap, as when no member answers (the check fails open).
func TestStartingMemberGone(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.logAppend("before", 5)
	c.waitSameSeq(15)
	gone := errors.New("node 1 could not start")
	answers, release, started := restartHeld(c, "raft", gone)
	require.True(t, waitFor(30*time.Second, func() bool { return answers.Load() >= 4 }), "the emptied nodes asked node 1")
	release()
	started(0, 1, 2)
	for i := 1; i < 3; i++ {
		require.False(t, c.nodes[i].skippedBootstrap(), "node %d bootstrapped once node 1 was gone", i+1)
	}
}

// TestAskingStopsOnClose: a stream waiting for a member that is starting
// with Raft state gives up with ErrClosed when it closes, rather than
// bootstrap (clusterRuns's callers then leave it without a
// configuration).
func TestAskingStopsOnClose(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.logAppend("before", 5)
	c.waitSameSeq(15)
	c.stop(0)
	var answers atomic.Int64
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	held := make(chan struct{})
	c.seams[0].opening = func(name, stage string) error {
		if name == DefaultStream && stage == "raft" {
			close(held)
			<-hold
		}
		return nil
	}
	c.seams[0].startingAnswered = func() { answers.Add(1) }
	started := make(chan error, 1)
	go func() {
		lx, err := newNode(c.cfgs[0], c.seams[0])
		if err == nil {
			c.nodes[0] = lx
		}
		started <- err
	}()
	select { // node 1 answers from now on
	case <-held:
	case err := <-started:
		t.Fatalf("node 1 started without being held: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("node 1 did not reach its Raft within a minute")
	}
	s := c.nodes[1].defaultStream
	asked := make(chan error, 1)
	go func() {
		_, _, err := s.clusterRuns([]string{c.cfgs[0].Addr})
		asked <- err
	}()
	require.True(t, waitFor(30*time.Second, func() bool { return answers.Load() >= 2 }), "it asked again while node 1 was starting")
	s.cancelClosing()
	select {
	case err := <-asked:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(30 * time.Second):
		t.Fatal("still asking after the stream closed")
	}
	release()
	require.NoError(t, <-started)
}

// TestBootstrapFirstStart: on a cluster's first start, its nodes started
// one after another, the first finds no peer running and bootstraps
// (which gives it term 1 at once, but it commits nothing alone); the
// second finds it with nothing committed and bootstraps too, rather than
// wait without a configuration for a node that may never commit; the
// cluster works.
func TestBootstrapFirstStart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	require.False(t, c.nodes[0].skippedBootstrap(), "the first node found no peer running")
	require.False(t, c.nodes[1].skippedBootstrap(), "the second found the first with nothing committed")
	c.waitReady()
	logAndCompare(c, 3*10)
}

// TestRunsWith: which status answers keep a node with empty Raft state
// from bootstrapping.
func TestRunsWith(t *testing.T) {
	me, peer := "127.0.0.1:2", "127.0.0.1:1"
	lists := []PeerStats{{Addr: me, Voter: true}}
	for _, tc := range []struct {
		st   Stats
		want bool
		why  string
	}{
		{Stats{Addr: peer, State: "Leader", CommitIndex: 5, Peers: lists}, true, "a leader that committed"},
		{Stats{Addr: peer, State: "Follower", AppliedIndex: 5, Peers: lists}, true, "a member that applied, restarted (no commit index yet)"},
		{Stats{Addr: peer, State: "Candidate", Term: 1, Peers: lists}, false, "bootstrapped, nothing committed"},
		{Stats{Addr: peer, State: "Follower", Term: 3, Leader: peer}, false, "no configuration listing this node"},
		{Stats{Addr: peer, State: "Shutdown", CommitIndex: 5, Peers: lists}, false, "a removed node"},
		{Stats{Addr: "127.0.0.1:9", State: "Leader", CommitIndex: 5, Peers: lists}, false, "answered as another address"},
		{Stats{Addr: peer, State: "Leader", CommitIndex: 5, Peers: []PeerStats{{Addr: "127.0.0.1:3"}}}, false, "a configuration without this node"},
	} {
		require.Equal(t, tc.want, runsWith(tc.st, peer, me), tc.why)
	}
}

// TestEmptyNodeRaftPeers: a node with no configuration yet accepts Raft
// from any certificate of the CA only while it knows no members: once it
// holds the members a peer listed when it did not bootstrap (runsWith), a
// certificate naming none of their hosts is refused, as by a node with a
// configuration (TestHostileRaftPeer).
func TestEmptyNodeRaftPeers(t *testing.T) {
	r := newHostileRig(t)
	cfg := testConfig(t, 0, freeAddrs(t, 1), filepath.Join(r.base, "empty"))
	cfg.NodeID, cfg.Peers, cfg.Join, cfg.TLS = "empty", r.c.cfgs[0].Peers, true, r.ca.nodeTLS(t, "empty")
	lx, err := New(cfg)
	require.NoError(t, err)
	defer lx.Close()
	heartbeat := func() error {
		var resp raft.AppendEntriesResponse
		return raftClient(t, r.evil).AppendEntries("x", raft.ServerAddress(cfg.Addr), &raft.AppendEntriesRequest{ // a new connection each time
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte("127.0.0.1:9")}, Term: 1}, &resp)
	}
	require.NoError(t, heartbeat(), "knowing no member, it cannot tell")
	members := slices.Clone(r.c.cfgs[0].Peers)
	lx.runsWith.Store(&members)
	require.Error(t, heartbeat(), "the attacker's certificate names no member's host")

	// A node that is not joining, with empty Raft state, held before it
	// asks its peers whether to bootstrap: its Raft listens, and takes
	// Peers only.
	cfg = testConfig(t, 0, freeAddrs(t, 1), filepath.Join(r.base, "asking"))
	cfg.NodeID, cfg.TLS = "asking", r.ca.nodeTLS(t, "asking")
	cfg.Peers = append(slices.Clone(r.c.cfgs[0].Peers), cfg.Addr)
	asking, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	done := make(chan error, 1)
	go func() {
		lx, err := newNode(cfg, seams{opening: func(name, stage string) error {
			if name == DefaultStream && stage == "ask" {
				close(asking)
				<-release
			}
			return nil
		}})
		if err == nil {
			err = lx.Close()
		}
		done <- err
	}()
	select {
	case <-asking:
	case <-time.After(time.Minute):
		t.Fatal("the node did not reach its question")
	}
	require.Error(t, heartbeat(), "a node deciding whether to bootstrap takes Raft from Peers only")
	once.Do(func() { close(release) })
	require.NoError(t, <-done)
}
