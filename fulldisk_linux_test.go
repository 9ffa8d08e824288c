package logx

import (
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/stretchr/testify/require"
)

var fullDiskSeed = flag.Int64("fulldisk.seed", 0, "TestRealFullDisk: the seed of where the disk fills (0: a new one)")

// TestRealFullDisk: one node's Dir is on a real file system that fills up
// (a small tmpfs; needs root) while every node logs, first while that node
// follows, then while it leads. The disk fills wherever the node happens
// to write next: its log files, raft-wal's segments (a new one, at a
// rotation, included). The node must not crash and the others must
// go on; once there is room again it resumes by itself and every node ends
// with the same files, every entry once.
//
// Where the disk fills is searched: the room left before each round is
// random (a seed the test logs; -fulldisk.seed replays one).
func TestRealFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, "96m")
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.MaxSize = 256 << 10 // rotations and checkpoints while it fills
		if cfg.NodeID == "n3" {
			cfg.Dir = filepath.Join(mnt, "n3")
			sm.walSegmentSize = 1 << 20 // new segments while it fills
		}
	})
	seed := *fullDiskSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("-fulldisk.seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	const victim = 2
	total, next := 0, 0
	// logRound logs n entries from every node, async; it fails the test
	// if a node's Info blocks for a minute (its queue full and not
	// draining: the node's own entries waiting for its disk).
	logRound := func(tag string, n int) {
		done := make(chan struct{})
		nodes := slices.Clone(c.nodes) // the test's cleanup clears c.nodes
		go func() {
			defer close(done)
			for range n {
				for i, lx := range nodes {
					lx.Info("full disk entry", "tag", tag, "node", i, "k", next, "pad", strings.Repeat("p", 100))
				}
				next++
			}
		}()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%s: logging blocked: %+v", tag, c.nodes[victim].Stats())
		}
		total += 3 * n
	}
	for _, role := range []string{"follower", "leader"} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c.moveLeader(victim, role == "leader")
		// Leave 64 KiB to 4 MiB: up to about 20,000 of these lines on
		// the victim, with its Raft log and checkpoints.
		free, unfill := fillDisk(t, mnt, 64<<10+rng.Int64N(4<<20))

		// Log until the disk is full, then as much again.
		for round := 0; free() > 0 && round < 60; round++ {
			logRound(role, 500)
			require.NoError(t, c.nodes[0].Flush(ctx))
		}
		require.Zero(t, free(), "the disk did not fill")
		// Enough for raft-wal to need new 1 MiB segments meanwhile.
		for range 10 {
			logRound(role+"-full", 2000)
		}
		for i := range 2 {
			require.NoError(t, c.nodes[i].Flush(ctx), "n%d while n3's disk is full", i+1)
		}
		t.Logf("%s: n3 full; its write error %q", role, c.nodes[victim].Stats().WriteError)

		// Room again: the victim resumes by itself.
		unfill()
		require.True(t, waitFor(30*time.Second, func() bool { return c.nodes[victim].Stats().WriteError == "" }), "n3 resumes: %+v", c.nodes[victim].Stats())
		c.flushAll()
		require.Equal(t, uint64(total), c.waitSameSeq(uint64(total)), role)
	}
	requireIdentical(t, c.dirs(), "app.log")
	lines := readLines(t, c.dirs()[0], "app.log")
	require.Len(t, lines, total)
	requireUnique(t, lines, "tag", "node", "k")
}

// mountTmpfs mounts a tmpfs of size (as mount(8) takes it) on a new
// directory, unmounted when the test ends; without root the test skips.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).Run(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): needs root", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	return mnt
}

// fillDisk leaves room bytes free on the file system of dir, with a file
// that the returned func removes.
func fillDisk(t *testing.T, dir string, room int64) (free func() int64, unfill func()) {
	t.Helper()
	free = func() int64 {
		var st syscall.Statfs_t
		require.NoError(t, syscall.Statfs(dir, &st))
		return int64(st.Bavail) * int64(st.Bsize)
	}
	path := filepath.Join(dir, "filler")
	size := free() - room
	require.Positive(t, size)
	require.NoError(t, os.WriteFile(path, make([]byte, size), 0o644))
	return free, func() { require.NoError(t, os.Remove(path)) }
}

// TestWALCreateFullDisk: a raft-wal segment that fills while the disk has
// no room for the next one (raft-wal preallocates it) makes appends fail
// only until there is room again (walPages.Create); with raft-wal alone
// they would fail "segment is sealed" until a restart. Every entry stored
// reads back, also after a reopen.
func TestWALCreateFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, "4m")
	dir := filepath.Join(mnt, "raft")
	require.NoError(t, os.Mkdir(dir, 0o755))
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	const segSize = 256 << 10
	w, err := openWAL(dir, meta, walPages{fs.New()}, segSize, hclog.NewNullLogger())
	require.NoError(t, err)
	idx := uint64(0)
	store := func() error {
		return w.StoreLogs([]*raft.Log{{Index: idx + 1, Term: 1, Type: raft.LogCommand, Data: make([]byte, 16<<10)}})
	}
	// Room for about a segment and a half: a later rotation finds no room
	// to preallocate the next one.
	_, unfill := fillDisk(t, mnt, 3*segSize/2)
	var failed error
	for range 64 {
		if failed = store(); failed != nil {
			break
		}
		idx++
	}
	require.Error(t, failed, "the disk never filled")
	require.Greater(t, idx, uint64(segSize/(16<<10)), "the first segment did not fill")
	require.ErrorIs(t, failed, syscall.ENOSPC, "a full disk, not a stuck WAL")

	unfill()
	for range 8 {
		require.NoError(t, store(), "with room again, entry %d", idx+1)
		idx++
	}
	check := func(w *wal.WAL) {
		last, err := w.LastIndex()
		require.NoError(t, err)
		require.Equal(t, idx, last)
		for i := uint64(1); i <= idx; i++ {
			var l raft.Log
			require.NoError(t, w.GetLog(i, &l), "entry %d", i)
			require.Len(t, l.Data, 16<<10)
		}
	}
	check(w)
	require.NoError(t, w.Close())
	w, err = openWAL(dir, meta, walPages{fs.New()}, segSize, hclog.NewNullLogger())
	require.NoError(t, err)
	defer w.Close()
	check(w)
}
