package logx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// logAppend logs n entries with Append from every running node.
func (c *testCluster) logAppend(tag string, n int) {
	c.t.Helper()
	var wg sync.WaitGroup
	for i, lx := range c.nodes {
		if lx == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < n; k++ {
				if _, err := lx.Append(context.Background(), LevelInfo, "catch-up entry", "tag", tag, "node", i, "k", k); err != nil {
					c.t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// snapshotAll makes every running node take a Raft snapshot, so Raft
// compacts its log down to TrailingLogs entries.
func (c *testCluster) snapshotAll() {
	c.t.Helper()
	for _, lx := range c.nodes {
		if lx != nil {
			require.NoError(c.t, lx.raft.Snapshot().Error())
		}
	}
}

func catchUpCluster(t *testing.T) *testCluster {
	return newTestCluster(t, 3, func(cfg *Config) {
		cfg.MaxSize = 16 << 10
		cfg.TrailingLogs = 8
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
		cfg.walSegmentSize = 16 << 10   // so that compaction drops segments
	})
}

// TestCatchUpAfterCompaction: a node that was down while the others logged
// and compacted their Raft logs past its position catches up by copying
// file tails from a peer, and ends byte-identical.
func TestCatchUpAfterCompaction(t *testing.T) {
	c := catchUpCluster(t)
	c.logAppend("before", 100)
	c.stop(2)
	c.logAppend("while-down", 300)
	c.snapshotAll()
	c.start(2)
	c.waitReady()
	c.logAppend("after", 50)
	c.flushAll()
	total := uint64(3*100 + 2*300 + 3*50)
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	requireUnique(t, readLines(t, c.cfgs[2].Dir, "app.log"), "tag", "node", "k")
	st := c.nodes[2].Stats()
	require.Equal(t, uint64(1), st.CatchUps)
	require.Positive(t, st.FetchedBytes)
	var served uint64
	for _, lx := range c.nodes[:2] {
		served += lx.Stats().ServedBytes
	}
	require.Equal(t, st.FetchedBytes, served)
}

// TestCatchUpWipedDir: a node whose directory was wiped comes back empty and
// copies the whole log.
func TestCatchUpWipedDir(t *testing.T) {
	c := catchUpCluster(t)
	c.logAppend("before", 200)
	c.snapshotAll()
	c.stop(2)
	require.NoError(t, os.RemoveAll(c.cfgs[2].Dir))
	c.logAppend("while-down", 100)
	c.snapshotAll()
	c.start(2)
	c.waitReady()
	c.logAppend("after", 20)
	c.flushAll()
	total := uint64(3*200 + 2*100 + 3*20)
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	st := c.nodes[2].Stats()
	require.Equal(t, uint64(1), st.CatchUps)
	// Everything before the snapshot was copied, not replayed.
	require.Greater(t, st.FetchedBytes, uint64(3*200*100))
	// The wiped node kept nothing: every byte of the manifest was fetched.
	require.False(t, st.CatchingUp)
	require.Positive(t, st.CatchUpBytes)
	require.Equal(t, st.CatchUpBytes, st.CatchUpDone)
	require.Equal(t, uint64(st.CatchUpBytes), st.FetchedBytes)
	require.Positive(t, st.CatchUpDuration)
}

// dirFetcher serves ranges from another fsm's files, optionally failing
// after a number of bytes or corrupting the first copy.
type dirFetcher struct {
	src       *fsm
	failAfter int64 // fail once this many bytes were served (0: never)
	corrupt   bool  // flip a byte of the first range served
	served    int64
}

func (d *dirFetcher) fetch(_ context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
	fh, err := d.src.openSegment(first)
	if err != nil {
		return err
	}
	defer fh.Close()
	b := make([]byte, n)
	if _, err := fh.ReadAt(b, off); err != nil {
		return err
	}
	if d.corrupt && attempt == 0 {
		b[len(b)/2] ^= 0xff
		d.corrupt = false
	}
	if d.failAfter > 0 && d.served+n > d.failAfter {
		k := d.failAfter - d.served
		w.Write(b[:k])
		d.served = d.failAfter
		d.failAfter = 0
		return errors.New("connection lost")
	}
	d.served += n
	_, err = w.Write(b)
	return err
}

// manifestOf returns the snapshot manifest of f.
func manifestOf(t *testing.T, f *fsm) *manifest {
	t.Helper()
	s, err := f.Snapshot()
	require.NoError(t, err)
	return s.(*manifest)
}

func restoreFrom(t *testing.T, f *fsm, m *manifest) error {
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return f.Restore(io.NopCloser(bytes.NewReader(b)))
}

// TestCatchUpResumes: a catch-up cut off midway leaves a state that a
// restart finishes from the same snapshot, keeping what was copied.
func TestCatchUpResumes(t *testing.T) {
	logs := testLogs(80, 7)
	src := openTestFSM(t, t.TempDir())
	src.ApplyBatch(logs)
	m := manifestOf(t, src)
	defer src.close()

	dir := t.TempDir()
	dst := openTestFSM(t, dir)
	dst.ApplyBatch(logs[:25])
	require.NoError(t, dst.persist())
	df := &dirFetcher{src: src, failAfter: 5000}
	dst.fetcher = df
	require.Error(t, restoreFrom(t, dst, m))

	// "Restart": the checkpoint says a catch-up is under way.
	st, _, err := readState(dir)
	require.NoError(t, err)
	require.True(t, st.CatchingUp)
	dst = openTestFSM(t, dir)
	res := dst.ApplyBatch(logs[25:26])
	require.Error(t, res[0].(applyResult).err, "apply before the catch-up finishes must fail")
	dst = openTestFSM(t, dir)
	dst.fetcher = df
	before := df.served
	require.NoError(t, restoreFrom(t, dst, m))
	dst.ApplyBatch(logs) // Raft goes on after the snapshot: all skipped
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))
	var total int64
	for _, f := range m.Files {
		total += f.Size
	}
	require.Less(t, df.served-before, total, "the resumed copy kept what the first one fetched")
	st, _, err = readState(dir)
	require.NoError(t, err)
	require.False(t, st.CatchingUp)
	require.Equal(t, m.Index, st.Index)
}

// TestCatchUpVerifies: bytes that do not match the manifest's checksum are
// not kept; the file is copied again whole.
func TestCatchUpVerifies(t *testing.T) {
	logs := testLogs(40, 7)
	src := openTestFSM(t, t.TempDir())
	src.ApplyBatch(logs)
	m := manifestOf(t, src)
	defer src.close()

	dir := t.TempDir()
	dst := openTestFSM(t, dir)
	dst.fetcher = &dirFetcher{src: src, corrupt: true}
	require.NoError(t, restoreFrom(t, dst, m))
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))

	// A source that is corrupt every time fails the catch-up: nothing
	// unverified is kept.
	dir2 := t.TempDir()
	dst2 := openTestFSM(t, dir2)
	dst2.fetcher = fetcherFunc(func(_ context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
		_, err := w.Write(bytes.Repeat([]byte("x"), int(n)))
		return err
	})
	err := restoreFrom(t, dst2, m)
	require.ErrorIs(t, err, ErrCorrupt)
	names, err := LogFiles(dir2, "app.log")
	require.NoError(t, err)
	require.Empty(t, names)
}

