package logx

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// timedLogs builds n batches of perBatch entries each, the entries of
// batch i stamped at at(i), each after a clock report of at(i) from the
// only voter, so that the log clock is at(i) too: a configuration, then
// 2n Raft logs.
func timedLogs(n, perBatch int, at func(i int) time.Time) []*raft.Log {
	var b logBuilder
	b.voters("n1")
	logs := b.take()
	for i := 1; i <= n; i++ {
		logs = append(logs, &raft.Log{Index: uint64(2 * i), Type: raft.LogCommand, Data: appendClock(nil, "n1", at(i).UnixNano())})
		data := wire.AppendHeader(nil, wire.Header{Producer: 7, FirstPSeq: uint64((i-1)*perBatch + 1), Count: perBatch})
		for k := 0; k < perBatch; k++ {
			body := appendBodyStart(nil, FormatText, at(i), LevelInfo, "n1", "x/y.go:1", fmt.Sprintf("log %d entry %d", i, k))
			data = wire.AppendRecord(data, LevelInfo, at(i).UnixNano(), body)
		}
		logs = append(logs, &raft.Log{Index: uint64(2*i + 1), Type: raft.LogCommand, Data: data})
	}
	return logs
}

func openPolicyFSM(t *testing.T, dir string, p filePolicy) *fsm {
	t.Helper()
	f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: p, format: FormatText, stateInterval: -1, logf: t.Logf})
	require.NoError(t, err)
	return f
}

// hidden lists the retired files waiting in dir.
func hidden(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".retired-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// base is 10:00 UTC; the test logs are 10 minutes apart.
var base = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

func tenMinutes(i int) time.Time { return base.Add(time.Duration(i-1) * 10 * time.Minute) }

// TestRotateEvery: hourly rotation starts a new file with the first line of
// each hour; names still come from first sequence numbers.
func TestRotateEvery(t *testing.T) {
	dir := t.TempDir()
	f := openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 1 << 30, Every: time.Hour}})
	f.ApplyBatch(timedLogs(30, 4, tenMinutes)) // 5 hours, 6 logs (24 lines) each
	require.NoError(t, f.close())

	names, err := LogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Len(t, names, 5)
	for h, name := range names[:4] {
		require.Equal(t, fmt.Sprintf("app-%020d.log", h*24+1), name)
	}
	for h, name := range names {
		lines := readLinesFiles(t, dir, []string{name})
		require.Len(t, lines, 24, name)
		hour := base.Add(time.Duration(h) * time.Hour).Format("2006-01-02T15")
		for _, l := range lines {
			require.Contains(t, string(l), "time="+hour, name)
		}
	}
	st, _, err := readState(dir)
	require.NoError(t, err)
	for h, r := range st.Rotated {
		require.Equal(t, base.Add(time.Duration(h)*time.Hour+50*time.Minute).UnixNano(), r.Newest)
	}
}

// TestQuorumClock: the log clock is the time a majority of the voters'
// reports reached; one voter ahead or behind (of three) moves it not at
// all, and without a majority of reports it is unknown.
func TestQuorumClock(t *testing.T) {
	voters := []string{"a", "b", "c"}
	hour := int64(time.Hour)
	for _, tc := range []struct {
		clocks map[string]int64
		want   int64
	}{
		{map[string]int64{"a": 10, "b": 11, "c": 12}, 11},
		{map[string]int64{"a": 10, "b": 11, "c": 48 * hour}, 11}, // c ahead
		{map[string]int64{"a": 10, "b": 11, "c": -48 * hour}, 10},
		{map[string]int64{"a": 10, "b": 48 * hour}, 10},          // c silent, b ahead
		{map[string]int64{"a": 10}, 0},                           // no majority
		{map[string]int64{"a": 10, "b": 11, "x": 99 * hour}, 10}, // x is no voter
	} {
		require.Equal(t, tc.want, quorumClock(voters, tc.clocks), "%v", tc.clocks)
	}
	require.Zero(t, quorumClock(nil, map[string]int64{"a": 7}), "unknown voters: no clock")
	five := []string{"a", "b", "c", "d", "e"}
	require.Equal(t, int64(3), quorumClock(five, map[string]int64{"a": 1, "b": 2, "c": 3, "d": 99 * hour, "e": 98 * hour}))
}

