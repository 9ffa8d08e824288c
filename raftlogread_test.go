package logx

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/types"
	"github.com/stretchr/testify/require"
)

// readFaultWAL is raft-wal's file system with a disk whose reads of
// sealed segments (raft-wal opens those as readers; its open segment, as a
// writer) fail with EIO past their headers while bad is set: bad sectors.
// failed counts the reads that failed.
type readFaultWAL struct {
	types.VFS
	bad    *atomic.Bool
	failed *atomic.Int64
	spared *atomic.Value // a segment's file name (string) whose reads never fail, or nil
	open   bool          // the open segment's reads (past its header) fail too
}

func (v readFaultWAL) fails(off int64) bool {
	if v.bad.Load() && off > 0 { // raft-wal reads a segment's header when it opens it
		v.failed.Add(1)
		return true
	}
	return false
}

func (v readFaultWAL) OpenReader(dir, name string) (types.ReadableFile, error) {
	f, err := v.VFS.OpenReader(dir, name)
	if err != nil || v.spared.Load() == name {
		return f, err
	}
	return readFaultReader{f, v}, nil
}

func (v readFaultWAL) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := v.VFS.OpenWriter(dir, name)
	if err != nil || !v.open {
		return f, err
	}
	return readFaultWriter{f, v}, nil
}

type readFaultReader struct {
	types.ReadableFile
	v readFaultWAL
}

type readFaultWriter struct {
	types.WritableFile
	v readFaultWAL
}

func (f readFaultWriter) ReadAt(p []byte, off int64) (int, error) {
	if f.v.fails(off) {
		return 0, syscall.EIO
	}
	return f.WritableFile.ReadAt(p, off)
}

func (f readFaultReader) ReadAt(p []byte, off int64) (int, error) {
	if f.v.fails(off) {
		return 0, syscall.EIO
	}
	return f.ReadableFile.ReadAt(p, off)
}

// newReadFaultCluster starts 3 nodes on raft-wal file systems whose reads
// of sealed segments fail while bad[i] is set (readFaultWAL), with small
// segments so that most entries are in sealed ones.
func newReadFaultCluster(t *testing.T) (c *testCluster, bad *[3]atomic.Bool, failed *[3]atomic.Int64) {
	c, bad, failed, _ = newReadFaultClusterSpared(t)
	return c, bad, failed
}

// newReadFaultClusterSpared is newReadFaultCluster with, for each node, a
// segment whose reads never fail once its name is stored in spared.
func newReadFaultClusterSpared(t *testing.T) (c *testCluster, bad *[3]atomic.Bool, failed *[3]atomic.Int64, spared *[3]atomic.Value) {
	return newReadFaultClusterOpen(t, false)
}

// newReadFaultClusterOpen is newReadFaultClusterSpared, with the reads of
// the open segment failing too if open.
func newReadFaultClusterOpen(t *testing.T, open bool) (c *testCluster, bad *[3]atomic.Bool, failed *[3]atomic.Int64, spared *[3]atomic.Value) {
	bad, failed, spared = new([3]atomic.Bool), new([3]atomic.Int64), new([3]atomic.Value)
	c = newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		i := int(cfg.NodeID[1] - '1')
		sm.walSegmentSize = 16 << 10
		sm.powerCut = &powerHooks{
			vfs: func(v types.VFS) types.VFS {
				return readFaultWAL{VFS: v, bad: &bad[i], failed: &failed[i], spared: &spared[i], open: open}
			},
			meta: func(m types.MetaStore) types.MetaStore { return m },
		}
	})
	return c, bad, failed, spared
}

