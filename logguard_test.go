package logx

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/stretchr/testify/require"
)

// openTestWAL opens a raft-wal in dir, closed with the test.
func openTestWAL(t *testing.T, dir string) *wal.WAL {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(hclog.NewNullLogger()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = w.Close()
		_ = meta.Close()
	})
	return w
}

// storedLog is what a log store holds, as index:term:type:data.
func storedLog(t *testing.T, s raft.LogStore) []string {
	t.Helper()
	first, err := s.FirstIndex()
	require.NoError(t, err)
	last, err := s.LastIndex()
	require.NoError(t, err)
	var out []string
	for i := first; i <= last && last > 0; i++ {
		var l raft.Log
		require.NoError(t, s.GetLog(i, &l), "entry %d", i)
		require.Equal(t, i, l.Index)
		out = append(out, fmt.Sprintf("%d:%d:%s:%s", l.Index, l.Term, l.Type, l.Data))
	}
	return out
}

// faultyLog fails reads of one index, and the first appends, on demand.
type faultyLog struct {
	raft.LogStore
	badRead     uint64 // GetLog of this index fails
	storeFails  int    // this many StoreLogs calls fail
	storeCalled int
}

var errFaulty = errors.New("injected")

func (f *faultyLog) GetLog(i uint64, l *raft.Log) error {
	if i == f.badRead {
		return errFaulty
	}
	return f.LogStore.GetLog(i, l)
}

func (f *faultyLog) StoreLogs(logs []*raft.Log) error {
	if f.storeCalled++; f.storeCalled <= f.storeFails {
		return errFaulty
	}
	return f.LogStore.StoreLogs(logs)
}

func (f *faultyLog) IsMonotonic() bool { return true }