// TestLineClock: a line's clock is its entry's time held within clockSlack
// of the log clock; none while the log clock is unknown.
func TestLineClock(t *testing.T) {
	f := &fsm{}
	require.Zero(t, f.lineClock(500e9))
	f.st.Clock = int64(1000 * time.Second)
	require.Equal(t, int64(990*time.Second), f.lineClock(int64(990*time.Second)))
	require.Equal(t, f.st.Clock+int64(clockSlack), f.lineClock(int64(48*time.Hour)), "ahead: held at the slack")
	require.Equal(t, f.st.Clock-int64(clockSlack), f.lineClock(1), "behind: held at the slack")
	require.Equal(t, f.st.Clock, f.lineClock(0), "no time: the log clock")
}

// TestRetention: MaxFiles and MaxAge take the oldest rotated files out of
// the log; they wait hidden until the snapshot after next, then go.
func TestRetention(t *testing.T) {
	t.Run("MaxFiles", func(t *testing.T) {
		dir := t.TempDir()
		f := openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 2048}, maxFiles: 3})
		f.ApplyBatch(testLogs(60, 7))
		names, err := LogFiles(dir, "app.log")
		require.NoError(t, err)
		require.Len(t, names, 4, "3 rotated files and the active one")
		require.Equal(t, f.seg.State(0).Rotated[0].Name, names[0])
		retired := hidden(t, dir)
		require.Len(t, retired, int(f.retired.Load()))
		require.Positive(t, len(retired))

		// The first snapshot keeps them (an earlier snapshot may list
		// them); the second deletes those retired before the first.
		_, err = f.Snapshot()
		require.NoError(t, err)
		require.Len(t, hidden(t, dir), len(retired))
		f.ApplyBatch(testLogs(80, 7)[60:])
		more := len(hidden(t, dir)) - len(retired)
		require.Positive(t, more)
		_, err = f.Snapshot()
		require.NoError(t, err)
		require.Len(t, hidden(t, dir), more)
		require.NoError(t, f.close())
	})
	t.Run("MaxAge", func(t *testing.T) {
		dir := t.TempDir()
		f := openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 1 << 30, Every: time.Hour}, maxAge: 2 * time.Hour})
		f.ApplyBatch(timedLogs(30, 4, tenMinutes)) // newest line: 14:50
		require.NoError(t, f.close())
		// Files of hours 10 to 13 are rotated, 14 is active. Hours 10
		// and 11 end at 10:50 and 11:50, more than 2h before 14:50; 12:50
		// is not.
		names, err := LogFiles(dir, "app.log")
		require.NoError(t, err)
		require.Equal(t, []string{"app-00000000000000000049.log", "app-00000000000000000073.log", "app.log"}, names)
		require.Len(t, hidden(t, dir), 2)
	})
}

// TestRetentionCrashRecovery: a node that crashes after retiring files it
// had not checkpointed yet replays to the same files and the same retired
// set as a node that never stopped.
func TestRetentionCrashRecovery(t *testing.T) {
	policies := map[string]filePolicy{
		"MaxFiles": {rotation: store.Rotation{MaxSize: 2048}, maxFiles: 2},
		"MaxAge":   {rotation: store.Rotation{MaxSize: 1 << 30, Every: time.Hour}, maxAge: 90 * time.Minute},
	}
	logs := timedLogs(40, 5, tenMinutes)
	for name, p := range policies {
		t.Run(name, func(t *testing.T) {
			ref := t.TempDir()
			f := openPolicyFSM(t, ref, p)
			f.ApplyBatch(logs)
			require.NoError(t, f.close())
			want, wantHidden := fileHashes(t, ref, "app.log"), hidden(t, ref)
			require.NotEmpty(t, wantHidden)

			for _, cut := range []int{0, 5, 17} {
				dir := t.TempDir()
				f := openPolicyFSM(t, dir, p)
				f.ApplyBatch(logs[:cut])
				require.NoError(t, f.persist())
				f.ApplyBatch(logs[cut:]) // rotates and retires past the checkpoint
				require.NoError(t, f.seg.Close())
				f = openPolicyFSM(t, dir, p)
				require.Equal(t, uint64(cut), f.applied.Load())
				f.ApplyBatch(logs)
				require.NoError(t, f.close())
				require.Equal(t, want, fileHashes(t, dir, "app.log"), "checkpoint at %d", cut)
				require.Equal(t, wantHidden, hidden(t, dir), "checkpoint at %d", cut)
			}
		})
	}
}