// TestRaftLogReadErrorAtStart: a node whose Raft log has sealed segments
// it cannot read past their headers (raft-wal reads those when it opens
// them), bad sectors, say, fails New with an error that says so
// (hashicorp/raft's NewRaft panics when its scan of the entries after the
// snapshot cannot read one, which took the host process down), and starts
// once they read again.
func TestRaftLogReadErrorAtStart(t *testing.T) {
	t.Parallel()
	c, bad, failed := newReadFaultCluster(t)
	c.logAppend("before", 300)
	c.waitSameSeq(300)
	c.stop(0)

	bad[0].Store(true) // every sealed segment
	_, err := newNode(c.cfgs[0], c.seams[0])
	require.Error(t, err)
	require.ErrorIs(t, err, syscall.EIO)
	require.Contains(t, err.Error(), "reading the Raft log")
	require.Positive(t, failed[0].Load())

	bad[0].Store(false)
	c.start(0)
	logAndCompare(c, 310)
}

// TestRaftLogReadError: a follower whose Raft log fails to read for a
// moment (EIO), just as its Raft is to apply the entries in it, waits and
// goes on once it reads again: no panic (hashicorp/raft's, which ended
// the process), identical files, every entry once.
//
// The node restarts first and its reads fail from just after its New, so
// it has read nothing of its log since; it has the shortest log (it was
// stopped first) and the longest election timeout, so another node leads
// and tells it the commit index, and it reads its entries to apply them.
func TestRaftLogReadError(t *testing.T) {
	t.Parallel()
	c, bad, failed := newReadFaultCluster(t)
	restartFailingReads(c, bad, []int{0, 1, 2}, 3*time.Second, 0, nil, nil)
	// Raft's apply is tried again (100, 200, 400 ms apart, within
	// defaultReadRetryFor).
	require.True(t, waitFor(30*time.Second, func() bool {
		return c.nodes[0].guard.retried.Load() > 0 && failed[0].Load() >= 3
	}), "node 1 reads its Raft log again")
	healAndCompare(c, bad, 310)
}

// TestRaftLogReadErrorLeader: a leader elected just after its restart,
// whose reads of sealed segments fail (EIO), waits to apply the entries
// its first commit covers (readAgain). Its heartbeats, which goroutines of
// their own send, kept its followers following it, and the cluster
// committed nothing while it waited; now it sends nothing meanwhile
// (raftRefused), the others elect a leader among themselves and go on,
// and once its reads work it steps down and follows: files identical,
// every entry once.
//
// The nodes stop in the order 3, 2, 1, so that node 1 holds the longest
// log (a closing leader commits a barrier and hands over), and node 1
// restarts with the shortest election timeout: it is elected first.
//
// Its newest sealed segment reads: the entries node 1 wrote after the
// others stopped (its closing barrier), which they need from it, may be
// there rather than in the open segment. When the one before them is in
// an older segment (a CI run met it), node 1 cannot send them, and
// refuses to send anything instead (TestRaftLogReadErrorLeaderCannotSend).
func TestRaftLogReadErrorLeader(t *testing.T) {
	t.Parallel()
	c, bad, _, spared := newReadFaultClusterSpared(t)
	spare := func() {
		names, err := filepath.Glob(filepath.Join(c.cfgs[0].Dir, "raft", "*.wal"))
		require.NoError(t, err)
		sort.Strings(names) // by first index; the last is open
		require.Greater(t, len(names), 2)
		spared[0].Store(filepath.Base(names[len(names)-2]))
	}
	leaderCannotRead(c, bad, spare)
	// Node 1 waited to apply the entries its first commit covers; or, if
	// the entry before those its followers needed was not in the segment
	// spared, it could not send them and refused (the test below).
	g := c.nodes[0].guard
	require.Positive(t, g.retried.Load()+g.refusals.Load(), "node 1 waited to apply, or refused to send")
	// Within defaultReadRetryFor of its first failure: its reads work,
	// it steps down and follows.
	healAndCompare(c, bad, 320)
}