// TestLogGuardInstall checks each way the guard treats a delete: the whole
// log after a restore (Raft's removeOldLogs), a compaction, a suffix cut
// (AppendEntries' conflicting entries), on real raft-wal and snapshot
// stores. Entries are "index:term:type:data"; the snapshot ends at 10, in
// term 2.
func TestLogGuardInstall(t *testing.T) {
	const x, term = 10, 2
	cmd := func(i, term uint64) *raft.Log {
		return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: fmt.Appendf(nil, "e%d", i)}
	}
	stand := "10:2:LogNoop:" // the no-op that stands in for entry 10
	for _, tc := range []struct {
		name      string
		log       []*raft.Log
		applied   uint64 // Raft's applied index when not x
		maxKeep   int64
		unarmed   bool
		faults    faultyLog
		closed    bool
		steps     func(t *testing.T, g *logGuard)
		want      []string
		wantErr   bool
		wantLogf  string
		wantLogfs int
		noDelete  bool     // the log is empty: removeOldLogs deletes nothing
		wantNext  []string // the log after the leader's next entry, when not want's with it
	}{{
		name: "entries past a snapshot whose entry the log lacks stay, after a stand-in",
		log:  []*raft.Log{cmd(11, 3), cmd(12, 3)},
		want: []string{stand, "11:3:LogCommand:e11", "12:3:LogCommand:e12"},
	}, {
		name: "the snapshot's entry, with its term, stays with those after it",
		log:  []*raft.Log{cmd(8, 1), cmd(9, 2), cmd(10, 2), cmd(11, 3)},
		want: []string{"10:2:LogCommand:e10", "11:3:LogCommand:e11"},
	}, {
		name: "the snapshot's index with another term is replaced",
		log:  []*raft.Log{cmd(9, 1), cmd(10, 1), cmd(11, 1)},
		want: []string{stand, "11:1:LogCommand:e11"},
	}, {
		name: "a log that ends at the snapshot's entry keeps only it",
		log:  []*raft.Log{cmd(8, 1), cmd(9, 2), cmd(10, 2)},
		want: []string{"10:2:LogCommand:e10"},
	}, {
		name:     "a log that ends before the snapshot goes; the next append puts the stand-in first",
		log:      []*raft.Log{cmd(8, 1), cmd(9, 2)},
		wantNext: []string{stand, "11:4:LogCommand:e11"},
	}, {
		name:     "an install that left the log empty: the next append puts the stand-in first",
		noDelete: true,
		wantNext: []string{stand, "11:4:LogCommand:e11"},
	}, {
		name:     "a log that ends at the snapshot's index with another term goes, with a message",
		log:      []*raft.Log{cmd(9, 1), cmd(10, 1)},
		wantLogf: "ends there with term 1, the snapshot's is 2",
	}, {
		name:     "a log that starts past the entry after the snapshot goes, with a message",
		log:      []*raft.Log{cmd(12, 3), cmd(13, 3)},
		wantLogf: "the log starts at 12",
	}, {
		name:     "no stored snapshot ends at the applied index: all goes, with a message",
		log:      []*raft.Log{cmd(11, 3), cmd(12, 3)},
		applied:  11,
		wantLogf: "no stored snapshot ends there",
	}, {
		name:    "a conflicting suffix goes when nothing was restored",
		log:     []*raft.Log{cmd(11, 3), cmd(12, 3)},
		unarmed: true,
	}, {
		name:     "a tail over the bound goes, with a message",
		log:      []*raft.Log{cmd(11, 3), cmd(12, 3)},
		maxKeep:  4,
		wantLogf: "hold over 4 bytes",
	}, {
		name:    "a read error leaves the log as it was",
		log:     []*raft.Log{cmd(11, 3), cmd(12, 3)},
		faults:  faultyLog{badRead: 12},
		want:    []string{"11:3:LogCommand:e11", "12:3:LogCommand:e12"},
		wantErr: true,
	}, {
		name:      "the write-back is retried until it succeeds",
		log:       []*raft.Log{cmd(11, 3), cmd(12, 3)},
		faults:    faultyLog{storeFails: 2},
		want:      []string{stand, "11:3:LogCommand:e11", "12:3:LogCommand:e12"},
		wantLogf:  "writing back the Raft log past an installed snapshot (entries 10 to 12): injected",
		wantLogfs: 2,
	}, {
		name:     "the write-back stops when the node closes, the log empty",
		log:      []*raft.Log{cmd(11, 3), cmd(12, 3)},
		faults:   faultyLog{storeFails: 1},
		closed:   true,
		wantErr:  true,
		wantLogf: "retrying",
	}, {
		name: "an append after the restore disarms",
		log:  []*raft.Log{cmd(11, 3)},
		steps: func(t *testing.T, g *logGuard) {
			require.NoError(t, g.StoreLog(cmd(12, 3)))
		},
	}, {
		name: "a compaction first leaves it armed",
		log:  []*raft.Log{cmd(7, 1), cmd(8, 1), cmd(9, 1), cmd(10, 1), cmd(11, 3)},
		steps: func(t *testing.T, g *logGuard) {
			require.NoError(t, g.DeleteRange(7, 8))
		},
		want: []string{stand, "11:3:LogCommand:e11"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openTestWAL(t, dir)
			require.NoError(t, w.StoreLogs(tc.log))
			snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
			require.NoError(t, err)
			sink, err := snaps.Create(raft.SnapshotVersionMax, x, term, raft.Configuration{}, 1, nil)
			require.NoError(t, err)
			require.NoError(t, sink.Close())
			var logged []string
			applied := cmp.Or(tc.applied, x)
			closing := make(chan struct{})
			if tc.closed {
				close(closing)
			}
			faults := tc.faults
			faults.LogStore = w
			g := newLogGuard(&faults, snaps, func() uint64 { return applied },
				func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }, closing)
			g.retryPause = time.Millisecond
			if tc.maxKeep > 0 {
				g.maxKeep = tc.maxKeep
			}
			require.True(t, g.IsMonotonic())
			if !tc.unarmed {
				g.restored()
			}
			if tc.steps != nil {
				tc.steps(t, g)
			}
			first, err := g.FirstIndex()
			require.NoError(t, err)
			last, err := g.LastIndex()
			require.NoError(t, err)
			if !tc.noDelete {
				err = g.DeleteRange(first, last) // as removeOldLogs, or a cut from the first entry
			}
			if tc.wantErr {
				require.ErrorIs(t, err, errFaulty)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.want, storedLog(t, w))
			require.Equal(t, tc.noDelete, g.armed.Load(), "armed past the delete (nothing deleted: still armed)")
			if tc.wantLogf == "" {
				require.Empty(t, logged)
			} else {
				require.Len(t, logged, max(1, tc.wantLogfs), "%q", logged)
				for _, l := range logged {
					require.Contains(t, l, tc.wantLogf)
				}
			}
			if tc.wantErr {
				return
			}
			// What Raft does next: the leader's entries from 11 on, after
			// a cut of those that differ (there is one, or none).
			if len(tc.want) > 1 {
				require.NoError(t, g.DeleteRange(x+1, last))
			}
			require.NoError(t, g.StoreLogs([]*raft.Log{cmd(x+1, 4)}))
			got := storedLog(t, g)
			require.Equal(t, "11:4:LogCommand:e11", got[len(got)-1])
			if tc.wantNext != nil {
				require.Equal(t, tc.wantNext, got)
			}
			require.False(t, g.armed.Load(), "armed past the append")
		})
	}
}

