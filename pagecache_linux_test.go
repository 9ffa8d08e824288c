package logx

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/pagecache/pagecachetest"
	"github.com/stretchr/testify/require"
)

// requireNotCached fails unless no page of the named files in dir is in
// the page cache.
func requireNotCached(t *testing.T, dir string, names []string) {
	t.Helper()
	for _, name := range names {
		in := pagecachetest.Resident(t, filepath.Join(dir, name))
		require.Zero(t, pagecachetest.Count(in, 0, len(in)), "%s: pages cached, of %d", name, len(in))
	}
}

// TestScrubDropsPages: the check of the rotated files at start reads every
// one of them; afterwards none is in the page cache, the one it repaired
// from a peer included.
func TestScrubDropsPages(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.MaxSize = 8 << 10 })
	dir := c.cfgs[1].Dir
	pagecachetest.Observable(t, dir)
	c.waitReady()
	c.logAppend("scrub", 100)
	c.flushAll()
	c.waitSameSeq(300)

	c.stop(1)
	names, err := LogFiles(dir, "app.log")
	require.NoError(t, err)
	rotated := names[:len(names)-1] // the active file is last
	require.Greater(t, len(rotated), 3, "rotated files")
	b, err := os.ReadFile(filepath.Join(dir, rotated[0]))
	require.NoError(t, err)
	b[len(b)/2] ^= 0x20
	require.NoError(t, os.WriteFile(filepath.Join(dir, rotated[0]), b, 0o644))
	for _, name := range rotated[1:] { // into the page cache
		_, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
	}
	in := pagecachetest.Resident(t, filepath.Join(dir, rotated[1]))
	require.Equal(t, len(in), pagecachetest.Count(in, 0, len(in)), "reading a file did not cache it")

	c.start(1)
	lx := c.nodes[1]
	select {
	case <-lx.scrubDone:
	case <-time.After(20 * time.Second):
		t.Fatal("the check of the rotated files did not end")
	}
	require.Equal(t, uint64(1), lx.Stats().RepairedFiles)
	requireNotCached(t, dir, rotated)
}

// TestCatchUpDropsPages: the files a catch-up copies from a peer leave the
// page cache once they are durable, as a rotated file does.
func TestCatchUpDropsPages(t *testing.T) {
	c := catchUpCluster(t)
	dir := c.cfgs[2].Dir
	pagecachetest.Observable(t, dir)
	c.logAppend("before", 200)
	c.snapshotAll()
	c.stop(2)
	require.NoError(t, os.RemoveAll(dir))
	c.logAppend("while-down", 100)
	c.snapshotAll()
	c.start(2)
	c.waitReady()
	require.True(t, waitFor(20*time.Second, func() bool {
		st := c.nodes[2].Stats()
		return st.CatchUps == 1 && !st.CatchingUp
	}), "no catch-up")
	require.Positive(t, c.nodes[2].Stats().FetchedBytes)
	names, err := LogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Greater(t, len(names), 3, "files")
	requireNotCached(t, dir, names[:len(names)-1])
}
