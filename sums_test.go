package logx

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

// checkpointSums returns the rotated files dir's checkpoint lists, each
// checked against its bytes with the hash it names.
func checkpointSums(t *testing.T, dir string) []store.File {
	t.Helper()
	st, ok, err := readState(dir)
	require.NoError(t, err)
	require.True(t, ok, "%s has no checkpoint", dir)
	for _, fs := range st.Rotated {
		sum, size, err := segmentSum(t.Context(), filepath.Join(dir, fs.Name), fs, false)
		require.NoError(t, err, fs.Name)
		require.NoError(t, fs.CheckSum(), fs.Name)
		require.True(t, fs.Matches(sum, size), "%s: %d bytes %x, the checkpoint says %+v", fs.Name, size, sum, fs)
	}
	return st.Rotated
}

// awaitRotated waits until dir's checkpoint lists rotated files for which
// ok holds (what says what it waits for), and returns them, each checked
// against its bytes (checkpointSums).
func awaitRotated(t *testing.T, dir, what string, ok func([]store.File) bool) []store.File {
	t.Helper()
	require.True(t, waitFor(20*time.Second, func() bool {
		st, _, err := readState(dir)
		return err == nil && ok(st.Rotated)
	}), "%s: the checkpoint lists no %s", dir, what)
	return checkpointSums(t, dir)
}

// sumsOf says which hash each file names.
func sumsOf(files []store.File) []store.Hash {
	var out []store.Hash
	for _, fs := range files {
		h, _ := fs.Sum()
		out = append(out, h)
	}
	return out
}

// awaitChecksum waits until node i has chosen its hash in a balance round
// begun after this call, and requires it to be want.
func (c *testCluster) awaitChecksum(i int, want string) {
	c.t.Helper()
	n := c.nodes[i].node
	from := n.sumsRounds.Load()
	// The chooseSums counted as from+2 began after the one counted as
	// from+1 ended, so after this call.
	require.True(c.t, waitFor(20*time.Second, func() bool { return n.sumsRounds.Load() >= from+2 }), "no round of version asks")
	require.Equal(c.t, want, c.nodes[i].Stats().Checksum, "node %d", i+1)
}