// TestRetentionCluster: with MaxFiles and time rotation on (by the real
// clocks of the nodes and the leader), nodes rotate and retire
// the same files; a node that was down past Raft's trailing log catches up
// from a manifest that no longer lists the retired files, and ends
// identical.
func TestRetentionCluster(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.MaxSize = 8 << 10
		cfg.RotateEvery = 50 * time.Millisecond // real clocks: some rotations by time too
		cfg.MaxFiles = 4
		cfg.TrailingLogs = 8
		cfg.SnapshotThreshold = 1 << 20
		sm.walSegmentSize = 16 << 10
	})
	c.logAppend("before", 200)
	c.flushAll()
	c.waitSameSeq(600)
	requireIdentical(t, c.dirs(), "app.log")
	for _, lx := range c.nodes {
		require.Positive(t, lx.Stats().Retired)
		names, err := lx.Files()
		require.NoError(t, err)
		require.Len(t, names, 5)
	}
	c.stop(2)
	c.logAppend("while-down", 200)
	c.snapshotAll()
	c.snapshotAll()
	c.start(2)
	c.waitReady()
	c.logAppend("after", 20)
	c.flushAll()
	total := uint64(3*200 + 2*200 + 3*20)
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	require.Equal(t, uint64(1), c.nodes[2].Stats().CatchUps)
	names, err := c.nodes[2].Files()
	require.NoError(t, err)
	require.Len(t, names, 5)
}

// retiredOnDisk counts the retired files waiting for deletion in dir.
func retiredOnDisk(t *testing.T, dir string) int {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	n := 0
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".retired-") {
			n++
		}
	}
	return n
}

// TestRetiredFilesBounded: retired files wait for the snapshot after next
// before they are deleted, and Raft's own snapshots (here: never, as
// SnapshotThreshold is out of reach; by default every 8,192 Raft entries,
// checked every two minutes) can come after gigabytes of them under load.
// A node asks for a snapshot itself once as many retired files wait as
// retention keeps, so they stay bounded by a few times MaxFiles.
func TestRetiredFilesBounded(t *testing.T) {
	t.Parallel()
	const maxFiles = 2
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.MaxSize = 4 << 10
		cfg.MaxFiles = maxFiles
		cfg.SnapshotThreshold = 1 << 30 // Raft never snapshots by itself here
	})
	c.logAppend("load", 300) // 900 entries of about 110 bytes: some 25 files
	c.flushAll()
	c.waitSameSeq(900)
	requireIdentical(t, c.dirs(), "app.log")
	for i, lx := range c.nodes {
		require.Greater(t, lx.Stats().Retired, uint64(15), "node %d should have retired most of its files", i+1)
		dir := c.cfgs[i].Dir
		require.True(t, waitFor(10*time.Second, func() bool { return retiredOnDisk(t, dir) <= 3*maxFiles+2 }),
			"node %d keeps %d retired files", i+1, retiredOnDisk(t, dir))
	}
}