type fetcherFunc func(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error

func (f fetcherFunc) fetch(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
	return f(ctx, first, off, n, w, attempt)
}

// TestAsyncHasher: the hash computed on the side equals sha256 of the bytes,
// whatever the write sizes.
func TestAsyncHasher(t *testing.T) {
	data := make([]byte, 3*hashBufSize+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := sha256.Sum256(data)
	for _, step := range []int{1, 4096, hashBufSize, hashBufSize + 1, len(data)} {
		h := newAsyncHasher()
		for off := 0; off < len(data); off += step {
			n, err := h.Write(data[off:min(off+step, len(data))])
			require.NoError(t, err)
			require.Equal(t, min(step, len(data)-off), n)
		}
		require.Equal(t, want[:], h.sum(), "step %d", step)
	}
	require.Equal(t, sha256.New().Sum(nil), newAsyncHasher().sum(), "no bytes")
}

// TestManifestNamesArePaths: a snapshot whose file names are not the ones
// their numbers give (a path out of Dir, another stem) is refused before
// anything is fetched or renamed, and nothing is written outside Dir. A
// checkpoint with such a name makes New fail with ErrCorrupt.
func TestManifestNamesArePaths(t *testing.T) {
	logs := testLogs(40, 7)
	src := openTestFSM(t, t.TempDir())
	src.ApplyBatch(logs)
	m := manifestOf(t, src)
	defer src.close()
	require.Greater(t, len(m.Files), 2)

	for name, bad := range map[string]func(m *manifest){
		"rotated out of Dir": func(m *manifest) { m.Files[0].Name = "../escaped.txt" },
		"active out of Dir":  func(m *manifest) { m.Files[len(m.Files)-1].Name = "../escaped.txt" },
		"absolute":           func(m *manifest) { m.Files[1].Name = "/tmp/escaped.txt" },
		"other number":       func(m *manifest) { m.Files[1].Name = m.Files[0].Name },
		"state file":         func(m *manifest) { m.Files[0].Name = stateFile },
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "node")
			require.NoError(t, os.Mkdir(dir, 0o755))
			dst := openTestFSM(t, dir)
			df := &dirFetcher{src: src}
			dst.fetcher = df
			mm := *m
			mm.Files = slices.Clone(m.Files)
			bad(&mm)
			err := restoreFrom(t, dst, &mm)
			require.ErrorContains(t, err, "named")
			require.Zero(t, df.served, "nothing fetched")
			require.NoFileExists(t, filepath.Join(parent, "escaped.txt"))
			require.NoError(t, dst.close())
		})
	}

	dir := t.TempDir()
	f := openTestFSM(t, dir)
	f.ApplyBatch(logs)
	require.NoError(t, f.close())
	st, _, err := readState(dir)
	require.NoError(t, err)
	st.Rotated[0].Name = "../escaped.txt"
	require.NoError(t, writeState(dir, &st))
	_, err = newFSM(dir, "app.log", filePolicy{maxSize: 2048}, FormatText, -1, t.Logf)
	require.ErrorIs(t, err, ErrCorrupt)
}

