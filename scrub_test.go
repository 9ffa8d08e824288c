package logx

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

// TestRepairDamagedFiles: rotated files of a stopped node are damaged on
// disk (a flipped byte, a cut tail); when it starts it finds them by their
// checksums and copies them again from a peer, ending identical.
func TestRepairDamagedFiles(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.MaxSize = 8 << 10 })
	c.waitReady()
	c.logAppend("scrub", 100)
	c.flushAll()
	c.waitSameSeq(300)
	want := requireIdentical(t, c.dirs(), "app.log")

	c.stop(1)
	dir := c.cfgs[1].Dir
	names, err := LogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Greater(t, len(names), 3, "rotated files")
	flipped, cut := filepath.Join(dir, names[0]), filepath.Join(dir, names[1])
	b, err := os.ReadFile(flipped)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x20
	require.NoError(t, os.WriteFile(flipped, b, 0o644))
	fi, err := os.Stat(cut)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(cut, fi.Size()-10))
	// A repair a crash cut short, of a file this start does not repair:
	// its copy is removed all the same.
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".repair-"+names[2]), b[:100], 0o644))

	c.start(1)
	lx := c.nodes[1]
	require.True(t, waitFor(20*time.Second, func() bool { return lx.Stats().RepairedFiles == 2 }),
		"repaired %d of %d damaged", lx.Stats().RepairedFiles, lx.Stats().DamagedFiles)
	require.Equal(t, uint64(2), lx.Stats().DamagedFiles)
	require.Equal(t, want, fileHashes(t, dir, "app.log"))
	leftovers, err := filepath.Glob(filepath.Join(dir, ".repair-*"))
	require.NoError(t, err)
	require.Empty(t, leftovers)
}

// TestRepairRacesRetirement: repair runs beside Raft's apply goroutine,
// where retention and catch-up take rotated files out of the log. A file
// they take away while repair is between its check that the file is there
// and its rename over it must stay away: the test's hook, called by repair
// in that window, starts the retirement of the same file and gives it a
// second to finish. Afterwards the file is out of the log either way.
func TestRepairRacesRetirement(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"retention", "catch-up"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			f := openPolicyFSM(t, dir, filePolicy{rotation: store.Rotation{MaxSize: 2048}})
			f.ApplyBatch(testLogs(30, 7))
			require.Greater(t, len(f.seg.State(0).Rotated), 2)
			fs := f.seg.State(0).Rotated[0]
			path := filepath.Join(dir, fs.Name)
			good, err := os.ReadFile(path)
			require.NoError(t, err)
			f.fetcher = fetcherFunc(func(_ context.Context, first uint64, off, n int64, w io.Writer, _ int) error {
				require.Equal(t, fs.First, first)
				_, err := w.Write(good[off : off+n])
				return err
			})
			damaged := slices.Clone(good)
			damaged[len(damaged)/2] ^= 0x20
			require.NoError(t, os.WriteFile(path, damaged, 0o644))

			// What takes the file away, on another goroutine as Raft's
			// apply would.
			var retire func() error
			switch how {
			case "retention":
				f.policy.maxFiles = len(f.seg.State(0).Rotated) - 1 // the oldest goes
				retire = f.retain
			case "catch-up":
				snap, err := f.Snapshot()
				require.NoError(t, err)
				m := snap.(*manifest)
				m.Files = m.Files[1:] // the leader no longer has it
				m.Index++
				retire = func() error { return f.catchUp(context.Background(), m) }
			}
			done := make(chan error, 1)
			hooked := 0
			f.repairHook = func(name string) {
				hooked++
				require.Equal(t, fs.Name, name)
				go func() { done <- retire() }()
				select {
				case err := <-done:
					done <- err // finished inside the window
				case <-time.After(time.Second):
				}
			}
			require.NoError(t, f.repair(context.Background(), fs))
			require.Equal(t, 1, hooked)
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(20 * time.Second):
				t.Fatal("the retirement never finished")
			}

			names, err := LogFiles(dir, "app.log")
			require.NoError(t, err)
			require.NotContains(t, names, fs.Name, "repair brought back a file that left the log")
			require.NoFileExists(t, path)
			if how == "retention" {
				b, err := os.ReadFile(filepath.Join(dir, store.RetiredName(fs.Name)))
				require.NoError(t, err)
				require.Equal(t, good, b, "the retired file is the repaired copy")
			}
			leftovers, err := filepath.Glob(filepath.Join(dir, ".repair-*"))
			require.NoError(t, err)
			require.Empty(t, leftovers)
			require.NoError(t, f.close())
		})
	}
}