// TestRetiredKeptForStoredSnapshot: a snapshot that Raft fails to store
// after the state machine took it (a disk full, a configuration change
// not yet applied) does not count: the files retired after the newest
// stored snapshot stay on disk until a newer one is stored, since that
// snapshot lists them and Raft may send it.
func TestRetiredKeptForStoredSnapshot(t *testing.T) {
	dir := t.TempDir()
	f := openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 2048}, maxFiles: 3})
	var stored uint64 // the newest snapshot "Raft" stored
	f.storedSnap = func() uint64 { return stored }
	logs := testLogs(120, 7)
	f.ApplyBatch(logs[:40])
	s1, err := f.Snapshot()
	require.NoError(t, err)
	m1 := s1.(*manifest)
	stored = m1.Index

	f.ApplyBatch(logs[40:70])
	_, err = f.Snapshot() // taken, then not stored: stored stays at m1
	require.NoError(t, err)
	f.ApplyBatch(logs[70:100])
	_, err = f.Snapshot()
	require.NoError(t, err)

	retiredSince := 0
	for _, file := range m1.Files {
		_, plain := os.Stat(filepath.Join(dir, file.Name))
		_, retired := os.Stat(filepath.Join(dir, store.RetiredName(file.Name)))
		require.True(t, plain == nil || retired == nil, "%s, listed by the stored snapshot at %d, is gone", file.Name, m1.Index)
		if retired == nil {
			retiredSince++
		}
	}
	require.Positive(t, retiredSince, "no file the stored snapshot lists was retired: the test shows nothing")

	// Once a newer snapshot is stored, the next one deletes them.
	stored = f.st.SnapIndex
	f.ApplyBatch(logs[100:])
	_, err = f.Snapshot()
	require.NoError(t, err)
	for _, file := range m1.Files {
		_, err := os.Stat(filepath.Join(dir, store.RetiredName(file.Name)))
		require.ErrorIs(t, err, os.ErrNotExist, "%s", file.Name)
	}
	require.NoError(t, f.close())
}

// TestNewestStored reads the newest snapshot's index from a real store.
func TestNewestStored(t *testing.T) {
	s, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 2, nil)
	require.NoError(t, err)
	require.Zero(t, newestStored(s))
	for _, idx := range []uint64{10, 25, 40} {
		sink, err := s.Create(raft.SnapshotVersionMax, idx, 1, raft.Configuration{}, 1, nil)
		require.NoError(t, err)
		_, err = sink.Write([]byte("{}"))
		require.NoError(t, err)
		require.NoError(t, sink.Close())
		require.Equal(t, idx, newestStored(s))
	}
	_, err = newestManifest(s, func(*manifest) string { return "app.log" })
	require.Error(t, err, "the newest holds no manifest")

	// The newest snapshot's manifest, read as Restore reads it.
	src := openTestFSM(t, t.TempDir())
	src.ApplyBatch(testLogs(30, 7))
	m := manifestOf(t, src)
	require.NoError(t, src.close())
	sink, err := s.Create(raft.SnapshotVersionMax, m.Index+100, 1, raft.Configuration{}, 1, nil)
	require.NoError(t, err)
	require.NoError(t, json.NewEncoder(sink).Encode(m))
	require.NoError(t, sink.Close())
	got, err := newestManifest(s, func(*manifest) string { return "app.log" })
	require.NoError(t, err)
	require.Equal(t, m.Index, got.Index)
	require.Equal(t, m.Files, got.Files)
}

// TestManifestSizeWarning: a snapshot whose manifest passes the warning
// size (a quarter of the most a snapshot may hold) is stored, and the
// node warns, at most once an hour, naming how many files the log keeps.
func TestManifestSizeWarning(t *testing.T) {
	src := openTestFSM(t, t.TempDir())
	src.ApplyBatch(testLogs(30, 7))
	m := manifestOf(t, src)
	require.NoError(t, src.close())
	b, err := json.Marshal(m)
	require.NoError(t, err)
	files, err := json.Marshal(m.Files)
	require.NoError(t, err)
	t.Logf("a manifest of %d files: %d bytes, %d a file (docs/guarantees.md)", len(m.Files), len(b), len(files)/len(m.Files))

	fs, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 2, nil)
	require.NoError(t, err)
	var warnings []string
	s := checkedSnapshots{FileSnapshotStore: fs, file: "app.log", warned: new(atomic.Int64),
		logf: func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }}
	store := func(index uint64) {
		sink, err := s.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, nil)
		require.NoError(t, err)
		_, err = sink.Write(b)
		require.NoError(t, err)
		require.NoError(t, sink.Close())
	}
	store(10)
	require.Empty(t, warnings, "a small manifest")
	s.warnAt = len(b) - 1
	store(20)
	require.Len(t, warnings, 1)
	require.Contains(t, warnings[0], fmt.Sprintf("lists %d files", len(m.Files)))
	store(30)
	require.Len(t, warnings, 1, "once an hour")
	require.Equal(t, uint64(30), newestStored(fs), "stored all the same")
}

