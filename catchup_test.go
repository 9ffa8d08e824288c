package logx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/blake3"
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
	return newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.MaxSize = 16 << 10
		cfg.TrailingLogs = 8
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
		sm.walSegmentSize = 16 << 10    // so that compaction drops segments
	})
}

// TestCatchUpAfterCompaction: a node that was down while the others logged
// and compacted their Raft logs past its position catches up by copying
// file tails from a peer, and ends byte-identical.
func TestCatchUpAfterCompaction(t *testing.T) {
	t.Parallel()
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
	requireLogStartsAtSnapshot(t, c.nodes[2])
}

// requireLogStartsAtSnapshot: after an install, a node's Raft log starts
// at the snapshot's last entry, a no-op with its term (logguard.go), so a
// leader walking it back stops there.
func requireLogStartsAtSnapshot(t *testing.T, lx *Logx) {
	t.Helper()
	st := lx.raft.Stats()
	first, err := lx.logs.FirstIndex()
	require.NoError(t, err)
	require.Equal(t, st["last_snapshot_index"], strconv.FormatUint(first, 10), "the log's first entry")
	var l raft.Log
	require.NoError(t, lx.logs.GetLog(first, &l))
	require.Equal(t, raft.LogNoop, l.Type)
	require.Equal(t, st["last_snapshot_term"], strconv.FormatUint(l.Term, 10))
}

// TestLogStartsAtSnapshotAfterRestart: a node that starts with a snapshot
// and an empty Raft log (an install, then a restart before any entry came:
// here its Raft log is removed) puts the snapshot's last entry, a no-op with
// its term, before the first entry it appends (logguard.go).
func TestLogStartsAtSnapshotAfterRestart(t *testing.T) {
	c := catchUpCluster(t)
	c.logAppend("before", 50)
	c.flushAll()
	c.snapshotAll()
	c.stop(2)
	require.NoError(t, os.RemoveAll(filepath.Join(c.cfgs[2].Dir, "raft")))
	c.start(2)
	c.waitReady()
	c.logAppend("after", 20)
	c.flushAll()
	total := uint64(3*50 + 3*20)
	require.Equal(t, total, c.waitSameSeq(total))
	requireLogStartsAtSnapshot(t, c.nodes[2])
	requireIdentical(t, c.dirs(), "app.log")
}

// TestCatchUpWipedDir: a node whose directory was wiped comes back empty and
// copies the whole log.
func TestCatchUpWipedDir(t *testing.T) {
	t.Parallel()
	c := catchUpCluster(t)
	c.logAppend("before", 200)
	c.snapshotAll()
	c.wipeAndRestart(2, 100)
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
	requireLogStartsAtSnapshot(t, c.nodes[2])
}

// wipeAndRestart stops node i, removes its Dir, logs n entries from each
// other node, has them compact their Raft logs, and starts node i again:
// it must catch up from a snapshot.
func (c *testCluster) wipeAndRestart(i, n int) {
	c.t.Helper()
	c.stop(i)
	require.NoError(c.t, os.RemoveAll(c.cfgs[i].Dir))
	c.logAppend("while-down", n)
	c.snapshotAll()
	c.start(i)
	c.waitReady()
}

// checkpointedFSM is a node in a new directory that applied logs and
// checkpointed: one that fell behind.
func checkpointedFSM(t *testing.T, logs []*raft.Log) (*fsm, string) {
	t.Helper()
	dir := t.TempDir()
	f := openTestFSM(t, dir)
	f.ApplyBatch(logs)
	require.NoError(t, f.persist())
	return f, dir
}

// dirFetcher serves ranges from another fsm's files, optionally failing
// after a number of bytes or corrupting the first copy.
type dirFetcher struct {
	src       *fsm
	failAfter int64 // fail once this many bytes were served (0: never)
	corrupt   bool  // flip a byte of the first range served
	served    int64
}

func (d *dirFetcher) sources() int { return 1 }

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
	src, m := sourceFSM(t, logs)

	dst, dir := checkpointedFSM(t, logs[:25])
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
	src, m := sourceFSM(t, logs)

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
	for _, n := range names { // the node's own (empty) active file at most
		b, err := os.ReadFile(filepath.Join(dir2, n))
		require.NoError(t, err)
		require.Empty(t, b, n)
	}
}