// TestLogGuardStandIn: the first append to a log left empty after a
// snapshot (by an install, or found so at start) gets the stand-in for the
// snapshot's last entry before it: only when a stored snapshot ends just
// before it, again after a failed append, and once.
func TestLogGuardStandIn(t *testing.T) {
	cmd := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 3, Type: raft.LogCommand, Data: []byte("e")}
	}
	setup := func(t *testing.T, storeFails int) (*logGuard, *[]string) {
		dir := t.TempDir()
		snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
		require.NoError(t, err)
		sink, err := snaps.Create(raft.SnapshotVersionMax, 10, 2, raft.Configuration{}, 1, nil)
		require.NoError(t, err)
		require.NoError(t, sink.Close())
		var logged []string
		g := newLogGuard(&faultyLog{LogStore: openTestWAL(t, dir), storeFails: storeFails}, snaps, func() uint64 { return 10 },
			func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }, nil)
		g.starting() // the log is empty
		return g, &logged
	}
	t.Run("first append after the snapshot", func(t *testing.T) {
		g, logged := setup(t, 0)
		require.NoError(t, g.StoreLogs([]*raft.Log{cmd(11)}))
		require.NoError(t, g.StoreLogs([]*raft.Log{cmd(12)}))
		require.Equal(t, []string{"10:2:LogNoop:", "11:3:LogCommand:e", "12:3:LogCommand:e"}, storedLog(t, g))
		require.Empty(t, *logged)
	})
	t.Run("again after a failed append", func(t *testing.T) {
		g, _ := setup(t, 1)
		require.ErrorIs(t, g.StoreLogs([]*raft.Log{cmd(11)}), errFaulty)
		require.NoError(t, g.StoreLogs([]*raft.Log{cmd(11)}))
		require.Equal(t, []string{"10:2:LogNoop:", "11:3:LogCommand:e"}, storedLog(t, g))
	})
	t.Run("no snapshot ends just before it", func(t *testing.T) {
		g, logged := setup(t, 0)
		require.NoError(t, g.StoreLogs([]*raft.Log{cmd(13)}))
		require.Equal(t, []string{"13:3:LogCommand:e"}, storedLog(t, g))
		require.Len(t, *logged, 1)
		require.Contains(t, (*logged)[0], "no stand-in for Raft entry 12")
	})
	t.Run("a log not empty at start", func(t *testing.T) {
		dir := t.TempDir()
		w := openTestWAL(t, dir)
		require.NoError(t, w.StoreLogs([]*raft.Log{cmd(11)}))
		g := newLogGuard(w, nil, func() uint64 { return 10 }, t.Logf, nil)
		g.starting()
		require.NoError(t, g.StoreLogs([]*raft.Log{cmd(12)}))
		require.Equal(t, []string{"11:3:LogCommand:e", "12:3:LogCommand:e"}, storedLog(t, g))
	})
}

// listFSM is a state machine of the commands it applied, in order.
type listFSM struct {
	mu       sync.Mutex
	vals     []string
	restores int
	onRest   func()
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vals = append(f.vals, string(l.Data))
	return nil
}

func (f *listFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.vals...)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) { return listSnap(f.list()), nil }

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var vals []string
	if err := json.NewDecoder(rc).Decode(&vals); err != nil {
		return err
	}
	f.mu.Lock()
	f.vals = vals
	f.restores++
	f.mu.Unlock()
	if f.onRest != nil {
		f.onRest()
	}
	return nil
}

type listSnap []string

func (s listSnap) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (listSnap) Release() {}