// TestReapSnapshotTemps: a snapshot a crash left half written (Raft's
// "<id>.tmp" directory) is removed when the node starts; the complete ones
// stay. Raft skips such a directory but never removes it, and warned of it
// at every listing.
func TestReapSnapshotTemps(t *testing.T) {
	lx := newSingle(t, nil)
	for i := range 5 {
		_, err := lx.Append(context.Background(), LevelInfo, "before the snapshot", "i", i)
		require.NoError(t, err)
	}
	require.NoError(t, lx.raft.Snapshot().Error())
	cfg := lx.cfg
	require.NoError(t, lx.Close())

	s, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, nil)
	require.NoError(t, err)
	before, err := s.List()
	require.NoError(t, err)
	require.Len(t, before, 1)
	half, err := s.Create(raft.SnapshotVersionMax, before[0].Index+100, 1, raft.Configuration{}, 1, nil)
	require.NoError(t, err)
	_, err = half.Write([]byte("{")) // never closed: the crash
	require.NoError(t, err)
	temps := func() []string {
		m, err := filepath.Glob(filepath.Join(cfg.Dir, "snapshots", "*.tmp"))
		require.NoError(t, err)
		return m
	}
	require.Len(t, temps(), 1)

	require.NoError(t, reapSnapshotTemps(t.TempDir()), "a Dir without snapshots")
	lx2, err := newNode(cfg, seams{})
	require.NoError(t, err)
	defer lx2.Close()
	require.Empty(t, temps())
	after, err := s.List()
	require.NoError(t, err)
	require.Equal(t, before, after)
}

// TestWriteErrorFreesRetired: while a write fails (a full disk), the
// retired files no stored snapshot lists are deleted at once, as the next
// snapshot would have: none is taken while a write fails, and every node
// holds the same files, so theirs fill together and the retired ones may
// be the only room there is (an operator had to delete them by hand on
// every node). Those a stored snapshot lists stay.
func TestWriteErrorFreesRetired(t *testing.T) {
	dir := t.TempDir()
	logs := testLogs(120, 7)
	raftLog := raft.NewInmemStore() // redo reads the entries since the checkpoint back
	require.NoError(t, raftLog.StoreLogs(logs))
	var full atomic.Bool
	f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 2048}, maxFiles: 3},
		format: FormatText, stateInterval: -1, logf: t.Logf, retryPause: time.Millisecond,
		logs: func() raft.LogStore { return raftLog }, fault: enospcWhile(&full)})
	require.NoError(t, err)
	var stored uint64 // the newest snapshot "Raft" stored
	f.storedSnap = func() uint64 { return stored }
	f.ApplyBatch(logs[:60])
	s1, err := f.Snapshot()
	require.NoError(t, err)
	stored = s1.(*manifest).Index
	before := hidden(t, dir)
	require.NotEmpty(t, before, "no retired file waits for the next snapshot: the test shows nothing")
	f.ApplyBatch(logs[60:90]) // retired after the stored snapshot, which lists them
	listed := hidden(t, dir)[len(before):]
	require.NotEmpty(t, listed)

	full.Store(true)
	done := make(chan []any, 1)
	go func() { done <- f.ApplyBatch(logs[90:91]) }()
	gone := func() bool {
		for _, name := range before {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return false
			}
		}
		return true
	}
	require.True(t, waitFor(10*time.Second, gone), "retired files kept while the disk is full: %v", hidden(t, dir))
	require.Error(t, f.Err(), "deleted after the disk freed up")
	full.Store(false)
	for _, r := range <-done {
		require.NoError(t, r.(applyResult).err)
	}
	for _, name := range listed {
		require.FileExists(t, filepath.Join(dir, name), "the stored snapshot lists it")
	}
	require.NoError(t, f.close())
}