// TestRaftLogReadErrorLeaderCannotSend: a leader elected just after its
// restart, whose every read fails (EIO; the open segment's too), cannot
// read the entry before those it is to send its followers (its cache is
// cold, and nothing is committed in its term, so nothing is tried again).
// hashicorp/raft tries that read again for good while its heartbeats keep
// the followers, and the cluster committed nothing for as long as it
// lived (a CI run of TestRaftLogReadErrorLeader once took this path). Now
// it sends nothing for a while after each such failure
// (cannotReadUnapplied): it steps down, the others elect a leader among
// themselves and go on, and once its reads work it follows: files
// identical, every entry once.
func TestRaftLogReadErrorLeaderCannotSend(t *testing.T) {
	t.Parallel()
	c, bad, _, _ := newReadFaultClusterOpen(t, true)
	leaderCannotRead(c, bad, nil)
	require.Positive(t, c.nodes[0].guard.refusals.Load(), "node 1 refused to send")
	healAndCompare(c, bad, 320)
}

// TestCannotReadUnapplied: a leader's failed read of an entry it has not
// applied makes it refuse to send only once such failures have gone on
// for refuseAfter (a read that fails once, a disk's hiccup, costs no
// leader change), for refuseFor after each, whatever its role meanwhile;
// an episode that ended starts afresh; a follower, and a leader that is
// the only voter, never refuse.
func TestCannotReadUnapplied(t *testing.T) {
	t.Parallel()
	errRead := syscall.EIO
	// failTwice fails a read, and again refuseAfter later.
	failTwice := func(lx *Logx) {
		lx.cannotReadUnapplied(5, errRead)
		lx.guard.firstFail.Store(monoNanos() - int64(lx.guard.refuseAfter))
		lx.cannotReadUnapplied(5, errRead)
	}
	// The only voter: nothing to hand over to.
	one := newTestCluster(t, 1, nil)
	solo := one.nodes[0]
	require.True(t, waitFor(10*time.Second, func() bool { return solo.raft.State() == raft.Leader }))
	require.True(t, waitFor(10*time.Second, func() bool { v := solo.fsm.voters.Load(); return v != nil && len(v.voters) == 1 }))
	failTwice(solo)
	require.Zero(t, solo.guard.refusals.Load())
	require.NoError(t, solo.raftRefused())

	c := newTestCluster(t, 3, nil)
	li := c.waitLeader()
	require.True(t, waitFor(10*time.Second, func() bool {
		v := c.nodes[li].fsm.voters.Load()
		return v != nil && len(v.voters) == 3
	}))
	follower := c.nodes[(li+1)%3]
	failTwice(follower)
	require.Zero(t, follower.guard.refusals.Load(), "a follower refused")

	lx := c.nodes[li]
	g := lx.guard
	require.Equal(t, 300*time.Millisecond, g.refuseAfter)
	lx.cannotReadUnapplied(5, errRead) // the first of an episode
	lx.cannotReadUnapplied(5, errRead) // within refuseAfter of it
	require.Zero(t, g.refusals.Load(), "a failure that passes refused")
	require.NoError(t, lx.raftRefused())
	g.firstFail.Add(-int64(g.refuseAfter))
	lx.cannotReadUnapplied(5, errRead)
	require.Equal(t, int64(1), g.refusals.Load())
	require.ErrorIs(t, lx.raftRefused(), errCannotRead)
	require.InDelta(t, float64(monoNanos()+int64(g.refuseFor)), float64(g.refuseUntil.Load()), float64(time.Second))

	// The window over, and refuseFor since the episode's first failure: a
	// new episode, which refuses nothing at its first failure.
	g.refuseUntil.Store(monoNanos() - 1)
	g.firstFail.Store(monoNanos() - 2*int64(g.refuseFor))
	require.NoError(t, lx.raftRefused())
	before := g.refusals.Load()
	if lx.raft.State() == raft.Leader { // it may have stepped down meanwhile
		lx.cannotReadUnapplied(5, errRead)
		require.Equal(t, before, g.refusals.Load(), "the first failure of a new episode refused")
		require.NoError(t, lx.raftRefused())
	}
}