type fetcherFunc func(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error

func (f fetcherFunc) sources() int { return 1 }

func (f fetcherFunc) fetch(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
	return f(ctx, first, off, n, w, attempt)
}

// TestAsyncHasher: the hash computed on the side equals sha256 or BLAKE3 of
// the bytes, whatever the write sizes.
func TestAsyncHasher(t *testing.T) {
	data := make([]byte, 3*hashBufSize+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	s, b := sha256.Sum256(data), blake3.Sum256(data)
	for _, c := range []struct {
		kind store.Hash
		want []byte
	}{{store.SHA256, s[:]}, {store.BLAKE3, b[:]}} {
		for _, step := range []int{1, 4096, hashBufSize, hashBufSize + 1, len(data)} {
			h := newAsyncHasher(c.kind)
			for off := 0; off < len(data); off += step {
				n, err := h.Write(data[off:min(off+step, len(data))])
				require.NoError(t, err)
				require.Equal(t, min(step, len(data)-off), n)
			}
			require.Equal(t, c.want, h.sum(), "%v, step %d", c.kind, step)
		}
	}
	require.Equal(t, sha256.New().Sum(nil), newAsyncHasher(store.SHA256).sum(), "no bytes")
	require.Equal(t, blake3.New().Sum(nil), newAsyncHasher(store.BLAKE3).sum(), "no bytes")
}

// TestManifestNamesArePaths: a snapshot whose file names are not the ones
// their numbers give (a path out of Dir, another stem) is refused before
// anything is fetched or renamed, and nothing is written outside Dir. A
// checkpoint with such a name makes New fail with ErrCorrupt.
func TestManifestNamesArePaths(t *testing.T) {
	logs := testLogs(40, 7)
	src, m := sourceFSM(t, logs)
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
	require.NoError(t, writeState(dir, &st, nil))
	_, err = newFSM(fsmConfig{dir: dir, file: "app.log", policy: filePolicy{rotation: store.Rotation{MaxSize: 2048}}, format: FormatText, stateInterval: -1, logf: t.Logf})
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
	c.seams[2].fetchHook = func(ctx context.Context) error {
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
	c.seams[2].fetchHook = nil
	st, _, err := readState(c.cfgs[2].Dir)
	require.NoError(t, err)
	require.True(t, st.CatchingUp, "the checkpoint says a catch-up is under way")
	return c, 3*100 + 2*300
}

// TestCloseDuringCatchUp: Close stops a catch-up whose fetch waits for a
// peer, within CloseTimeout; the restart finishes the catch-up: identical
// files, every entry once.
func TestCloseDuringCatchUp(t *testing.T) {
	t.Parallel()
	c, before := interruptedCatchUp(t)
	c.start(2)
	ok := waitFor(60*time.Second, func() bool {
		st := c.nodes[2].Stats()
		return st.CatchUps == 1 && !st.CatchingUp
	})
	require.True(t, ok, "the restart did not finish the catch-up: %+v", c.nodes[2].Stats())
	st := c.nodes[2].Stats()
	require.Empty(t, st.CatchUpError)
	require.Equal(t, st.CatchUpBytes, st.CatchUpDone)
	total, got, lines := c.logAfterCatchUp(before)
	require.Equal(t, total, got)
	require.Len(t, lines, int(total))
}

// logAfterCatchUp has every node of a cluster whose third node finished a
// catch-up log 20 more entries, waits until all hold them, checks the
// files are identical and no entry is there twice, and returns the
// entries expected (before and the new ones), the last sequence number
// and the third node's lines.
func (c *testCluster) logAfterCatchUp(before uint64) (total, got uint64, lines [][]byte) {
	c.t.Helper()
	c.waitReady()
	c.logAppend("after", 20)
	c.flushAll()
	total = before + 3*20
	got = c.waitSameSeq(total)
	requireIdentical(c.t, c.dirs(), "app.log")
	lines = readLines(c.t, c.cfgs[2].Dir, "app.log")
	requireUnique(c.t, lines, "tag", "node", "k")
	return total, got, lines
}

// TestCatchUpColdStart: a node with an interrupted catch-up starts while
// every peer is down. New returns; the node says it is catching up and
// why it cannot, is not ready and commits nothing. Once the peers start,
// while its copy is still under way (held by fetchHook), it is not ready
// even though a leader is known. Then it finishes the catch-up and ends
// identical to its peers.
func TestCatchUpColdStart(t *testing.T) {
	t.Parallel()
	c, before := interruptedCatchUp(t)
	c.stop(0)
	c.stop(1)
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	c.seams[2].fetchHook = func(ctx context.Context) error {
		select {
		case held <- struct{}{}:
		default:
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.start(2) // New does not wait for the peers
	lx := c.nodes[2]
	require.True(t, lx.Stats().CatchingUp)
	require.True(t, waitFor(30*time.Second, func() bool { return lx.Stats().CatchUpError != "" }))
	st := lx.Stats()
	require.True(t, st.CatchingUp)
	t.Logf("CatchUpError: %s", st.CatchUpError)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	require.Error(t, lx.WaitReady(ctx))
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := lx.Append(ctx, LevelInfo, "catch-up entry", "tag", "probe")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The peers start; the copy reaches one and is held there.
	c.start(0)
	c.start(1)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the background catch-up did not reach a peer")
	}
	require.True(t, waitFor(30*time.Second, func() bool {
		for _, n := range c.nodes[:2] {
			if n.raft.State() == raft.Leader {
				return lx.raft.Leader() == raft.ServerAddress(n.cfg.Addr)
			}
		}
		return false
	}), "no leader among the peers")
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	require.Error(t, lx.WaitReady(ctx), "a leader is known but the catch-up is not done")
	cancel()

	// The copy goes on; the node is ready once it is done.
	close(release)
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	require.NoError(t, lx.WaitReady(ctx))
	cancel()
	st = lx.Stats()
	require.False(t, st.CatchingUp)
	require.Equal(t, uint64(1), st.CatchUps)
	require.Empty(t, st.CatchUpError)
	require.Equal(t, st.CatchUpBytes, st.CatchUpDone)

	total, got, lines := c.logAfterCatchUp(before)
	// The probe's outcome was unknown: it is in the log once or not at all.
	probes := 0
	for _, l := range lines {
		if bytes.Contains(l, []byte("tag=probe")) {
			probes++
		}
	}
	require.Equal(t, total+uint64(probes), got)
	require.LessOrEqual(t, probes, 1)

	// What a background catch-up tells the node while it runs (checked by
	// TestCatchUpPendingRetry) makes a leader hand the leadership over.
	var leader *Logx
	for _, n := range c.nodes {
		if n.raft.State() == raft.Leader {
			leader = n
		}
	}
	require.NotNil(t, leader)
	leader.fsm.onBlocked()
	require.True(t, waitFor(30*time.Second, func() bool {
		l := lx.raft.Leader()
		return l != "" && l != raft.ServerAddress(leader.cfg.Addr)
	}), "the leader did not hand over")
}

// TestCatchUpPendingRetry: a catch-up that New leaves to the background
// retries with a growing pause until the peers answer (here: no answer,
// then copies that do not match the snapshot, then good ones). Meanwhile
// Stats says why, Snapshot fails at once and ApplyBatch waits; then the
// node applies on, with the source's files.
func TestCatchUpPendingRetry(t *testing.T) {
	t.Parallel()
	logs := testLogs(80, 7)
	src := openTestFSM(t, t.TempDir())
	src.ApplyBatch(logs[:60])
	m := manifestOf(t, src)
	defer src.close()
	good := &dirFetcher{src: src}

	var (
		mu     sync.Mutex
		phase  = "down"
		downAt []time.Time
	)
	setPhase := func(p string) { mu.Lock(); phase = p; mu.Unlock() }
	blocked := make(chan struct{}, 1)
	release := make(chan struct{})
	dir := t.TempDir()
	dst := openTestFSM(t, dir)
	dst.ApplyBatch(logs[:25])
	var blockedCalls atomic.Int32
	dst.onBlocked = func() { blockedCalls.Add(1) }
	dst.fetcher = fetcherFunc(func(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
		mu.Lock()
		p := phase
		if p == "down" {
			downAt = append(downAt, time.Now())
		}
		mu.Unlock()
		switch p {
		case "down":
			return errors.New("no peer answers")
		case "corrupt":
			_, err := w.Write(bytes.Repeat([]byte("x"), int(n)))
			return err
		case "block":
			select {
			case blocked <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return good.fetch(ctx, first, off, n, w, attempt)
	})
	dst.bg.starting.Store(true) // as in New
	require.NoError(t, restoreFrom(t, dst, m), "at start-up the catch-up goes on in the background")
	dst.bg.starting.Store(false)
	require.True(t, dst.progress.running.Load())

	// No peer answers: retries, each pause at least twice the last.
	require.True(t, waitFor(10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(downAt) >= 3 }))
	mu.Lock()
	require.GreaterOrEqual(t, downAt[1].Sub(downAt[0]), bgPauseMin)
	require.GreaterOrEqual(t, downAt[2].Sub(downAt[1]), 2*bgPauseMin)
	mu.Unlock()
	require.Contains(t, dst.catchUpErr(), "no peer answers")
	require.True(t, dst.progress.running.Load())
	require.Positive(t, blockedCalls.Load(), "a leader would be told to hand over")
	_, err := dst.Snapshot()
	require.ErrorContains(t, err, "catch-up")

	// Copies that do not match the snapshot: reported, and retried.
	setPhase("corrupt")
	require.True(t, waitFor(10*time.Second, func() bool {
		return strings.Contains(dst.catchUpErr(), "does not match the snapshot's checksum after a full copy")
	}), dst.catchUpErr())

	// The peers answer; an apply meanwhile waits for the catch-up.
	setPhase("block")
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the catch-up was not retried")
	}
	applied := make(chan []any, 1)
	go func() { applied <- dst.ApplyBatch(logs[60:]) }()
	require.True(t, waitFor(10*time.Second, dst.bg.applyWaiting.Load), "ApplyBatch did not wait")
	select {
	case <-applied:
		t.Fatal("ApplyBatch applied before the catch-up finished")
	default:
	}
	close(release)
	var res []any
	select {
	case res = <-applied:
	case <-time.After(30 * time.Second):
		t.Fatal("ApplyBatch did not resume")
	}
	for i, r := range res {
		require.NoError(t, r.(applyResult).err, "entry %d", i)
	}
	require.False(t, dst.progress.running.Load())
	require.Empty(t, dst.catchUpErr())
	require.Equal(t, uint64(1), dst.catchUps.Load())
	require.NoError(t, dst.Err())
	src.ApplyBatch(logs[60:])
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))
	st, _, err := readState(dir)
	require.NoError(t, err)
	require.False(t, st.CatchingUp)
	require.Equal(t, logs[79].Index, st.Index)
}

// TestCatchUpPendingSuperseded: a snapshot from the leader newer than the
// one a background catch-up works on cancels it (its fetch sees its
// context end), waits for it, and catches up to the newer one itself.
func TestCatchUpPendingSuperseded(t *testing.T) {
	logs := testLogs(80, 7)
	src := openTestFSM(t, t.TempDir())
	src.ApplyBatch(logs[:40])
	m1 := manifestOf(t, src)
	src.ApplyBatch(logs[40:])
	m2 := manifestOf(t, src)
	defer src.close()
	good := &dirFetcher{src: src}

	var hang atomic.Bool
	hang.Store(true)
	blocked := make(chan struct{}, 1)
	cancelled := make(chan error, 1)
	dir := t.TempDir()
	dst := openTestFSM(t, dir)
	dst.fetcher = fetcherFunc(func(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
		if hang.Load() {
			select {
			case blocked <- struct{}{}:
			default:
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Second): // fail rather than hang
				return errors.New("test: fetch held for 20 s")
			}
			cancelled <- ctx.Err()
			return ctx.Err()
		}
		return good.fetch(ctx, first, off, n, w, attempt)
	})
	dst.bg.starting.Store(true)
	require.NoError(t, restoreFrom(t, dst, m1))
	dst.bg.starting.Store(false)
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the background catch-up did not fetch")
	}
	hang.Store(false)
	require.NoError(t, restoreFrom(t, dst, m2))
	select {
	case err := <-cancelled:
		require.ErrorIs(t, err, context.Canceled)
	default:
		t.Fatal("the pending catch-up's fetch was not cancelled")
	}
	require.Nil(t, dst.bg.done, "the background goroutine is gone")
	require.False(t, dst.progress.running.Load())
	require.Equal(t, uint64(1), dst.catchUps.Load())
	require.Equal(t, m2.Index, dst.st.Index)
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))
	st, _, err := readState(dir)
	require.NoError(t, err)
	require.False(t, st.CatchingUp)
	require.Equal(t, m2.Index, st.Index)
}