// TestInstallOverLongerLog is hashicorp/raft#697 on real Raft nodes, on
// raft-wal and the guard, as newStream has them: a follower whose log
// holds an entry past the leader's snapshot, of a term the leader does not
// have there, and no entry at the snapshot's index. The leader walks back
// past its first entry and sends the snapshot. Without the guard the
// follower empties its log but keeps its old last index, refuses every
// AppendEntries after that, and gets the same snapshot again and again: it
// never applies past it. The second case is one the guard cannot cover (a
// log that ends at the snapshot's index, with another term): the follower
// says so, and a restart clears it.
//
// The third case is what the guard leaves behind an install (the snapshot's
// last entry first in the log, TestLogGuardInstall) meeting a leader that
// still holds entry 1: walking the follower back, it stops at that entry.
// A follower whose log started after its snapshot would be walked down to
// entry 1, which it cannot compare, and refuse it for good.
func TestInstallOverLongerLog(t *testing.T) {
	t.Parallel()
	t.Run("tail", func(t *testing.T) { installOverLongerLog(t, "tail") })
	t.Run("ends at the snapshot", func(t *testing.T) { installOverLongerLog(t, "ends at the snapshot") })
	t.Run("starts at the snapshot", func(t *testing.T) { installOverLongerLog(t, "starts at the snapshot") })
}