// leaderCannotRead restarts the nodes of c by restartFailingReads (node
// 1 with the shortest election timeout, its reads failing; stopped run
// while they are down), waits until node 1 is elected, and appends 10
// entries through the others, which must elect a leader among themselves.
func leaderCannotRead(c *testCluster, bad *[3]atomic.Bool, stopped func()) {
	t := c.t
	t.Helper()
	var led atomic.Bool
	done := make(chan struct{})
	defer close(done)
	restartFailingReads(c, bad, []int{2, 1, 0}, 300*time.Millisecond, 1500*time.Millisecond, stopped, func() {
		obs := make(chan raft.Observation, 16)
		c.nodes[0].raft.RegisterObserver(raft.NewObserver(obs, false, nil))
		go func() {
			for {
				select {
				case o := <-obs:
					if l, ok := o.Data.(raft.LeaderObservation); ok && string(l.LeaderAddr) == c.cfgs[0].Addr {
						led.Store(true)
					}
				case <-done:
					return
				}
			}
		}()
	})
	require.True(t, waitFor(30*time.Second, led.Load), "node 1 is elected")
	// The others elect a leader among themselves and commit.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 10 {
		_, err := c.nodes[1+i%2].Append(ctx, LevelInfo, "while node 1 cannot read", "i", i)
		require.NoError(t, err)
	}
	require.NotEqual(t, c.cfgs[0].Addr, c.nodes[1].Stats().Leader)
}

// restartFailingReads logs 300 entries, stops the nodes in the order
// given, runs stopped (if not nil), and starts them again, node 1 first
// with election timeout et1 (the others with others, or as they were if
// 0); node 1's reads fail from just after its New, and started runs then
// (if not nil), before the others start.
func restartFailingReads(c *testCluster, bad *[3]atomic.Bool, order []int, et1, others time.Duration, stopped, started func()) {
	c.t.Helper()
	c.logAppend("before", 300)
	c.waitSameSeq(300)
	for _, i := range order {
		c.stop(i)
	}
	if stopped != nil {
		stopped()
	}
	for i := 1; i < len(c.cfgs) && others != 0; i++ {
		c.cfgs[i].ElectionTimeout = others
	}
	c.cfgs[0].ElectionTimeout = et1
	c.start(0)
	bad[0].Store(true)
	if started != nil {
		started()
	}
	c.start(1)
	c.start(2)
}

// healAndCompare lets node 1 read again and runs logAndCompare.
func healAndCompare(c *testCluster, bad *[3]atomic.Bool, want uint64) {
	c.t.Helper()
	bad[0].Store(false)
	logAndCompare(c, want)
}

// logAndCompare logs 10 more entries from every node, and checks that
// every node holds want and that their files are identical.
func logAndCompare(c *testCluster, want uint64) {
	c.t.Helper()
	c.logAppend("after", 10)
	c.waitSameSeq(want)
	c.flushAll()
	requireIdentical(c.t, c.dirs(), "app.log")
}