// TestCopyContext: hashing kept bytes stops between chunks once the
// context ends.
func TestCopyContext(t *testing.T) {
	src := bytes.Repeat([]byte("k"), 5<<20)
	var dst bytes.Buffer
	n, err := copyContext(context.Background(), &dst, bytes.NewReader(src))
	require.NoError(t, err)
	require.Equal(t, int64(len(src)), n)
	require.Equal(t, src, dst.Bytes())

	ctx, cancel := context.WithCancel(context.Background())
	dst.Reset()
	w := writerFunc(func(p []byte) (int, error) {
		cancel() // Close begins while the first chunk is hashed
		return dst.Write(p)
	})
	n, err = copyContext(ctx, w, bytes.NewReader(src))
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, n, int64(len(src)))
	require.Equal(t, int64(dst.Len()), n)
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestCatchUpKeepsRecorded: a catch-up keeps the rotated files this node's
// checkpoint records with the manifest's checksum without reading them
// again (the check of files at rest finds damage: scrub.go); a recorded
// file that is missing is copied, the active file is read and checked, and
// the files end identical to the source's.
func TestCatchUpKeepsRecorded(t *testing.T) {
	logs := testLogs(80, 7)
	src, m := sourceFSM(t, logs)

	dst, dir := checkpointedFSM(t, logs[:40])
	rotated := slices.Clone(dst.st.Rotated)
	require.Greater(t, len(rotated), 2)
	require.NoError(t, os.Remove(filepath.Join(dir, rotated[1].Name)))
	active, err := os.Stat(filepath.Join(dir, "app.log"))
	require.NoError(t, err)
	df := &dirFetcher{src: src}
	dst.fetcher = df
	require.NoError(t, restoreFrom(t, dst, m))
	reread := dst.progress.reread.Load()
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))
	require.LessOrEqual(t, reread, active.Size(), "rotated files recorded with the manifest's checksum were read again")
	require.Positive(t, reread, "the active file was not checked")
	require.GreaterOrEqual(t, df.served, rotated[1].Size, "the missing file was not copied")

	// A file the checks of the files at rest have not cleared (found
	// damaged, repair failed) is read again, and copied again.
	dst2, dir2 := checkpointedFSM(t, logs[:40])
	bad := dst2.st.Rotated[2]
	path := filepath.Join(dir2, bad.Name)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/2] ^= 0xff
	require.NoError(t, os.WriteFile(path, b, 0o644))
	var clearedBad bool
	dst2.unchecked = func() fileChecks {
		is := func(first uint64) bool { return first == bad.First }
		return fileChecks{unchecked: is, damaged: is, cleared: func(first uint64) { clearedBad = clearedBad || first == bad.First }}
	}
	dst2.fetcher = &dirFetcher{src: src}
	require.NoError(t, restoreFrom(t, dst2, m))
	require.GreaterOrEqual(t, dst2.progress.reread.Load(), bad.Size, "the damaged file was kept unread")
	require.True(t, clearedBad, "the checked file was not cleared")
	require.NoError(t, dst2.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir2, "app.log"))
}