// interruptedCatchUp makes node 3 of a catch-up cluster start a catch-up
// from its peers whose fetch hangs (fetchHook, a peer that does not send),
// closes node 3 in the middle of it and checks that Close returned within
// its CloseTimeout (2 s here) plus a second. It returns the cluster with
// node 3 down and its catch-up interrupted, and the entries logged so far.
func interruptedCatchUp(t *testing.T) (*testCluster, uint64) {
	c := catchUpCluster(t)
	c.logAppend("before", 100)
	c.stop(2)
	c.logAppend("while-down", 300)
	c.snapshotAll()
	entered := make(chan struct{}, 1)
	c.cfgs[2].CloseTimeout = 2 * time.Second
	c.cfgs[2].fetchHook = func(ctx context.Context) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Second): // so that a Close that does not cut it fails rather than hangs
			return errors.New("test: fetch held for 20 s")
		}
	}
	c.start(2)
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("node 3 never fetched from its peers")
	}
	require.True(t, c.nodes[2].Stats().CatchingUp)
	start := time.Now()
	require.NoError(t, c.nodes[2].Close())
	took := time.Since(start)
	c.nodes[2] = nil
	t.Logf("Close during the catch-up took %v (CloseTimeout %v)", took, c.cfgs[2].CloseTimeout)
	require.Less(t, took, c.cfgs[2].CloseTimeout+time.Second, "Close waited for the catch-up")
	c.cfgs[2].fetchHook = nil
	st, _, err := readState(c.cfgs[2].Dir)
	require.NoError(t, err)
	require.True(t, st.CatchingUp, "the checkpoint says a catch-up is under way")
	return c, 3*100 + 2*300
}

// TestCloseDuringCatchUp: Close stops a catch-up whose fetch waits for a
// peer, within CloseTimeout; the restart finishes the catch-up: identical
// files, every entry once.
func TestCloseDuringCatchUp(t *testing.T) {
	c, before := interruptedCatchUp(t)
	c.start(2)
	ok := waitFor(60*time.Second, func() bool {
		st := c.nodes[2].Stats()
		return st.CatchUps == 1 && !st.CatchingUp
	})
	require.True(t, ok, "the restart did not finish the catch-up: %+v", c.nodes[2].Stats())
	st := c.nodes[2].Stats()
	require.Equal(t, st.CatchUpBytes, st.CatchUpDone)
	c.waitReady()
	c.logAppend("after", 20)
	c.flushAll()
	total := before + 3*20
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	lines := readLines(t, c.cfgs[2].Dir, "app.log")
	require.Len(t, lines, int(total))
	requireUnique(t, lines, "tag", "node", "k")
}