func installOverLongerLog(t *testing.T, variant string) {
	endsAtSnapshot := variant == "ends at the snapshot"
	standIn := variant == "starts at the snapshot"
	var raftLog syncBuffer // printed, its end, if the test fails
	quiet := hclog.New(&hclog.LoggerOptions{Output: &raftLog, Level: hclog.Info})
	t.Cleanup(func() {
		if s := raftLog.String(); t.Failed() {
			t.Logf("Raft's log ends:\n%s", s[max(0, len(s)-4000):])
		}
	})
	conf := func(id string) *raft.Config {
		c := raft.DefaultConfig()
		c.LocalID = raft.ServerID(id)
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
		c.CommitTimeout = 5 * time.Millisecond
		c.TrailingLogs = 2 // the leader keeps little: it walks past its first entry soon
		if standIn {
			c.TrailingLogs = 1000 // the leader keeps every entry, from 1
		}
		c.SnapshotThreshold, c.SnapshotInterval = 1<<30, time.Hour
		c.Logger = quiet
		return c
	}
	type node struct {
		r      *raft.Raft
		fsm    *listFSM
		snaps  *raft.FileSnapshotStore
		trans  *raft.InmemTransport
		closeW func()
		said   syncBuffer // the guard's messages
	}
	start := func(id, dir string, prep func(w *wal.WAL, snaps *raft.FileSnapshotStore)) *node {
		meta := &metadb.BoltMetaDB{}
		w, err := openWAL(dir, meta, walPages{fs.New()}, 1<<20, hclog.NewNullLogger())
		require.NoError(t, err)
		snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, quiet)
		require.NoError(t, err)
		if prep != nil {
			prep(w, snaps)
		}
		n := &node{snaps: snaps}
		var rp atomic.Pointer[raft.Raft]
		g := newLogGuard(w, snaps, func() uint64 { return rp.Load().AppliedIndex() },
			func(f string, a ...any) { fmt.Fprintf(&n.said, f+"\n", a...) }, nil)
		n.fsm = &listFSM{onRest: func() {
			if rp.Load() != nil { // as guardedFSM: not NewRaft's own restore
				g.restored()
			}
		}}
		_, n.trans = raft.NewInmemTransport(raft.ServerAddress(id))
		cache, err := raft.NewLogCache(logCacheSize, g)
		require.NoError(t, err)
		n.r, err = raft.NewRaft(conf(id), n.fsm, cache, w, snaps, n.trans)
		require.NoError(t, err)
		rp.Store(n.r)
		var once sync.Once
		n.closeW = func() {
			once.Do(func() {
				_ = n.r.Shutdown().Error()
				_ = w.Close()
				_ = meta.Close()
			})
		}
		t.Cleanup(n.closeW)
		return n
	}

	lead := start("a", t.TempDir(), nil)
	require.NoError(t, lead.r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{ID: "a", Address: "a", Suffrage: raft.Voter}}}).Error())
	require.True(t, waitFor(10*time.Second, func() bool { return lead.r.State() == raft.Leader }), "no leader")
	apply := func(from, to int) {
		for i := from; i < to; i++ {
			require.NoError(t, lead.r.Apply(fmt.Appendf(nil, "v%d", i), 5*time.Second).Error())
		}
	}
	apply(0, 10)
	require.NoError(t, lead.r.Snapshot().Error())
	earlier := lead.r.LastIndex()
	apply(10, 11)
	require.NoError(t, lead.r.Snapshot().Error())
	x := lead.r.LastIndex()
	apply(11, 15) // past the snapshot, in the leader's term (2)

	// The follower: one of the leader's snapshots (an earlier install,
	// which emptied its log), then one entry from term 1: at x+1 after
	// the snapshot at x, or at x after the one before.
	fsnap, fentry := x, x+1
	if endsAtSnapshot {
		fsnap, fentry = earlier, x
	}
	fdir := t.TempDir()
	follow := start("f", fdir, func(w *wal.WAL, snaps *raft.FileSnapshotStore) {
		metas, err := lead.snaps.List()
		require.NoError(t, err)
		i := slices.IndexFunc(metas, func(m *raft.SnapshotMeta) bool { return m.Index == fsnap })
		require.GreaterOrEqual(t, i, 0)
		m, rc, err := lead.snaps.Open(metas[i].ID)
		require.NoError(t, err)
		defer rc.Close()
		sink, err := snaps.Create(m.Version, m.Index, m.Term, m.Configuration, m.ConfigurationIndex, lead.trans)
		require.NoError(t, err)
		_, err = io.Copy(sink, rc)
		require.NoError(t, err)
		require.NoError(t, sink.Close())
		require.NoError(t, w.SetUint64([]byte("CurrentTerm"), 1))
		logs := []*raft.Log{{Index: fentry, Term: 1, Type: raft.LogCommand, Data: []byte("junk")}}
		if standIn {
			logs = append([]*raft.Log{{Index: fsnap, Term: m.Term, Type: raft.LogNoop}}, logs...)
		}
		require.NoError(t, w.StoreLogs(logs))
	})
	connect := func() {
		lead.trans.Connect("f", follow.trans)
		follow.trans.Connect("a", lead.trans)
	}
	connect()
	require.NoError(t, lead.r.AddNonvoter("f", "f", 0, 5*time.Second).Error())
	apply(15, 20)
	want := strings.Join(lead.fsm.list(), ",")
	require.Len(t, lead.fsm.list(), 20)
	restores := func() int {
		follow.fsm.mu.Lock()
		defer follow.fsm.mu.Unlock()
		return follow.fsm.restores
	}
	caughtUp := func() bool { return strings.Join(follow.fsm.list(), ",") == want }

	if endsAtSnapshot {
		require.True(t, waitFor(10*time.Second, func() bool { return restores() >= 4 }),
			"the follower was not sent the snapshot again and again: %d installs", restores())
		require.False(t, caughtUp())
		require.Contains(t, follow.said.String(), fmt.Sprintf("after installing a snapshot that ends at Raft index %d: this node's Raft log ends there with term 1, the snapshot's is 2", x))
		follow.closeW()
		follow = start("f", fdir, nil) // a restart reads the log's end again
		connect()
	}
	ok := waitFor(10*time.Second, caughtUp)
	require.True(t, ok, "the follower did not catch up: it holds %v after %d snapshot installs", follow.fsm.list(), restores())
	switch variant {
	case "tail":
		require.Equal(t, 2, restores(), "start-up's restore, then one install")
	case "starts at the snapshot":
		require.Equal(t, 1, restores(), "start-up's restore, and no install")
	}
}

// TestLogGuardAfterCompaction: raft-wal still finds the entries a
// compaction dropped from its tail segment; through the guard they are
// gone, so a leader sends its snapshot instead of walking back through them.
func TestLogGuardAfterCompaction(t *testing.T) {
	w := openTestWAL(t, t.TempDir())
	g := newLogGuard(w, nil, func() uint64 { return 0 }, t.Logf, nil)
	for i := uint64(1); i <= 5; i++ {
		require.NoError(t, g.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("e")}))
	}
	require.NoError(t, g.DeleteRange(1, 3))
	var l raft.Log
	require.NoError(t, w.GetLog(2, &l), "raft-wal no longer reads dropped entries: the guard's check may go")
	require.ErrorIs(t, g.GetLog(2, &l), raft.ErrLogNotFound)
	require.ErrorIs(t, g.GetLog(3, &l), raft.ErrLogNotFound)
	require.NoError(t, g.GetLog(4, &l))
	require.Equal(t, uint64(4), l.Index)
}