// TestCatchUpKeepsVerified: a node whose files name another hash than the
// manifest's (sha256 here, BLAKE3 there: sums.go) reads them once; an
// attempt that fails and is made again keeps those it checked.
func TestCatchUpKeepsVerified(t *testing.T) {
	logs := testLogs(80, 7)
	src := openTestFSM(t, t.TempDir())
	src.setNextSum(store.BLAKE3)
	src.ApplyBatch(logs)
	m := manifestOf(t, src)
	t.Cleanup(func() { src.close() })
	require.NotEmpty(t, m.Files[0].BLAKE3)

	dst, dir := checkpointedFSM(t, logs[:40])
	var recorded int64
	for _, r := range dst.st.Rotated {
		require.NotEmpty(t, r.SHA256)
		recorded += r.Size
	}
	df := &dirFetcher{src: src, failAfter: 3000}
	dst.fetcher = df
	// Every file unchecked by the checks at rest (a start's check not
	// ended): what an attempt checked itself is still kept by the next.
	damaged := map[uint64]bool{}
	dst.unchecked = func() fileChecks {
		return fileChecks{unchecked: func(uint64) bool { return true }, damaged: func(first uint64) bool { return damaged[first] }, cleared: func(uint64) {}}
	}
	require.Error(t, restoreFrom(t, dst, m))
	require.GreaterOrEqual(t, dst.progress.reread.Load(), recorded, "the first attempt reads every file once")
	// A file found damaged since it was checked is read again, though.
	require.NotEmpty(t, dst.verified)
	var bad store.File
	for first, v := range dst.verified {
		damaged[first], bad = true, v
		break
	}
	require.NoError(t, restoreFrom(t, dst, m))
	require.Less(t, dst.progress.reread.Load(), recorded/2, "the second attempt read the checked files again")
	require.GreaterOrEqual(t, dst.progress.reread.Load(), bad.Size, "a file found damaged since was kept")
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))
}