// TestScrubPlan: a start checks the files rotated since the last check,
// and the older ones only when a whole pass is due (scrubEvery) or one was
// cut short (from its cursor).
func TestScrubPlan(t *testing.T) {
	files := []store.File{{First: 1}, {First: 10}, {First: 20}, {First: 30}}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	firsts := func(fs []store.File) []uint64 {
		out := []uint64{}
		for _, f := range fs {
			out = append(out, f.First)
		}
		return out
	}
	ago := func(d time.Duration) int64 { return now.Add(-d).UnixNano() }
	for _, tc := range []struct {
		name         string
		st           scrubState
		fresh, older []uint64
	}{
		{"no record: all fresh", scrubState{}, []uint64{1, 10, 20, 30}, []uint64{}},
		{"checked an hour ago", scrubState{Through: 20, PassAt: ago(time.Hour)}, []uint64{30}, []uint64{}},
		{"all checked", scrubState{Through: 30, PassAt: ago(time.Hour)}, []uint64{}, []uint64{}},
		{"a pass due", scrubState{Through: 20, PassAt: ago(scrubEvery + time.Hour)}, []uint64{30}, []uint64{1, 10, 20}},
		{"a pass cut short", scrubState{Through: 20, PassAt: ago(time.Hour), Cursor: 10}, []uint64{30}, []uint64{10, 20}},
		{"a record past the files (a wiped Dir)", scrubState{Through: 99, PassAt: ago(time.Hour)}, []uint64{1, 10, 20, 30}, []uint64{}},
		{"a pass that ended in the future (a clock set back since): due", scrubState{Through: 30, PassAt: ago(-365 * 24 * time.Hour)}, []uint64{}, []uint64{1, 10, 20, 30}},
	} {
		fresh, older := scrubPlan(files, tc.st, now, scrubEvery)
		require.Equal(t, tc.fresh, firsts(fresh), tc.name)
		require.Equal(t, tc.older, firsts(older), tc.name)
	}
	fresh, older := scrubPlan(nil, scrubState{Through: 5}, now, scrubEvery)
	require.Empty(t, fresh)
	require.Empty(t, older)
}

// TestScrubChecksOnlyNew: a restart checks only the files rotated since
// the last check (before, every start hashed every retained file); once
// the last whole pass is a week old it checks them all, and a whole pass
// a restart cut short goes on where it stopped.
func TestScrubChecksOnlyNew(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.MaxSize = 8 << 10 })
	dir := c.cfgs[0].Dir
	restart := func() uint64 {
		t.Helper()
		c.stop(0)
		c.start(0)
		waitStartCheck(t, c.nodes[0].defaultStream)
		return c.nodes[0].Stats().CheckedFiles
	}
	c.logAppend("scrub", 500)
	c.flushAll()
	rotatedNow := func() uint64 {
		names, err := LogFiles(dir, c.cfgs[0].File)
		require.NoError(t, err)
		return uint64(len(names) - 1) // the active file is last
	}
	rotated := rotatedNow()
	require.Greater(t, rotated, uint64(3))
	require.Equal(t, rotated, restart(), "every file is new")
	st := readScrub(dir)
	require.NotZero(t, st.PassAt, "a check of every file is a whole pass")
	require.Zero(t, restart(), "nothing rotated since")

	c.logAppend("more", 150)
	c.flushAll()
	more := rotatedNow()
	require.Greater(t, more, rotated)
	require.Equal(t, more-rotated, restart(), "the files rotated since")

	st = readScrub(dir)
	st.PassAt = time.Now().Add(-scrubEvery - time.Hour).UnixNano()
	writeScrub(t, dir, st)
	require.Equal(t, more, restart(), "a week on: every file")
	st = readScrub(dir)
	require.Zero(t, st.Cursor)
	require.WithinDuration(t, time.Now(), time.Unix(0, st.PassAt), time.Minute)

	files := c.nodes[0].defaultStream.fsm.toScrub()
	st.Cursor = files[2].First // a pass cut short at the third file
	writeScrub(t, dir, st)
	require.Equal(t, more-2, restart(), "from the cursor on")
	require.Zero(t, readScrub(dir).Cursor)
}