// TestLogGuardReadAgain: a failed read is tried again only once Raft
// runs (its commit index known), only for a committed entry not yet applied and only for an I/O
// error; the reads of an episode of failures wait readRetryFor in all, and
// the next episode starts readRetryFor after it ended.
func TestLogGuardReadAgain(t *testing.T) {
	fl := &flakyReads{LogStore: raft.NewInmemStore()}
	require.NoError(t, fl.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, {Index: 2, Term: 1, Data: []byte("x")}, {Index: 3, Term: 1}}))
	var applied, commit atomic.Uint64
	g := newLogGuard(fl, raft.NewInmemSnapshotStore(), applied.Load, t.Logf, nil)
	g.commit = commit.Load
	g.retryPause = time.Millisecond
	var l raft.Log
	once := func(index uint64, why string) {
		t.Helper()
		fl.fail.Store(1)
		require.ErrorIs(t, g.GetLog(index, &l), syscall.EIO, why)
		require.Zero(t, fl.fail.Load())
	}

	applied.Store(1)
	once(2, "before NewRaft has returned (commit index 0)")
	commit.Store(2)
	once(1, "an applied entry")
	once(3, "an entry not committed")
	fl.err = types.ErrCorrupt
	once(2, "a damaged frame")
	fl.err = nil
	require.Zero(t, g.retried.Load())

	fl.fail.Store(3)
	require.NoError(t, g.GetLog(2, &l), "a committed entry to apply: again, until it reads")
	require.Equal(t, "x", string(l.Data))
	require.Zero(t, fl.fail.Load())
	require.EqualValues(t, 1, g.retried.Load())

	// A new guard: a fresh episode of 100 ms.
	g = newLogGuard(fl, raft.NewInmemSnapshotStore(), applied.Load, t.Logf, nil)
	g.commit, g.retryPause, g.readRetryFor = commit.Load, time.Millisecond, 100*time.Millisecond
	fl.fail.Store(1 << 30)
	start := time.Now()
	require.ErrorIs(t, g.GetLog(2, &l), syscall.EIO, "for readRetryFor at most")
	require.GreaterOrEqual(t, time.Since(start), g.readRetryFor)
	start = time.Now()
	require.ErrorIs(t, g.GetLog(2, &l), syscall.EIO, "the episode's time is spent")
	require.Less(t, time.Since(start), g.readRetryFor/2)
	require.EqualValues(t, 1, g.retried.Load())
	time.Sleep(g.readRetryFor) // the next episode may start
	fl.fail.Store(2)
	require.NoError(t, g.GetLog(2, &l), "a new episode")
	require.EqualValues(t, 2, g.retried.Load())

	require.ErrorIs(t, g.GetLog(4, &l), raft.ErrLogNotFound, "not found is an answer")
}

// flakyReads is a log store whose next fail reads fail with err, or EIO.
type flakyReads struct {
	raft.LogStore
	fail atomic.Int64
	err  error
}

func (f *flakyReads) GetLog(index uint64, l *raft.Log) error {
	if f.fail.Load() > 0 {
		f.fail.Add(-1)
		if f.err != nil {
			return fmt.Errorf("%w: %w", f.err, syscall.EIO)
		}
		return syscall.EIO
	}
	return f.LogStore.GetLog(index, l)
}

// TestNewRaftOtherPanics: newRaft turns only the panic on a read of the
// Raft log that failed into an error; any other panic goes on, also when
// a read failed before (here NewRaft panics on its nil transport).
func TestNewRaftOtherPanics(t *testing.T) {
	logs := raft.NewInmemStore()
	g := newLogGuard(logs, raft.NewInmemSnapshotStore(), func() uint64 { return 0 }, t.Logf, nil)
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	call := func() { _, _ = newRaft(g, conf, nil, g, logs, raft.NewInmemSnapshotStore(), nil) }
	require.Panics(t, call)
	other := errors.New("another read")
	g.failedRead.Store(&other)
	require.Panics(t, call)
}

// TestNewRaftLastEntryDamaged: NewRaft returns, rather than panics on, a
// failed read of the log's last entry, and formats the read's error with
// %v; newRaft's error wraps it (types.ErrCorrupt here) with its advice.
func TestNewRaftLastEntryDamaged(t *testing.T) {
	fl := &flakyReads{LogStore: raft.NewInmemStore(), err: &damagedEntry{index: 2, what: "test"}}
	require.NoError(t, fl.StoreLogs([]*raft.Log{{Index: 1, Term: 1}, {Index: 2, Term: 1}}))
	g := newLogGuard(fl, raft.NewInmemSnapshotStore(), func() uint64 { return 0 }, t.Logf, nil)
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	_, trans := raft.NewInmemTransport("n1")
	fl.fail.Store(1)
	_, err := newRaft(g, conf, nil, g, raft.NewInmemStore(), raft.NewInmemSnapshotStore(), trans)
	require.ErrorIs(t, err, types.ErrCorrupt)
	require.ErrorContains(t, err, "reading the Raft log: Raft entry 2 read from disk test")
	require.Zero(t, fl.fail.Load(), "the last entry was read")
}