// peersFetcher stands for n peers, the k-th of which a fetch of attempt a
// starts at (a mod n), as Stream.fetch does; bad says which start gives
// damaged bytes (without an error, as a peer whose copy rotted).
type peersFetcher struct {
	dirFetcher
	n   int
	bad func(attempt int) bool
}

func (p *peersFetcher) sources() int { return p.n }

func (p *peersFetcher) fetch(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
	p.corrupt = p.bad(attempt)
	return p.dirFetcher.fetch(ctx, first, off, n, w, 0)
}

// TestCatchUpAsksEveryPeer: after a mismatch, the whole copies go to
// each peer in turn: one peer whose copy is damaged (asked first on a
// retry, and used to finish the first range) does not fail the catch-up
// while another holds the right bytes; when every peer's copy is damaged,
// it fails with ErrCorrupt after one whole copy from each.
func TestCatchUpAsksEveryPeer(t *testing.T) {
	logs := testLogs(40, 7)
	src, m := sourceFSM(t, logs)

	dir := t.TempDir()
	dst := openTestFSM(t, dir)
	pf := &peersFetcher{dirFetcher: dirFetcher{src: src}, n: 2, bad: func(a int) bool { return a%2 == 1 || a == 0 }}
	dst.fetcher = pf
	require.NoError(t, restoreFrom(t, dst, m))
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))

	dir2 := t.TempDir()
	dst2 := openTestFSM(t, dir2)
	var tries int
	pf2 := &peersFetcher{dirFetcher: dirFetcher{src: src}, n: 3, bad: func(a int) bool { tries = max(tries, a+1); return true }}
	dst2.fetcher = pf2
	require.ErrorIs(t, restoreFrom(t, dst2, m), ErrCorrupt)
	require.Equal(t, 4, tries, "one partial copy and a whole one from each of 3 peers")
}