// waitStartCheck waits for s's check of its files at start to end.
func waitStartCheck(t *testing.T, s *Stream) {
	t.Helper()
	select {
	case <-s.scrubStarted:
	case <-time.After(30 * time.Second):
		t.Fatal("the check did not end")
	}
}

func writeScrub(t *testing.T, dir string, st scrubState) {
	t.Helper()
	b, err := json.Marshal(st)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, scrubFile), b, 0o644))
}

// TestScrubWhileRunning: a node that keeps running checks its rotated
// files again every scrubEvery (here 300 ms), so damage to one, or one
// deleted under it, is found and repaired from a peer without a restart.
// Before, a node checked its files only at its start, and took a missing
// file for a retired one.
func TestScrubWhileRunning(t *testing.T) {
	t.Parallel() // waits more than it computes (parallelTests, logx_test.go)
	for name, harm := range map[string]func(t *testing.T, path string){
		"damaged": func(t *testing.T, path string) { flipByte(t, path, 0x20) },
		"missing": func(t *testing.T, path string) { require.NoError(t, os.Remove(path)) },
	} {
		t.Run(name, func(t *testing.T) {
			c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
				cfg.MaxSize = 8 << 10
				sm.scrubEvery = 300 * time.Millisecond
			})
			c.logAppend("scrub", 100)
			c.flushAll()
			c.waitSameSeq(300)
			want := requireIdentical(t, c.dirs(), "app.log")
			lx := c.nodes[1]
			dir := c.cfgs[1].Dir
			require.True(t, waitFor(20*time.Second, func() bool { return lx.Stats().CheckedFiles > 0 }), "no check while running")

			names, err := LogFiles(dir, "app.log")
			require.NoError(t, err)
			require.Greater(t, len(names), 3)
			harm(t, filepath.Join(dir, names[1]))
			require.True(t, waitFor(20*time.Second, func() bool { return lx.Stats().RepairedFiles == 1 }),
				"repaired %d, damaged %d", lx.Stats().RepairedFiles, lx.Stats().DamagedFiles)
			require.Equal(t, want, fileHashes(t, dir, "app.log"))
		})
	}
}

