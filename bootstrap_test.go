package logx

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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
}