// TestCatchUpFinishedByEntries: a catch-up that failed inside the install
// of the leader's snapshot (every peer unreachable), followed by entries
// instead of the snapshot (a later leader whose log still holds them), is
// finished from the snapshot Raft stored, once the peers answer again;
// the entries up to its index are skipped and the later ones applied, and
// the files end identical to the source's. Before, the node stopped
// applying until it was restarted.
func TestCatchUpFinishedByEntries(t *testing.T) {
	logs := testLogs(90, 7)
	src := openTestFSM(t, t.TempDir())
	src.ApplyBatch(logs[:80])
	m := manifestOf(t, src)
	src.ApplyBatch(logs[80:])
	t.Cleanup(func() { src.close() })

	dst, dir := checkpointedFSM(t, logs[:25])
	dst.retryPause = time.Millisecond
	down := true
	dst.fetcher = fetcherFunc(func(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
		if down {
			return errors.New("no peer answers")
		}
		return (&dirFetcher{src: src}).fetch(ctx, first, off, n, w, attempt)
	})
	require.Error(t, restoreFrom(t, dst, m))
	require.True(t, dst.st.CatchingUp)
	dst.storedManifest = func() (*manifest, error) { return m, nil } // what Raft stored
	var blocked atomic.Int32
	dst.onBlocked = func() { blocked.Add(1) }
	tries := 0
	prev := dst.fetcher
	dst.fetcher = fetcherFunc(func(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
		// Meanwhile the node is held up (a leader hands over) and says
		// it is catching up, between tries too.
		require.True(t, dst.applyBlocked())
		require.True(t, dst.catchingUp())
		if tries++; tries == 3 {
			down = false // the peers answer from the third try on
		}
		return prev.fetch(ctx, first, off, n, w, attempt)
	})
	res := dst.ApplyBatch(logs[25:])
	for i, r := range res {
		if r != nil {
			if ar, ok := r.(applyResult); ok && ar.err != nil && !errors.Is(ar.err, errReplayed) {
				t.Fatalf("entry %d: %v", logs[25+i].Index, ar.err)
			}
		}
	}
	require.NoError(t, dst.Err())
	require.Positive(t, blocked.Load(), "a leader would not have handed over")
	require.False(t, dst.applyBlocked())
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))

	// Peers that never answer: it gives up after finishTries attempts
	// and stops applying, as before, instead of holding Raft's apply for
	// good (a newer snapshot could not be installed meanwhile).
	dst2, _ := checkpointedFSM(t, logs[:25])
	dst2.retryPause = time.Millisecond
	dst2.fetcher = fetcherFunc(func(context.Context, uint64, int64, int64, io.Writer, int) error {
		return errors.New("no peer answers")
	})
	require.Error(t, restoreFrom(t, dst2, m))
	dst2.storedManifest = func() (*manifest, error) { return m, nil }
	res = dst2.ApplyBatch(logs[25:])
	require.ErrorIs(t, res[0].(applyResult).err, ErrCorrupt)
	require.ErrorContains(t, res[0].(applyResult).err, "restart the node to finish it")
	require.False(t, dst2.applyBlocked())
	require.NoError(t, dst2.close())

	// Close during a try: ErrClosed, not a give-up, and every later batch
	// fails at once without reading the stored snapshot again.
	dst3, _ := checkpointedFSM(t, logs[:25])
	dst3.retryPause = time.Hour // only a Close ends the pause
	dst3.fetcher = fetcherFunc(func(context.Context, uint64, int64, int64, io.Writer, int) error {
		return errors.New("no peer answers")
	})
	require.Error(t, restoreFrom(t, dst3, m))
	reads := 0
	dst3.storedManifest = func() (*manifest, error) { reads++; return m, nil }
	dst3.fetcher = fetcherFunc(func(context.Context, uint64, int64, int64, io.Writer, int) error {
		dst3.halt() // Close
		return errors.New("no peer answers")
	})
	res = dst3.ApplyBatch(logs[25:])
	require.ErrorIs(t, res[0].(applyResult).err, ErrClosed)
	require.NotErrorIs(t, res[0].(applyResult).err, ErrCorrupt)
	res = dst3.ApplyBatch(logs[25:])
	require.ErrorIs(t, res[0].(applyResult).err, ErrClosed)
	require.Equal(t, 1, reads, "a later batch read the stored snapshot again")
	require.NoError(t, dst3.Err())
	require.NoError(t, dst3.close())
}

// TestCatchUpRetentionFromLog: a node whose Config sets a retention that a
// snapshot's settings, taken before a SetRetention, do not hold still
// catches up from it (the retention command later in the log settles it),
// as it applies those settings from the log: before, it stopped applying
// for good, saying the cluster used the snapshot's value. Other settings
// still conflict.
func TestCatchUpRetentionFromLog(t *testing.T) {
	logs := testLogs(40, 7)
	src, m := sourceFSM(t, logs)
	m.Settings = &clusterSettings{File: "app.log", MaxSize: 2048, Format: FormatText, DedupWindow: time.Hour}
	dir := t.TempDir()
	dst := openTestFSM(t, dir)
	dst.want = clusterSettings{MaxFiles: 5, MaxAge: time.Hour, Format: FormatText}
	dst.fetcher = &dirFetcher{src: src}
	require.NoError(t, restoreFrom(t, dst, m))
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))

	dst2 := openTestFSM(t, t.TempDir())
	dst2.want = clusterSettings{MaxSize: 4096, Format: FormatText}
	dst2.fetcher = &dirFetcher{src: src}
	var ce *ConfigError
	require.ErrorAs(t, restoreFrom(t, dst2, m), &ce)
	require.Equal(t, "MaxSize", ce.Field)
}

