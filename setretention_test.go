package logx

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

// TestRetentionCmd: what appendRetentionCmd writes reads back; limits a
// Config could not hold, and anything else, are refused.
func TestRetentionCmd(t *testing.T) {
	for _, c := range []retentionCmd{{}, {MaxFiles: 3}, {MaxAge: time.Hour}, {MaxFiles: maxQueue, MaxAge: clockSlack}} {
		got, err := parseRetentionCmd(appendRetentionCmd(nil, c))
		require.NoError(t, err)
		require.Equal(t, c, got)
	}
	for _, c := range []retentionCmd{{MaxFiles: -1}, {MaxFiles: maxQueue + 1}, {MaxAge: -time.Second}, {MaxAge: clockSlack - 1}} {
		_, err := parseRetentionCmd(appendRetentionCmd(nil, c))
		require.Error(t, err, "%+v", c)
	}
	for _, b := range [][]byte{nil, {cmdRetention}, {cmdLevel, '{', '}'}, append([]byte{cmdRetention}, strings.Repeat(" ", maxRetentionCmd)...)} {
		_, err := parseRetentionCmd(b)
		require.Error(t, err, "%q", b)
	}
}

// TestApplyRetention: a retention command retires at once what its limits
// leave out, is kept in the cluster's settings (RetentionSet) through a
// restart, and is refused before the settings are recorded.
func TestApplyRetention(t *testing.T) {
	dir := t.TempDir()
	policy := filePolicy{rotation: store.Rotation{MaxSize: 2048}}
	f := openPolicyFSM(t, dir, policy)
	var b logBuilder
	b.add(raft.LogCommand, appendRetentionCmd(nil, retentionCmd{MaxFiles: 1}))
	res := f.ApplyBatch(b.take())
	require.ErrorContains(t, res[0].(applyResult).err, "before the cluster's settings")

	s := clusterSettings{File: "app.log", MaxSize: 2048, Format: FormatText, DedupWindow: time.Hour}
	b.add(raft.LogCommand, appendSettings(nil, s))
	for range 400 {
		b.batch(1, 4, time.Unix(1700000000, 0), "entry")
	}
	f.ApplyBatch(b.take())
	rotated := len(f.seg.State(0).Rotated)
	require.Greater(t, rotated, 5)
	require.Zero(t, f.retired.Load())

	b.add(raft.LogCommand, appendRetentionCmd(nil, retentionCmd{MaxFiles: 2}))
	res = f.ApplyBatch(b.take())
	require.NoError(t, res[0].(applyResult).err)
	require.Len(t, f.seg.State(0).Rotated, 2, "retired at once")
	require.Equal(t, uint64(rotated-2), f.retired.Load())
	require.True(t, f.st.Settings.RetentionSet)
	require.Equal(t, 2, f.clusterSettings().MaxFiles)
	require.NoError(t, f.persist())
	require.NoError(t, f.close())

	st, ok, err := readState(dir)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, st.Settings.RetentionSet)
	require.Equal(t, 2, st.Settings.MaxFiles)
	// A Config that says otherwise takes the cluster's, without a conflict.
	want := wantedSettings(Config{File: "app.log", MaxFiles: 7, MaxAge: time.Hour, Format: FormatText})
	require.NoError(t, st.Settings.conflict(want))
	cfg := st.Settings.adopt(Config{MaxFiles: 7, MaxAge: time.Hour})
	require.Equal(t, 2, cfg.MaxFiles)
	require.Zero(t, cfg.MaxAge)
	st.Settings.RetentionSet = false
	require.Error(t, st.Settings.conflict(want), "without a retention command, the Config conflicts")
}

// TestSetRetention: a cluster started without retention gets one through
// any node: every node retires the same files at once and ends identical,
// a restart keeps it (the cluster's limits win over the Config, which
// conflicted before), and a node that was down applies it when it comes
// back. It is refused while a member that is up runs an older logx.
func TestSetRetention(t *testing.T) {
	t.Parallel()
	c, follower := downedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	countFiles := func(i int) int {
		names, err := LogFiles(c.cfgs[i].Dir, "app.log")
		require.NoError(t, err)
		return len(names)
	}
	require.Greater(t, countFiles(0), 5)
	require.NoError(t, c.nodes[follower].SetRetention(ctx, 2, 0))
	require.True(t, waitFor(10*time.Second, func() bool { return countFiles(0) == 3 && countFiles(1) == 3 }),
		"2 rotated files and the active one: %d %d", countFiles(0), countFiles(1))
	require.Equal(t, 2, c.nodes[0].Stats().MaxFiles, "Stats shows the retention in force")
	require.Error(t, c.nodes[0].SetRetention(ctx, -1, 0))
	require.ErrorContains(t, c.nodes[0].SetRetention(ctx, 0, time.Second), "less than")

	// The node that was down applies it; a restart with a Config that
	// says otherwise keeps the cluster's.
	c.start(2)
	c.waitReady()
	c.logAppend("after", 30)
	c.flushAll()
	c.waitSameSeq(390)
	requireIdentical(t, c.dirs(), "app.log")
	require.Equal(t, 3, countFiles(2))
	c.stop(0)
	c.cfgs[0].MaxFiles = 5
	c.start(0)
	c.waitReady()
	c.logAppend("later", 30)
	c.flushAll()
	c.waitSameSeq(480)
	requireIdentical(t, c.dirs(), "app.log")
	require.Equal(t, 3, countFiles(0), "the cluster's limit, not the Config's 5")

	// An older member refuses it.
	c.stop(1)
	c.seams[1].version = retentionFeature - 1
	c.start(1)
	c.waitReady()
	err := c.nodes[0].SetRetention(ctx, 0, 0)
	require.ErrorContains(t, err, "without retention commands")
}