// A compressed file the running check repairs comes back plain, and the
// compressor compresses it again (before, it had settled that name and
// left the copy plain until the next start).
func TestScrubWhileRunningCompressed(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.MaxSize = 8 << 10
		cfg.Compress = true
		sm.scrubEvery = 300 * time.Millisecond
	})
	c.logAppend("scrub", 100)
	c.flushAll()
	c.waitSameSeq(300)
	lx := c.nodes[1]
	dir := c.cfgs[1].Dir
	zst := func() []string {
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		var out []string
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), store.CompressedExt) && !strings.HasPrefix(e.Name(), ".") {
				out = append(out, e.Name())
			}
		}
		return out
	}
	require.True(t, waitFor(30*time.Second, func() bool { return len(zst()) >= 2 }), "no compressed files")
	victim := zst()[0]
	flipByte(t, filepath.Join(dir, victim), 0x20)
	require.True(t, waitFor(20*time.Second, func() bool { return lx.Stats().RepairedFiles == 1 }),
		"repaired %d, damaged %d", lx.Stats().RepairedFiles, lx.Stats().DamagedFiles)
	// Compressed again: the .zst is in place and the plain copy gone (the
	// compressor renames the one into place before it removes the other).
	plain := filepath.Join(dir, strings.TrimSuffix(victim, store.CompressedExt))
	require.True(t, waitFor(20*time.Second, func() bool {
		_, err := os.Stat(plain)
		return slices.Contains(zst(), victim) && errors.Is(err, os.ErrNotExist)
	}), "the repaired copy was not compressed again: %v", zst())
	want := requireIdentical(t, c.dirs(), "app.log")
	require.NotEmpty(t, want)
}

// flipByte flips bits of the middle byte of the file at path: damage on
// disk, of the size a bad sector or a stray write leaves.
func flipByte(t *testing.T, path string, bits byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/2] ^= bits
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// TestScrubRestoresMissingFile: a rotated file the log still holds that is
// missing from Dir (deleted by hand, its directory entry lost) is copied
// again from a peer, by a start that does not read it (it looks for every
// file) and by a running node's pass; files retention retires meanwhile
// stay retired. Before, a check took a missing file for a retired one and
// the node went on without it for good.
func TestScrubRestoresMissingFile(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.MaxSize = 8 << 10
		cfg.MaxFiles = 6
	})
	c.logAppend("scrub", 100)
	c.flushAll()
	c.waitSameSeq(300)
	dir := c.cfgs[1].Dir
	file := c.cfgs[1].File
	names, err := LogFiles(dir, file)
	require.NoError(t, err)
	require.Greater(t, len(names), 3)

	restart := func(change func()) {
		t.Helper()
		c.stop(1)
		change()
		c.start(1)
		select {
		case <-c.nodes[1].defaultStream.scrubStarted:
		case <-time.After(30 * time.Second):
			t.Fatal("the check did not end")
		}
	}
	restart(func() {}) // checks every file: all rotated since the last check
	// A start with nothing due to read: the last check covered every file.
	restart(func() {
		require.Equal(t, names[len(names)-2], store.NewNames(file).Segment(readScrub(dir).Through))
		require.NoError(t, os.Remove(filepath.Join(dir, names[1])))
	})
	st := c.nodes[1].Stats()
	require.Equal(t, uint64(1), st.CheckedFiles, "the start read only the missing file")
	require.Equal(t, uint64(1), st.DamagedFiles)
	require.Equal(t, uint64(1), st.RepairedFiles)
	require.FileExists(t, filepath.Join(dir, names[1]))

	// Retention retires the oldest files from here on: none comes back.
	c.logAppend("more", 150)
	c.flushAll()
	c.waitSameSeq(750)
	require.Greater(t, c.nodes[1].Stats().Retired, uint64(0))
	requireIdentical(t, c.dirs(), file)
}

// TestLostAfterRetire: a file missing from Dir that retention then retires
// (it renames nothing: there is nothing to rename) is not lost, although
// the newest checkpoint still lists it until the next one; a missing file
// the log still holds is. Before, the check put the retired file back from
// a peer, where nothing would ever remove it again.
func TestLostAfterRetire(t *testing.T) {
	dir := t.TempDir()
	f, err := newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 2048}, maxFiles: 4},
		format: FormatText, stateInterval: -1, logf: t.Logf})
	require.NoError(t, err)
	defer f.close()
	logs := testLogs(60, 4)
	f.ApplyBatch(logs[:30])
	require.NoError(t, f.persist())
	listed := *f.checkpointed.Load()
	require.Len(t, listed, 4)
	oldest, newest := listed[0], listed[len(listed)-1]
	require.NoError(t, os.Remove(filepath.Join(dir, oldest.Name)))
	require.True(t, f.lost(oldest), "missing and still in the log")

	f.ApplyBatch(logs[30:]) // rotates, and retention retires the oldest files
	require.Equal(t, listed, *f.checkpointed.Load(), "no checkpoint since")
	require.Greater(t, f.seg.RetiredBelow(), oldest.First)
	require.False(t, f.lost(oldest), "retired while missing") // repair asks the same under filesMu before its rename

	require.NoError(t, f.persist())
	now := *f.checkpointed.Load()
	kept := now[len(now)-1]
	require.Greater(t, kept.First, newest.First)
	require.False(t, f.lost(kept), "there")
	require.NoError(t, os.Remove(filepath.Join(dir, kept.Name)))
	require.True(t, f.lost(kept), "missing and still in the log")
}