// TestCatchUpReaderSeesCheckedBytes: a Reader open on a node's active file
// while a catch-up copies the rest of it from a peer sees only bytes the
// manifest's checksum has checked. The copy is assembled in a new file
// (the Reader goes on in it once it replaces the one it holds); before, it
// was written into the file the Reader held, so a first copy that failed
// its check (a damaged or lying peer) was read as lines, and the Reader's
// place was lost when the file was cut back to copy it again.
func TestCatchUpReaderSeesCheckedBytes(t *testing.T) {
	// One line over the catch-up's 1 MiB write buffer, in the file the
	// Reader holds (one file: MaxSize 8 MiB): the fetched bytes reach the
	// file as they come, before the check.
	logs := testLogsMsg(40, 7, func(i, k int) string {
		if i == 30 && k == 0 {
			return strings.Repeat("x", 1<<20+1000)
		}
		return fmt.Sprintf("log %d entry %d", i, k)
	})
	p := filePolicy{rotation: store.Rotation{MaxSize: 8 << 20}}
	src := openPolicyFSM(t, t.TempDir(), p)
	src.ApplyBatch(logs)
	m := manifestOf(t, src)
	defer src.close()
	dir := t.TempDir()
	dst := openPolicyFSM(t, dir, p)
	dst.ApplyBatch(logs[:25])
	require.NoError(t, dst.persist())
	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	var got []Line
	read := func() {
		for {
			l, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			require.NoError(t, err)
			l.Text = append([]byte(nil), l.Text...)
			got = append(got, l)
		}
	}
	read()
	require.Len(t, got, 25*7)
	polls := 0
	inner := &dirFetcher{src: src, corrupt: true}
	dst.fetcher = fetcherFunc(func(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
		polls++
		err := inner.fetch(ctx, first, off, n, w, attempt)
		read() // what a tail -f sees meanwhile
		return err
	})
	require.NoError(t, restoreFrom(t, dst, m))
	require.Greater(t, polls, 1, "no second copy: the first did not fail its check")
	read()
	require.NoError(t, dst.close())
	fresh, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	want := readAll(t, fresh)
	require.NoError(t, fresh.Close())
	require.Equal(t, len(want), len(got))
	for i, l := range got {
		require.True(t, bytes.Equal(want[i].Text, l.Text), "line %d is not the log's", i+1)
	}
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))
}

// TestCatchUpListsEachFileOnce: while a catch-up copies the files after
// the one the node's active file started, that file is listed once: the
// checked copy under its rotated name, not also the node's own active file
// (Grep read its lines twice, and SeekTime's search took an unsorted
// listing).
func TestCatchUpListsEachFileOnce(t *testing.T) {
	logs := testLogs(40, 7)
	src, m := sourceFSM(t, logs)
	dst, dir := checkpointedFSM(t, logs[:25])
	activeFirst := dst.st.ActiveFirst
	checked := 0
	inner := &dirFetcher{src: src}
	dst.fetcher = fetcherFunc(func(ctx context.Context, first uint64, off, n int64, w io.Writer, attempt int) error {
		if first > activeFirst {
			files, err := listLogFiles(dir, "app.log")
			require.NoError(t, err)
			for i := 1; i < len(files); i++ {
				require.Less(t, files[i-1].first, files[i].first, "listed twice or out of order: %+v", files)
			}
			checked++
		}
		return inner.fetch(ctx, first, off, n, w, attempt)
	})
	require.NoError(t, restoreFrom(t, dst, m))
	require.Positive(t, checked)
	require.NoError(t, dst.close())
	require.Equal(t, fileHashes(t, src.dir, "app.log"), fileHashes(t, dir, "app.log"))
}

