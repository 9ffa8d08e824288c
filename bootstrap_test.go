package logx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/assert"
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
	t.Parallel()
	for _, join := range []bool{false, true} {
		// With Join (as after a membership change) the default stream
		// joins without asking; the declared stream, once the catalog
		// reaches the node, asks rather than bootstrap with the catalog's
		// voters (two of three, they could elect one of themselves there).
		t.Run(map[bool]string{false: "peers", true: "join"}[join], func(t *testing.T) { emptyNodesWaitForLeader(t, join) })
	}
}

func emptyNodesWaitForLeader(t *testing.T, join bool) {
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
	audit := func(i int) *Stream { return c.stream(i, "audit") }
	for k := range 20 {
		_, err := audit(lead).Append(ctx, LevelInfo, "before", "k", k)
		require.NoError(t, err)
	}
	auditHolds := func(n uint64) bool { return c.streamHolds("audit", n) }
	require.True(t, waitFor(30*time.Second, func() bool { return auditHolds(20) }))
	var empties []int
	for i := range c.cfgs {
		if i != lead {
			empties = append(empties, i)
			c.stop(i)
			require.NoError(t, os.RemoveAll(c.cfgs[i].Dir))
			c.cfgs[i].Join = join
		}
	}
	for _, i := range empties {
		c.start(i)
		if !join {
			require.True(t, c.nodes[i].skippedBootstrap(), "node %d bootstrapped the default stream", i+1)
			m := c.nodes[i].runsWith.Load()
			require.NotNil(t, m)
			require.Contains(t, *m, c.cfgs[lead].Addr, "the members the leader listed")
		}
	}
	logAndCompare(c, 150+3*10)
	// audit: a declared stream, opened before the catalog says who its
	// voters are, then bootstrapped only if no member runs it (or already
	// given its configuration by the leader): what it held is kept.
	require.True(t, waitFor(30*time.Second, func() bool { return auditHolds(20) }), "audit caught up")
	for _, i := range empties {
		// With Join it asked a member when the catalog reached it, unless
		// the leader's entries came first (a joining node takes Raft
		// connections at once): either way, no configuration of its own.
		require.False(t, audit(i).bootstrapped.Load(), "node %d bootstrapped audit", i+1)
		require.False(t, c.nodes[i].bootstrapped.Load(), "node %d bootstrapped the default stream", i+1)
	}
	c.streamConverges(ctx, "audit", 20)
}

// stream returns node i's stream name.
func (c *testCluster) stream(i int, name string) *Stream {
	c.t.Helper()
	s, err := c.nodes[i].Stream(name)
	require.NoError(c.t, err)
	return s
}

// streamHolds reports whether every node has stream name open with at
// least n entries.
func (c *testCluster) streamHolds(name string, n uint64) bool {
	for _, lx := range c.nodes {
		if s, err := lx.Stream(name); err != nil || s.Stats().Seq < n {
			return false
		}
	}
	return true
}

// streamConverges appends one entry to stream name from every node, waits
// until every node holds them after the before it held, and checks the
// stream's files are identical on every node.
func (c *testCluster) streamConverges(ctx context.Context, name string, before uint64) {
	c.t.Helper()
	for i := range c.nodes {
		_, err := c.stream(i, name).Append(ctx, LevelInfo, "after", "i", i)
		require.NoError(c.t, err)
	}
	require.True(c.t, waitFor(30*time.Second, func() bool { return c.streamHolds(name, before+uint64(len(c.nodes))) }), "%s converges", name)
	for i := range c.nodes {
		require.NoError(c.t, c.stream(i, name).Flush(ctx))
	}
	requireIdentical(c.t, streamDirs(c, name), name+".log")
}