// TestRetentionCmdBatching: what a retention command retires does not
// depend on how Raft grouped the entries before it into batches: a node
// that applies the lines that rotate a file and a command loosening the
// limits in one batch retires what one applying them in two does. Before,
// the batch's one retention ran under the new limits, and the nodes' files
// parted.
func TestRetentionCmdBatching(t *testing.T) {
	var b logBuilder
	b.add(raft.LogCommand, appendSettings(nil, clusterSettings{File: "app.log", MaxSize: 2048, MaxFiles: 2, Format: FormatText, DedupWindow: time.Hour}))
	for range 100 {
		b.batch(1, 4, time.Unix(1700000000, 0), "entry")
	}
	head := b.take()
	for range 30 { // some rotations
		b.batch(1, 4, time.Unix(1700000000, 0), "entry")
	}
	tail := b.take()
	b.add(raft.LogCommand, appendRetentionCmd(nil, retentionCmd{}))
	loosen := b.take()

	files := func(split bool) []string {
		f := openPolicyFSM(t, t.TempDir(), filePolicy{rotation: store.Rotation{MaxSize: 2048}})
		f.ApplyBatch(head)
		if split {
			f.ApplyBatch(tail)
			f.ApplyBatch(loosen)
		} else {
			f.ApplyBatch(append(append([]*raft.Log{}, tail...), loosen...))
		}
		var names []string
		for _, r := range f.seg.State(0).Rotated {
			names = append(names, r.Name)
		}
		require.NoError(t, f.close())
		return names
	}
	split, one := files(true), files(false)
	require.Len(t, split, 2, "retired under MaxFiles 2 before the command")
	require.Equal(t, split, one)
}

// TestLoggedLimits: a stream spec or settings an earlier version committed
// with a File of 201 to 234 bytes (TestLongestFile: up to 221 it works in
// every stream), or a QueueSize over 2^20, which Config
// refuses since 2026-12-06, is still read from the log, a checkpoint or a
// snapshot, deleted streams' included (a node upgraded over such a log
// failed to start, or refused a create the others applied); a new stream
// is checked as a Config is. A longer File never worked (a name derived
// from it is over 255 bytes: TestLongestFile); a deleted stream's
// settings are not checked at all.
func TestLoggedLimits(t *testing.T) {
	long := strings.Repeat("a", maxLoggedFileName-len(".log")) + ".log"
	spec := specOf(StreamConfig{Name: "s", File: long, QueueSize: 2 << 20})
	require.NoError(t, spec.checkLogged())
	require.NoError(t, checkCatalog(map[string]*catalogEntry{"s": {Spec: spec, Index: 5, Deleted: 9}}))
	b, err := json.Marshal(catalogCmd{Op: "create", Stream: &spec, Voters: []string{"127.0.0.1:1"}})
	require.NoError(t, err)
	_, err = readCatalogCmd(append([]byte{cmdCatalog}, b...))
	require.NoError(t, err, "a create an earlier version committed")
	s := wantedSettings(Config{File: long, MaxSize: 1 << 20, DedupWindow: time.Minute, Format: FormatText})
	_, err = readSettings(appendSettings(nil, s))
	require.NoError(t, err)

	var ce *ConfigError
	require.ErrorAs(t, spec.check(), &ce, "a new stream")
	require.ErrorAs(t, specOf(StreamConfig{Name: "s", File: long}).check(), &ce)
	require.Equal(t, "Streams[0].File", ce.Field)
	require.ErrorAs(t, specOf(StreamConfig{Name: "s", QueueSize: 2 << 20}).check(), &ce)
	require.Equal(t, "Streams[0].QueueSize", ce.Field)
	require.Error(t, specOf(StreamConfig{Name: "s", File: "a" + long}).checkLogged(), "235 bytes")
	// A deleted stream's settings are not used, so not checked: one of 235
	// bytes or more, which an earlier version took and which stopped the
	// stream at its first rotation, was deleted, and a catalog holding it
	// made every upgraded node fail to start.
	longer := specOf(StreamConfig{Name: "s", File: strings.Repeat("b", 300) + ".log"})
	require.NoError(t, checkCatalog(map[string]*catalogEntry{"s": {Spec: longer, Index: 5, Deleted: 9}}))
	require.Error(t, checkCatalog(map[string]*catalogEntry{"s": {Spec: longer, Index: 5}}), "a live one")
	bad := longer
	bad.Name = "../s"
	require.Error(t, checkCatalog(map[string]*catalogEntry{"../s": {Spec: bad, Index: 5, Deleted: 9}}), "a deleted one's name is still checked")
	def := specOf(StreamConfig{Name: DefaultStream})
	require.Error(t, checkCatalog(map[string]*catalogEntry{DefaultStream: {Spec: def, Index: 5, Deleted: 9}}), "the default stream deleted")
	s.File = "a" + long
	_, err = readSettings(appendSettings(nil, s))
	require.Error(t, err)
}