// TestFetchSlowLink: a fetch over a link that brings a chunk slower than
// the I/O timeout, but at 32 KiB/s or more, completes: a reply has the
// timeout plus its bytes at 32 KiB/s, on both sides. The whole chunk had
// the timeout, so over a link slower than 8 MiB in 30 s every chunk
// failed, from every peer, and a node never caught up. The link here:
// 64 KiB/s, with a 200 ms timeout.
// TestFetchTrickleGivesUp: a peer that answers a fetch with a byte now
// and then, each well within the I/O timeout, is given up on once the
// reply's time (the timeout plus its bytes at 32 KiB/s) has passed, and
// the fetch goes on to the next peer. Each read had the timeout from its
// start, so such a peer held a fetch for good. A request's length, which
// the serving side checks after setting its deadline, bounds that
// deadline no further than a chunk's.
func TestFetchTrickleGivesUp(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 1, func(_ *Config, sm *seams) { sm.fetchIOTimeout = 200 * time.Millisecond })
	lx := c.nodes[0]
	stop := make(chan struct{})
	defer close(stop)
	addr := fakePeer(t, "127.0.0.1:0", func(conn net.Conn) {
		var pre [1]byte
		if _, err := io.ReadFull(conn, pre[:]); err != nil {
			return
		}
		req, err := wire.ReadFetchRequest(conn)
		if err != nil {
			return
		}
		hdr := wire.FetchOKHeader(req.N)
		if _, err := conn.Write(hdr[:]); err != nil {
			return
		}
		for {
			if _, err := conn.Write([]byte{'x'}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 16 << 10 // half a second at 32 KiB/s
	began := time.Now()
	err := lx.fetchFrom(ctx, addr, 1, 0, n, io.Discard)
	require.Error(t, err)
	require.NoError(t, ctx.Err(), "the reply's deadline ended it, not the test's context")
	took := time.Since(began)
	require.GreaterOrEqual(t, took, lx.replyTimeout(n), "given up before its time")
	require.Less(t, took, lx.replyTimeout(n)+5*time.Second)

	require.Equal(t, lx.replyTimeout(fetchChunk), lx.replyTimeout(math.MaxInt64))
	require.Equal(t, lx.ioTimeout(), lx.replyTimeout(-1))
}

// fullDisk is a writer that takes room bytes, then fails with ENOSPC.
type fullDisk struct{ room int }

func (d *fullDisk) Write(p []byte) (int, error) {
	if len(p) <= d.room {
		d.room -= len(p)
		return len(p), nil
	}
	n := d.room
	d.room = 0
	return n, syscall.ENOSPC
}

// TestFetchLocalWriteError: a fetch whose bytes cannot be written here (a
// full disk) stops at the first peer with this node's error, and a
// catch-up does not count it as the peers' failure. It was taken for the
// peer's: every other peer was asked for the same bytes in turn, and a
// catch-up gave up after finishTries rounds of that with "the files are
// incomplete".
func TestFetchLocalWriteError(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, nil)
	c.logAppend("to fetch", 200)
	c.waitSameSeq(600)
	c.flushAll()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lx := c.nodes[0]
	require.Len(t, lx.fetchPeers(), 2)
	err := lx.fetch(ctx, 1, 0, 16<<10, &fullDisk{room: 1000}, 0)
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.True(t, isLocalWrite(err))
	require.Equal(t, 1, strings.Count(err.Error(), "127.0.0.1:"), "another peer was asked: %v", err)
	require.Contains(t, err.Error(), "on this node")
}

func TestFetchSlowLink(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 2, func(_ *Config, sm *seams) { sm.fetchIOTimeout = 200 * time.Millisecond })
	c.logAppend("slow link", 600)
	c.flushAll()
	c.waitSameSeq(1200)
	want, err := os.ReadFile(filepath.Join(c.cfgs[1].Dir, "app.log"))
	require.NoError(t, err)
	require.Greater(t, len(want), 128<<10, "too little to take several timeouts")
	slow := slowProxy(t, c.cfgs[1].Addr, 64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got bytes.Buffer
	began := time.Now()
	require.NoError(t, c.nodes[0].fetchFrom(ctx, slow, 1, 0, int64(len(want)), &got))
	require.Equal(t, want, got.Bytes())
	t.Logf("%d bytes in %v", len(want), time.Since(began).Round(time.Millisecond))
	require.Greater(t, time.Since(began), 200*time.Millisecond, "the link was not slow")

	// The serving side alone, with no kernel buffers between (a pipe): its
	// reply waits for the slow reader.
	here, there := net.Pipe()
	defer here.Close()
	go func() {
		c.nodes[1].serveFetch(there)
		there.Close() // as the mux does
	}()
	req := wire.FetchRequest{First: 1, Off: 0, N: int64(len(want))}.Encode()
	_, err = here.Write(req[:])
	require.NoError(t, err)
	got.Reset()
	require.NoError(t, wire.ReadFetchReply(slowReader{here, 64 << 10}, int64(len(want)), &got, make([]byte, 64<<10)), "the reply was cut off")
	require.Equal(t, want, got.Bytes())
}

// slowReader reads rate bytes a second from r, in twentieths of that.
type slowReader struct {
	r    io.Reader
	rate int
}

func (s slowReader) Read(b []byte) (int, error) {
	time.Sleep(50 * time.Millisecond)
	return s.r.Read(b[:min(len(b), s.rate/20)])
}

// slowProxy forwards connections to target, the answers at rate bytes a
// second (in twentieths of a second's worth), and returns its address.
func slowProxy(t *testing.T, target string, rate int) string {
	return fakePeer(t, "127.0.0.1:0", func(in net.Conn) {
		out, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer out.Close()
		// A small window, so that the serving side's writes wait for the
		// link rather than end in the kernel's buffers.
		_ = out.(*net.TCPConn).SetReadBuffer(64 << 10)
		go func() { _, _ = io.Copy(out, in) }()
		buf := make([]byte, rate/20)
		for {
			n, err := out.Read(buf)
			if n > 0 {
				if _, werr := in.Write(buf[:n]); werr != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				return
			}
		}
	})
}