// TestScrubMarksUnrepaired: a file the start's check finds damaged and
// cannot repair (no peer) is one a catch-up must read again
// (uncheckedFiles); the files it cleared are not.
func TestScrubMarksUnrepaired(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.MaxSize = 8 << 10 })
	dir := c.cfgs[0].Dir
	c.logAppend("scrub", 300)
	c.flushAll()
	names, err := LogFiles(dir, c.cfgs[0].File)
	require.NoError(t, err)
	require.Greater(t, len(names), 3)
	var firsts []uint64
	for _, n := range names[:2] {
		first, ok := store.NewNames(c.cfgs[0].File).ParseSegment(n)
		require.True(t, ok)
		firsts = append(firsts, first)
	}
	c.stop(0)
	flipByte(t, filepath.Join(dir, names[1]), 0x20)
	c.start(0)
	s := c.nodes[0].defaultStream
	waitStartCheck(t, s)
	checks := s.uncheckedFiles()
	require.True(t, checks.unchecked(firsts[1]), "the damaged file")
	require.True(t, checks.damaged(firsts[1]))
	require.False(t, checks.unchecked(firsts[0]), "a file the check cleared")
	require.Equal(t, []uint64{firsts[1]}, readScrub(dir).Damaged, "recorded for a restart")

	// After a restart it is damaged at once, before the start's check
	// finds it again.
	c.stop(0)
	c.start(0)
	s = c.nodes[0].defaultStream
	require.True(t, s.uncheckedFiles().damaged(firsts[1]))
	waitStartCheck(t, s)
	checks = s.uncheckedFiles()
	checks.cleared(firsts[1]) // a catch-up copied and checked it
	require.False(t, s.uncheckedFiles().unchecked(firsts[1]))
}

// TestUncheckedBeforeStartCheck: until the start's check ends, the files
// its record has not passed are unchecked: rotated after Through, and at
// or after the Cursor of a whole pass that stopped (a file found damaged
// before a restart stops it there).
func TestUncheckedBeforeStartCheck(t *testing.T) {
	lx := &Stream{scrubStarted: make(chan struct{})}
	lx.cfg.Dir = t.TempDir()
	writeScrub(t, lx.cfg.Dir, scrubState{Through: 100, Cursor: 50, PassAt: 1})
	unchecked := lx.uncheckedFiles().unchecked
	for first, want := range map[uint64]bool{1: false, 49: false, 50: true, 100: true, 101: true} {
		require.Equal(t, want, unchecked(first), "file %d", first)
	}
	writeScrub(t, lx.cfg.Dir, scrubState{Through: 100, Damaged: []uint64{7}})
	lx.loadDamaged()
	checks := lx.uncheckedFiles()
	require.False(t, checks.unchecked(100))
	require.True(t, checks.unchecked(101))
	require.True(t, checks.damaged(7) && checks.unchecked(7), "damaged before the restart")
	close(lx.scrubStarted)
	checks = lx.uncheckedFiles()
	require.False(t, checks.unchecked(101), "the start's check has ended")
	require.True(t, checks.unchecked(7), "still damaged")
}