// TestLoggedShortMaxAge: a MaxAge under clockSlack, which Config now
// refuses, is still read from a log an earlier version wrote, in the
// settings and in the catalog, so that a node upgraded onto such a log
// agrees with its peers.
func TestLoggedShortMaxAge(t *testing.T) {
	s := wantedSettings(Config{File: "app.log", MaxSize: 1 << 20, MaxAge: 30 * time.Second, DedupWindow: time.Minute, Format: FormatText})
	got, err := readSettings(appendSettings(nil, s))
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, got.MaxAge)
	require.NoError(t, specOf(StreamConfig{Name: "s", MaxAge: 30 * time.Second}).checkLogged())
	require.Error(t, specOf(StreamConfig{Name: "s", MaxAge: -time.Second}).checkLogged())
	// A MaxSize or MaxEntrySize under 512, which Config now refuses, in a
	// catalog an earlier version wrote: refusing it failed every upgraded
	// node's start.
	for _, sc := range []StreamConfig{{Name: "s", MaxSize: 300}, {Name: "s", MaxEntrySize: 100}} {
		require.NoError(t, specOf(sc).checkLogged(), "%+v", sc)
		require.Error(t, specOf(sc).check(), "%+v", sc)
	}
	b, err := json.Marshal(catalogCmd{Op: "create", Stream: &streamSpec{Name: "s", MaxAge: 30 * time.Second}, Voters: []string{"127.0.0.1:1"}})
	require.NoError(t, err)
	_, err = readCatalogCmd(append([]byte{cmdCatalog}, b...))
	require.NoError(t, err, "a create an earlier version committed")
	// A new stream is checked as a Config is.
	require.Error(t, specOf(StreamConfig{Name: "s", MaxAge: 30 * time.Second}).check())
	lx := newSingle(t, nil)
	var ce *ConfigError
	require.ErrorAs(t, lx.CreateStream(context.Background(), StreamConfig{Name: "s", MaxAge: 30 * time.Second}), &ce)
}

// TestRestartConfigRetention: a node restarted with a Config whose
// retention differs from what it last applied of the cluster's, which no
// retention command had set (it was down while SetRetention ran, or it
// caught up from a snapshot taken before one, and its Config was changed
// to match), starts, and goes by the cluster's: before, it refused to
// start, saying the cluster used what it had last applied; the retention
// command it has yet to apply settles it. Other settings still conflict.
func TestRestartConfigRetention(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.Streams = []StreamConfig{{Name: "s", MaxFiles: 3}} })
	c.waitSettings()
	c.logAppend("before", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := c.nodes[0].Stream("s")
	require.NoError(t, err)
	_, err = s.Append(ctx, LevelInfo, "in s") // its first leader records its settings
	require.NoError(t, err)
	require.True(t, waitFor(10*time.Second, func() bool { return s.fsm.settings.Load() != nil }))
	c.stop(0)
	cfg := c.cfgs[0]
	cfg.MaxFiles, cfg.MaxAge = 5, time.Hour
	cfg.Streams = []StreamConfig{{Name: "s", MaxFiles: 9}} // a declared stream's too
	lx, err := New(cfg)
	require.NoError(t, err, "a Config's retention that the cluster's holds over")
	require.Zero(t, lx.defaultStream.fsm.policy.maxFiles, "the cluster's retention holds")
	require.Zero(t, lx.defaultStream.fsm.policy.maxAge)
	require.Zero(t, lx.Stats().MaxFiles, "Stats shows the retention in force")
	s, err = lx.Stream("s")
	require.NoError(t, err)
	require.NoError(t, s.WaitReady(ctx))
	require.Equal(t, 3, s.fsm.policy.maxFiles, "the stream's log's retention holds")
	require.Equal(t, 3, s.Stats().MaxFiles)
	require.NoError(t, lx.Close())
	cfg.MaxSize = 12345
	_, err = New(cfg)
	requireConfigError(t, err, "MaxSize")
}