// TestChecksums: with an older node in the cluster every node names
// sha256 checksums; once it is upgraded the files each node starts name
// BLAKE3, the active file keeping its sha256; every checksum checks
// against the bytes; a node whose Dir was wiped catches up from a manifest
// naming both; a damaged BLAKE3 file is found and repaired at start; and
// the files stay identical throughout. A node that has not heard from a
// member since it started keeps sha256, and an older node is refused as a
// new member.
func TestChecksums(t *testing.T) {
	t.Parallel() // waits more than it computes (parallelTests, logx_test.go)
	blake := store.BLAKE3
	k := 0
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.MaxSize = 16 << 10
		cfg.TrailingLogs = 8
		cfg.SnapshotThreshold = 1 << 20           // snapshots only when the test asks
		cfg.CheckpointInterval = time.Millisecond // checkpoints list the files soon
		sm.walSegmentSize = 16 << 10
		sm.faster = &blake // whatever this machine's CPU
		if k == 2 {
			sm.version = sumsFeature - 1 // an older node
		}
		k++
	})
	require.Equal(t, sumsFeature-1, c.nodes[2].Stats().Version)
	for i := range 3 {
		c.awaitChecksum(i, "sha256")
	}
	c.logAppend("mixed", 100)
	c.flushAll()
	mixed := c.waitSameSeq(300)
	for i := range 3 {
		files := awaitRotated(t, c.cfgs[i].Dir, "two rotated files", func(fs []store.File) bool { return len(fs) >= 2 })
		for _, h := range sumsOf(files) {
			require.Equal(t, store.SHA256, h, "node %d, while an older node is a member", i+1)
		}
	}
	// The older node, wiped, catches up from the others' manifests, which
	// it refuses if they name a BLAKE3 file.
	c.stop(2)
	require.NoError(t, os.RemoveAll(c.cfgs[2].Dir))
	c.logAppend("while-down", 100)
	c.snapshotAll()
	c.start(2)
	require.True(t, waitFor(30*time.Second, func() bool {
		st := c.nodes[2].Stats()
		return st.CatchUps == 1 && !st.CatchingUp
	}), "the older node did not catch up: %+v", c.nodes[2].Stats())
	c.waitReady()
	mixed = c.waitSameSeq(mixed + 200)

	// The older node is upgraded: every node goes over to BLAKE3.
	c.stop(2)
	c.seams[2].version = 0
	c.start(2)
	c.waitReady()
	for i := range 3 {
		c.awaitChecksum(i, "blake3")
	}
	c.logAppend("upgraded", 200)
	c.flushAll()
	total := c.waitSameSeq(mixed + 600)
	for i := range 3 {
		hs := sumsOf(awaitRotated(t, c.cfgs[i].Dir, "BLAKE3 file", func(fs []store.File) bool {
			return len(fs) > 0 && fs[len(fs)-1].BLAKE3 != ""
		}))
		// sha256 up to the file active at the switch, BLAKE3 after it.
		require.Equal(t, store.SHA256, hs[0], "node %d: %v", i+1, hs)
		for k := 1; k < len(hs); k++ {
			require.False(t, hs[k-1] == store.BLAKE3 && hs[k] == store.SHA256, "node %d: %v", i+1, hs)
		}
	}
	requireIdentical(t, c.dirs(), "app.log")

	// A wiped node catches up from a manifest naming both hashes.
	c.wipeAndRestart(2, 100)
	c.flushAll()
	total = c.waitSameSeq(total + 200)
	require.Equal(t, uint64(1), c.nodes[2].Stats().CatchUps)
	requireIdentical(t, c.dirs(), "app.log")
	hs := sumsOf(checkpointSums(t, c.cfgs[2].Dir))
	require.Contains(t, hs, store.SHA256)
	require.Contains(t, hs, store.BLAKE3)

	// A flipped byte in a BLAKE3 file is found at start and repaired.
	c.stop(1)
	dir := c.cfgs[1].Dir
	files := checkpointSums(t, dir)
	damaged := files[len(files)-1]
	require.NotEmpty(t, damaged.BLAKE3)
	b, err := os.ReadFile(filepath.Join(dir, damaged.Name))
	require.NoError(t, err)
	b[len(b)/2] ^= 0x20
	require.NoError(t, os.WriteFile(filepath.Join(dir, damaged.Name), b, 0o644))
	c.start(1)
	lx := c.nodes[1]
	require.True(t, waitFor(20*time.Second, func() bool { return lx.Stats().RepairedFiles == 1 }),
		"repaired %d of %d damaged", lx.Stats().RepairedFiles, lx.Stats().DamagedFiles)
	c.waitReady()
	c.flushAll()
	c.waitSameSeq(total)
	requireIdentical(t, c.dirs(), "app.log")

	// A node that has not heard from a member since its start (down
	// meanwhile) names sha256 until it does, while node 3, which heard
	// from both, goes on with BLAKE3: the same bytes, checksums of two
	// kinds. Node 3 was wiped and restarted above, so it must have heard
	// from node 2 since, or it too keeps sha256: under load its catch-up
	// can outlast the fast asks, leaving a balance round's ask to hear
	// from node 2 while it is up.
	c.awaitChecksum(2, "blake3")
	c.stop(1)
	c.stop(0)
	c.start(0)
	c.waitReady()
	mark := c.waitSameSeq(total)
	c.awaitChecksum(0, "sha256")
	c.logAppend("one-down", 150)
	c.flushAll()
	total = c.waitSameSeq(mark + 300)
	after := func(i int) []store.Hash { // of the files started after mark
		started := func(fs store.File) bool { return fs.First > mark }
		files := awaitRotated(t, c.cfgs[i].Dir, "file started after the mark", func(fs []store.File) bool {
			return slices.ContainsFunc(fs, started)
		})
		return sumsOf(slices.DeleteFunc(files, func(fs store.File) bool { return !started(fs) }))
	}
	for _, h := range after(0) {
		require.Equal(t, store.SHA256, h, "node 1, not heard from node 2 since its start")
	}
	for _, h := range after(2) {
		require.Equal(t, store.BLAKE3, h, "node 3")
	}
	requireIdentical(t, []string{c.cfgs[0].Dir, c.cfgs[2].Dir}, "app.log")
	c.start(1)
	c.waitReady()
	c.awaitChecksum(0, "blake3")
	c.flushAll()
	c.waitSameSeq(total)
	requireIdentical(t, c.dirs(), "app.log")

	// A node older than BLAKE3 checksums is refused as a member: it could
	// not check the manifests.
	c.seams[0].version = sumsFeature - 1 // addJoiner copies node 1's seams
	n := c.addJoiner()
	c.seams[0].version = 0
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = c.nodes[0].AddNode(ctx, c.cfgs[n].Addr)
	require.ErrorContains(t, err, "runs a logx without BLAKE3 checksums")
	require.Len(t, members(t, c.nodes[0]), 3)
}

// TestSumsAskBlocksNothing: a member that holds the version ask open
// without answering (the seam stands for one that accepts connections and
// never answers) delays nothing else: the node opens a stream created
// meanwhile, and chooses BLAKE3 once the answers come.
func TestSumsAskBlocksNothing(t *testing.T) {
	t.Parallel()
	blake := store.BLAKE3
	held := make(chan string, 1)
	release := make(chan struct{})
	k := 0
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		sm.faster = &blake
		if k == 0 {
			sm.sumsAsk = func(_ context.Context, addr string) {
				select {
				case held <- addr:
				default:
				}
				<-release // past the ask's deadline too: held until let go
			}
		}
		k++
	})
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	t.Cleanup(let) // before the cluster's Close, which waits for the asks
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("node 1 asked no member for its version")
	}
	require.Equal(t, "sha256", c.nodes[0].Stats().Checksum, "a member has not answered")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, c.nodes[1].CreateStream(ctx, StreamConfig{Name: "audit"}))
	require.NoError(t, c.nodes[0].node.waitStream(ctx, "audit", true), "node 1 opens the stream while its version asks hang")
	s, err := c.nodes[0].Stream("audit")
	require.NoError(t, err)
	_, err = s.Append(ctx, LevelInfo, "while the asks hang")
	require.NoError(t, err)

	let()
	c.awaitChecksum(0, "blake3")
}