// restartHeld closes every node of c, empties the Dirs of all but node
// keep, and starts them all at once, node keep's stream held at stage
// ("begin" or "raft", seams.opening) until release is closed (a member
// with Raft state slow to start: a whole cluster restarted with lost
// disks); node keep then opens it, or fails with fail if not nil. It
// returns the number of times node keep answered that it was starting,
// the release, and a function that waits for the New of each node given
// and installs it in c (an error other than fail, or a minute without an
// answer, fails the test). The test's end releases node keep if the test
// did not.
func restartHeld(c *testCluster, keep int, stream, stage string, fail error) (*atomic.Int64, func(), func(nodes ...int)) {
	return restartHeldWiping(c, keep, stream, stage, fail, func(i int) string { return c.cfgs[i].Dir })
}

// restartHeldWiping is restartHeld that removes wipe(i) of every node but
// keep (restartHeld: the whole Dir).
func restartHeldWiping(c *testCluster, keep int, stream, stage string, fail error, wipe func(i int) string) (*atomic.Int64, func(), func(nodes ...int)) {
	t := c.t
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	c.closeAll()
	for i := range c.cfgs {
		if i != keep {
			require.NoError(t, os.RemoveAll(wipe(i)))
		}
	}
	var answers atomic.Int64
	held := make(chan struct{})
	c.seams[keep].opening = func(name, at string) error {
		if name == stream && at == stage {
			close(held)
			<-hold
			return fail
		}
		return nil
	}
	c.seams[keep].startingAnswered = func() { answers.Add(1) }
	type started struct {
		lx  *Logx
		err error
	}
	done := make([]chan started, len(c.cfgs))
	order := []int{keep} // it listens before the others ask it
	for i := range c.cfgs {
		if i != keep {
			order = append(order, i)
		}
	}
	for _, i := range order {
		done[i] = make(chan started, 1)
		go func() {
			lx, err := newNode(c.cfgs[i], c.seams[i])
			done[i] <- started{lx, err}
		}()
		if i == keep {
			select {
			case <-held:
			case s := <-done[keep]:
				t.Fatalf("node %d started without reaching %q: %v", keep+1, stage, s.err)
			case <-time.After(time.Minute):
				t.Fatalf("node %d did not reach %q within a minute", keep+1, stage)
			}
		}
	}
	taken := make([]bool, len(done))
	t.Cleanup(func() { // nodes a failed test did not install
		release()
		for i := range done {
			if taken[i] {
				continue
			}
			select {
			case s := <-done[i]:
				if s.err == nil {
					s.lx.Close()
				}
			case <-time.After(time.Minute):
			}
		}
	})
	return &answers, release, func(nodes ...int) {
		t.Helper()
		for _, i := range nodes {
			select {
			case s := <-done[i]:
				taken[i] = true
				if i == keep && fail != nil {
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
	t.Parallel()
	for _, stage := range []string{"begin", "raft"} {
		t.Run(stage, func(t *testing.T) {
			c := newTestCluster(t, 3, func(cfg *Config) { cfg.ElectionTimeout = time.Second })
			c.logAppend("before", 50)
			c.waitSameSeq(150)
			answers, release, started := restartHeld(c, 0, DefaultStream, stage, nil)
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

// TestStreamAsksAtStart: two nodes whose default stream kept its Raft
// state but a catalog stream's is empty (a wiped node that closed, or
// crashed, while that stream asked its peers, after the default stream
// had caught up and checkpointed the catalog) ask before they bootstrap
// that stream at the next start, as a node started empty does: the node
// with its log is slow to open it, and they wait for it and follow it.
// They skipped the asking because their default stream had not started
// empty, and two of three could elect one of themselves over a log of
// their own, losing the stream's acknowledged entries.
func TestStreamAsksAtStart(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.ElectionTimeout = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.nodes[0].CreateStream(ctx, StreamConfig{Name: "s"}))
	for i := range c.nodes {
		require.True(t, waitFor(30*time.Second, func() bool { _, err := c.nodes[i].Stream("s"); return err == nil }))
	}
	for i, lx := range c.nodes {
		s, err := lx.Stream("s")
		require.NoError(t, err)
		require.NoError(t, s.WaitReady(ctx))
		for k := range 10 {
			_, err := s.Append(ctx, LevelInfo, "in s", "node", i, "k", k)
			require.NoError(t, err)
		}
	}
	// Node 1 must hold every entry before the others' copies go: an
	// acknowledged entry is on a majority, which may be nodes 2 and 3.
	require.True(t, waitFor(30*time.Second, func() bool { return c.streamHolds("s", 30) }), "stream s caught up before the restart")
	answers, release, started := restartHeldWiping(c, 0, "s", "raft", nil, func(i int) string {
		return filepath.Join(c.cfgs[i].Dir, streamsDir, "s")
	})
	waited := waitFor(30*time.Second, func() bool { return answers.Load() >= 20 })
	release()
	started(0, 1, 2)
	require.True(t, waited, "the nodes whose stream s was empty asked %d times while node 1 was starting", answers.Load())
	for i := 1; i < 3; i++ {
		s, err := c.nodes[i].Stream("s")
		require.NoError(t, err)
		require.True(t, s.skippedBootstrap(), "node %d bootstrapped stream s while node 1, which has its log, was starting", i+1)
	}
	for i, lx := range c.nodes {
		s, err := lx.Stream("s")
		require.NoError(t, err)
		require.NoError(t, s.WaitReady(ctx), "node %d", i+1)
		require.True(t, waitFor(30*time.Second, func() bool { return s.Stats().Seq == 30 }), "node %d holds %d of stream s's 30 entries", i+1, s.Stats().Seq)
	}
	var dirs []string
	for i := range c.cfgs {
		dirs = append(dirs, filepath.Join(c.cfgs[i].Dir, streamsDir, "s"))
	}
	requireIdentical(t, dirs, "s.log")
}

// TestStartingMemberGone: the member that answered it was starting with
// Raft state fails to start; once it no longer answers, the emptied nodes
// bootstrap, as when no member answers (the check fails open).
func TestStartingMemberGone(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.logAppend("before", 5)
	c.waitSameSeq(15)
	gone := errors.New("node 1 could not start")
	answers, release, started := restartHeld(c, 0, DefaultStream, "raft", gone)
	require.True(t, waitFor(30*time.Second, func() bool { return answers.Load() >= 4 }), "the emptied nodes asked node 1")
	release()
	started(0, 1, 2)
	for i := 1; i < 3; i++ {
		require.False(t, c.nodes[i].skippedBootstrap(), "node %d bootstrapped once node 1 was gone", i+1)
	}
}

// restartHolding stops node i of c and starts it again with its default
// stream held before NewRaft (it answers "starting" meanwhile), returning
// once it is held: the release, and a function that waits for its New and
// installs it in c.
func restartHolding(c *testCluster, i int) (release, started func()) {
	t := c.t
	c.stop(i)
	held, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	var taken bool
	done := make(chan *Logx, 1)
	t.Cleanup(func() { // a failed test did not install it
		release()
		select {
		case lx := <-done:
			if !taken && lx != nil {
				lx.Close()
			}
		case <-time.After(time.Minute):
		}
	})
	c.seams[i].opening = func(name, stage string) error {
		if name == DefaultStream && stage == "raft" {
			close(held)
			<-hold
		}
		return nil
	}
	go func() {
		lx, err := newNode(c.cfgs[i], c.seams[i])
		if err != nil {
			t.Errorf("node %d: %v", i+1, err)
		}
		done <- lx
	}()
	select {
	case <-held:
	case <-done:
		t.Fatalf("node %d started without being held", i+1)
	case <-time.After(time.Minute):
		t.Fatalf("node %d did not reach its Raft within a minute", i+1)
	}
	return release, func() {
		t.Helper()
		select {
		case lx := <-done:
			require.NotNil(t, lx)
			c.nodes[i], taken = lx, true
			done <- nil // for the cleanup
		case <-time.After(time.Minute):
			t.Fatalf("node %d did not start within a minute", i+1)
		}
	}
}

// TestAskingStopsOnClose: a stream waiting for a member that is starting
// with Raft state gives up with ErrClosed when its node closes, rather
// than bootstrap (clusterRuns's callers then leave it without a
// configuration).
func TestAskingStopsOnClose(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.LogOutput = io.MultiWriter(cfg.LogOutput, &logs) })
	c.logAppend("before", 5)
	c.waitSameSeq(15)
	release, started := restartHolding(c, 0)
	s := c.nodes[1].defaultStream
	asked := make(chan error, 1)
	go func() {
		_, _, err := s.clusterRuns([]string{c.cfgs[0].Addr}, nil)
		asked <- err
	}()
	require.True(t, waitFor(30*time.Second, func() bool {
		return strings.Contains(logs.String(), c.cfgs[0].Addr+", which has Raft state, is still starting: waiting")
	}), "node 2 waits for node 1")
	c.stop(1)
	select {
	case err := <-asked:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(30 * time.Second):
		t.Fatal("still asking after the node closed")
	}
	release()
	started()
}

// TestAskingNodeHoldsRaft: a node with empty Raft state takes no Raft
// connection until it has decided whether to bootstrap. A vote request
// sent meanwhile would store a term, and BootstrapCluster then refuses
// (raft.ErrCantBootstrap): the node would be left without a
// configuration, never to stand for election. The request waits; the
// node bootstraps, then answers it.
func TestAskingNodeHoldsRaft(t *testing.T) {
	t.Parallel()
	addrs := freeAddrs(t, 2) // the second never listens
	cfg := testConfig(t, 0, addrs, filepath.Join(t.TempDir(), "n1"))
	asking, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	started := make(chan *Logx, 1)
	go func() {
		lx, err := newNode(cfg, seams{opening: func(name, stage string) error {
			if name == DefaultStream && stage == "ask" {
				close(asking)
				<-hold
			}
			return nil
		}})
		if err != nil {
			t.Errorf("New: %v", err)
		}
		started <- lx
	}()
	select {
	case <-asking:
	case <-time.After(time.Minute):
		t.Fatal("the node did not reach its question")
	}
	voted := make(chan error, 1)
	go func() {
		var resp raft.RequestVoteResponse
		voted <- raftClient(t, nil).RequestVote("x", raft.ServerAddress(cfg.Addr), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(addrs[1]), Addr: []byte(addrs[1])},
			Term:      5, LastLogIndex: 100, LastLogTerm: 4}, &resp)
	}()
	// Unanswered while the node decides: an answer now would mean Raft
	// took it. (Bounded: the request cannot be seen waiting from here.)
	select {
	case err := <-voted:
		t.Fatalf("a vote request was answered before the node decided whether to bootstrap (err %v)", err)
	case <-time.After(time.Second):
	}
	release()
	lx := <-started
	require.NotNil(t, lx)
	defer lx.Close()
	require.NoError(t, <-voted, "answered once the node decided")
	servers, err := lx.defaultStream.serverAddrs(false)
	require.NoError(t, err)
	require.ElementsMatch(t, addrs, servers, "it bootstrapped with Peers")
}

// TestStartingAnswerBounded: a node still starting answers "starting"
// only to a status request of at most maxStartingRequest bytes; a larger
// one is left, read no further than its header, to the stream's handler
// once it opens, which answers it in full.
func TestStartingAnswerBounded(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	release, started := restartHolding(c, 0)
	ask := func(req controlRequest) (controlResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		conn, err := dialProto(ctx, c.cfgs[0].Addr, "", wire.ProtoControl, 5*time.Second, nil)
		require.NoError(t, err)
		defer conn.Close()
		return controlExchange(ctx, conn, req, time.Now().Add(20*time.Second))
	}
	resp, err := ask(controlRequest{Op: "status"})
	require.NoError(t, err)
	require.NotNil(t, resp.Starting, "a small status request is answered at once")
	require.True(t, resp.Starting.RaftState)
	require.Equal(t, c.cfgs[0].Addr, resp.Starting.Addr)
	require.Contains(t, resp.Error, "is starting")

	big := make(chan controlResponse, 1)
	go func() {
		// Padding in an unknown field: the request is still a status request.
		resp, err := ask(controlRequest{Op: "status", Name: strings.Repeat("x", maxStartingRequest)})
		if err != nil {
			t.Errorf("the large request: %v", err)
		}
		big <- resp
	}()
	select {
	case resp := <-big:
		t.Fatalf("a request over the bound was answered before the stream opened: %+v", resp)
	case <-time.After(time.Second): // bounded: the request cannot be seen waiting from here
	}
	release()
	resp = <-big
	require.Nil(t, resp.Starting)
	require.NotNil(t, resp.Status, "the stream's handler answered it in full")
	started()
}

// TestStartingState: which streams a node answers "starting" for, and
// with what, before it has begun to open them.
func TestStartingState(t *testing.T) {
	dir := t.TempDir()
	n := &node{cfg: Config{Dir: dir, Streams: []StreamConfig{{Name: "audit"}, {Name: "broken"}}}, byName: map[string]*Stream{},
		openErr: map[string]error{"broken": errors.New("no room")},
		// A stream CreateStream made, in the checkpoint's catalog: the
		// default stream, not listed yet, cannot say so.
		startCatalog: map[string]*catalogEntry{"made": {}, "gone": {Deleted: 7}}}
	n.stopCtx, n.cancelStop = context.WithCancel(context.Background())
	for _, name := range []string{DefaultStream, "audit", "broken", "made", "gone"} {
		sc := n.cfg.streamConfig(StreamConfig{Name: name})
		if name == DefaultStream {
			sc.Dir = dir
		}
		require.NoError(t, os.MkdirAll(filepath.Join(sc.Dir, "raft"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(sc.Dir, "raft", "wal-meta.db"), nil, 0o644))
	}
	m := &mux{states: map[string]bool{}, starting: n.startingState}
	for _, tc := range []struct {
		name      string
		state, ok bool
		why       string
	}{
		{DefaultStream, true, true, "the default stream, its raft/ in Dir"},
		{"audit", true, true, "a declared stream, its raft/ under streams/"},
		{"broken", false, false, "a stream tend failed to open"},
		{"made", true, true, "a stream of the catalog, before the default stream is listed"},
		{"gone", false, false, "a deleted stream of the catalog"},
		{"other", false, false, "a stream this node is not to open"},
	} {
		state, ok := m.stateOf(tc.name)
		require.Equal(t, [2]bool{tc.state, tc.ok}, [2]bool{state, ok}, tc.why)
	}
	m.noteState("audit", false) // opening it, Raft's stores say: empty
	state, ok := m.stateOf("audit")
	require.Equal(t, [2]bool{false, true}, [2]bool{state, ok}, "as newStream noted it")
	m.asking.Add(1)
	state, ok = m.stateOf(DefaultStream)
	require.Equal(t, [2]bool{false, true}, [2]bool{state, ok}, "while this node asks, one it has not begun answers without state")
	m.asking.Add(-1)
	n.cancelStop()
	_, ok = m.stateOf(DefaultStream)
	require.False(t, ok, "not once the node closes")
}

// skippedBootstrap reports whether this stream did not bootstrap because a
// member runs its group (skipBootstrap).
func (lx *Stream) skippedBootstrap() bool { return lx.runsWith.Load() != nil }

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
		{Stats{Addr: peer, State: "Follower", Term: 2, LastIndex: 2, Peers: lists}, true, "a member restarted before its first checkpoint: its log has a leader's entry"},
		{Stats{Addr: peer, State: "Candidate", Term: 1, LastIndex: 1, Peers: lists}, false, "bootstrapped, nothing committed"},
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
// configuration (TestHostileRaftPeer), and a connection it let in before
// is closed at the next round.
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
	kept := raftClient(t, r.evil) // one connection, kept open
	keptBeat := func() error {
		var resp raft.AppendEntriesResponse
		return kept.AppendEntries("x", raft.ServerAddress(cfg.Addr), &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte("127.0.0.1:9")}, Term: 1}, &resp)
	}
	require.NoError(t, keptBeat())
	members := slices.Clone(r.c.cfgs[0].Peers)
	lx.runsWith.Store(&members)
	require.Error(t, heartbeat(), "the attacker's certificate names no member's host")
	// A connection let in before is vetted again every round (tend's, or
	// this one; the close runs on a goroutine of its own): it spoke Raft
	// for good.
	lx.node.checkPeerCerts()
	require.True(t, waitFor(10*time.Second, func() bool { return keptBeat() != nil }),
		"the connection let in before the members were known still speaks Raft")
}

// TestEmptyNodesAskAddedMember: a declared stream's first voters are the
// catalog's (the cluster's first three nodes); a node added since is a
// member of it too, and may be the only one left with its log. The whole
// cluster restarted, the three first nodes on empty Dirs with Join (as
// after a membership change), the added node's audit slow to open: once
// the catalog reaches them, they ask the default stream's members as well
// before they bootstrap audit (waiting for the default stream to know
// them), find the added node starting with its Raft state, wait for it
// and follow it; every entry is kept. (Asking only the
// catalog's voters, all empty, they bootstrapped audit among themselves,
// a group of three beside the added node's: the chaos harness's
// lose-disks found it.)
func TestEmptyNodesAskAddedMember(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.Streams = []StreamConfig{{Name: "audit"}}
		cfg.ElectionTimeout = time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	added := c.addJoiner()
	require.NoError(t, c.nodes[added].AddNode(ctx, c.cfgs[added].Addr))
	require.NoError(t, c.nodes[added].WaitReady(ctx))
	audit := func(i int) *Stream { return c.stream(i, "audit") }
	waitVoters(t, audit(added), 4, "audit")
	for k := range 20 {
		_, err := audit(added).Append(ctx, LevelInfo, "before", "k", k)
		require.NoError(t, err)
	}
	auditHolds := func(n uint64) bool { return c.streamHolds("audit", n) }
	require.True(t, waitFor(30*time.Second, func() bool { return auditHolds(20) }))
	var empties []int
	for i := range added {
		c.cfgs[i].Join = true
		empties = append(empties, i)
		// The default stream knows no member for a second after its
		// first ask, as when the catalog came with a snapshot's restore,
		// which hashicorp/raft makes before it takes the snapshot's
		// configuration: the stream waits for them.
		var first atomic.Int64
		c.seams[i].membersUnknown = func() bool {
			first.CompareAndSwap(0, time.Now().UnixNano())
			return time.Since(time.Unix(0, first.Load())) < time.Second
		}
	}
	answers, release, started := restartHeld(c, added, "audit", "raft", nil)
	started(empties...) // they join the default stream; audit waits for the catalog
	// Each asks the added node about audit once the catalog names it, and
	// hears that it is starting.
	require.True(t, waitFor(60*time.Second, func() bool { return answers.Load() >= int64(len(empties)) }),
		"the emptied nodes did not ask the added member about audit (%d answers)", answers.Load())
	for _, i := range empties {
		require.False(t, audit(i).skippedBootstrap(), "node %d decided before the added member answered in full", i+1)
	}
	release()
	started(added)
	require.True(t, waitFor(30*time.Second, func() bool { return auditHolds(20) }), "audit caught up")
	for _, i := range empties {
		require.True(t, audit(i).skippedBootstrap(), "node %d bootstrapped audit without the added member", i+1)
	}
	c.streamConverges(ctx, "audit", 20)
}

// TestPeersDifferAtStart: a node whose Peers differ from the voters a
// peer bootstrapped with, whose group has not run, refuses to start with
// an error that names both lists, and bootstraps nothing: started again
// with the same Peers, it bootstraps with them.
func TestPeersDifferAtStart(t *testing.T) {
	t.Parallel()
	addrs := freeAddrs(t, 4)
	base := t.TempDir()
	c := &testCluster{t: t}
	for i := range 3 {
		c.cfgs = append(c.cfgs, testConfig(t, i, addrs[:3], filepath.Join(base, fmt.Sprintf("n%d", i+1))))
		c.seams = append(c.seams, seams{})
		c.nodes = append(c.nodes, nil)
	}
	t.Cleanup(c.closeAll)
	c.start(0) // bootstraps alone: its group does not run yet

	wrong := c.cfgs[1]
	wrong.Peers = []string{addrs[0], addrs[1], addrs[3]}
	lx, err := newNode(wrong, seams{})
	if lx != nil {
		lx.Close()
	}
	require.Error(t, err)
	want := fmt.Sprintf("%s bootstrapped it with the voters %v, and this node would with %v", addrs[0], sortedSet(addrs[:3]), sortedSet(wrong.Peers))
	require.Contains(t, err.Error(), want)

	c.start(1)
	c.start(2)
	c.waitReady()
	logAndCompare(c, 3*10)
	for i, n := range c.nodes {
		st := n.Stats()
		require.Equal(t, sortedSet(addrs[:3]), st.Voters, "node %d", i+1)
		require.Equal(t, uint64(1), st.ConfigIndex, "node %d: the refused start bootstrapped nothing", i+1)
	}
}

// TestPeersDifferRunning: a node whose peer runs the group without it
// (that peer was started with Peers naming itself alone, and committed)
// refuses to start, rather than bootstrap a group whose leader would cut
// that peer's Raft log back under files that keep what it wrote alone.
func TestPeersDifferRunning(t *testing.T) {
	t.Parallel()
	addrs := freeAddrs(t, 2)
	base := t.TempDir()
	alone, err := newNode(testConfig(t, 0, addrs[:1], filepath.Join(base, "n1")), seams{})
	require.NoError(t, err)
	t.Cleanup(func() { alone.Close() })
	_, err = alone.Append(t.Context(), LevelInfo, "written alone")
	require.NoError(t, err)

	lx, err := newNode(testConfig(t, 1, addrs, filepath.Join(base, "n2")), seams{})
	if lx != nil {
		lx.Close()
	}
	require.ErrorContains(t, err, fmt.Sprintf("%s runs it without this node, with the voters [%s]", addrs[0], addrs[0]))
}

// TestPeersDiffer: which status answers make a node with empty Raft state
// refuse to bootstrap.
func TestPeersDiffer(t *testing.T) {
	me, peer, other := "127.0.0.1:2", "127.0.0.1:1", "127.0.0.1:3"
	lx := &Stream{name: DefaultStream, cfg: Config{Addr: me, Peers: []string{me, peer}}}
	for _, tc := range []struct {
		st   Stats
		want bool
		why  string
	}{
		{Stats{Addr: peer, LastIndex: 1, Peers: []PeerStats{{Addr: me, Voter: true}}}, false, "the same voters"},
		{Stats{Addr: peer, LastIndex: 1, Peers: []PeerStats{{Addr: me, Voter: true}, {Addr: other, Voter: true}}}, true, "a voter more"},
		{Stats{Addr: peer, LastIndex: 1, Peers: []PeerStats{{Addr: other, Voter: true}}}, true, "another voter"},
		{Stats{Addr: peer, LastIndex: 1}, true, "the peer alone"},
		{Stats{Addr: peer, LastIndex: 1, Peers: []PeerStats{{Addr: me, Voter: true}, {Addr: other}}}, false, "a non-voter aside"},
		{Stats{Addr: peer, Peers: []PeerStats{{Addr: other, Voter: true}}}, false, "no configuration (a node that did not bootstrap)"},
		{Stats{Addr: peer, LastIndex: 2, Peers: []PeerStats{{Addr: me, Voter: true}, {Addr: other, Voter: true}}}, false, "a group that has run with this node"},
		{Stats{Addr: peer, LastIndex: 2, Peers: []PeerStats{{Addr: me}}}, false, "a group that has run with this node a non-voter"},
		{Stats{Addr: peer, LastIndex: 2, Peers: []PeerStats{{Addr: other, Voter: true}}}, true, "a group that has run without this node"},
		{Stats{Addr: peer, CommitIndex: 1, LastIndex: 1}, true, "a peer that committed alone"},
		{Stats{Addr: peer, State: "Shutdown", CommitIndex: 1, LastIndex: 2}, false, "a removed node"},
		{Stats{Addr: other, LastIndex: 1, Peers: []PeerStats{{Addr: other, Voter: true}}}, false, "answered as another address"},
	} {
		require.Equal(t, tc.want, lx.peersDiffer(tc.st, peer, lx.cfg.Peers) != nil, tc.why)
	}
}

// TestPeersDifferAfterStart: nodes that asked each other before any had
// bootstrapped, with other Peers (one lists a node that does not exist),
// each bootstrap with their own voters. A follower whose configuration is
// its leader's first one with other voters asks the leader to commit it
// again: every node ends with the leader's configuration, past the
// first, the same voters in its state machine, and identical files.
func TestPeersDifferAfterStart(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	extra := freeAddrs(t, 1)[0]
	var asked sync.WaitGroup
	asked.Add(3)
	c := &testCluster{t: t}
	addrs := freeAddrs(t, 3)
	base := t.TempDir()
	for i := range 3 {
		cfg := testConfig(t, i, addrs, filepath.Join(base, fmt.Sprintf("n%d", i+1)))
		cfg.LogOutput = io.MultiWriter(cfg.LogOutput, &logs)
		if i == 1 {
			cfg.Peers = append(slices.Clone(addrs), extra)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.seams = append(c.seams, seams{opening: func(name, stage string) error {
			if name == DefaultStream && stage == "asked" {
				asked.Done()
				asked.Wait() // every node has asked: none saw another's configuration
			}
			return nil
		}})
		c.nodes = append(c.nodes, nil)
	}
	t.Cleanup(c.closeAll)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			lx, err := newNode(c.cfgs[i], c.seams[i])
			if assert.NoError(t, err) {
				c.nodes[i] = lx
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	c.waitReady()
	same := func() bool {
		first := c.nodes[0].Stats()
		for _, n := range c.nodes {
			st := n.Stats()
			if st.ConfigIndex <= 1 || st.ConfigIndex != first.ConfigIndex || !slices.Equal(st.Voters, first.Voters) {
				return false
			}
		}
		return true
	}
	require.True(t, waitFor(30*time.Second, same), "every node applied the leader's configuration, past the first")
	// The leader is any of the three: with node 2 its voters have the
	// fourth address, else they lack it.
	require.True(t, waitFor(10*time.Second, func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf("that this node's lack, and lack [%s]", extra)) ||
			strings.Contains(logs.String(), fmt.Sprintf("the leader's have [%s] that this node's lack, and lack []", extra))
	}), "a follower logged the difference")
	voters := c.nodes[0].Stats().Voters
	require.True(t, slices.Equal(voters, sortedSet(addrs)) || slices.Equal(voters, sortedSet(c.cfgs[1].Peers)), "a leader's voters: %v", voters)
	logAndCompare(c, 3*10)
}
