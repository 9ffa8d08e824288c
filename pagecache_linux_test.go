package logx

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/pagecache/pagecachetest"
	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

// requireNotCached fails unless no page of the named files in dir is in
// the page cache.
func requireNotCached(t *testing.T, dir string, names []string) {
	t.Helper()
	for _, name := range names {
		n, pages := pagecachetest.Cached(t, filepath.Join(dir, name))
		require.Zero(t, n, "%s: pages cached, of %d", name, pages)
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
	n, pages := pagecachetest.Cached(t, filepath.Join(dir, rotated[1]))
	require.Equal(t, pages, n, "reading a file did not cache it")

	c.start(1)
	lx := c.nodes[1]
	select {
	case <-lx.scrubStarted:
	case <-time.After(20 * time.Second):
		t.Fatal("the check of the rotated files did not end")
	}
	require.Equal(t, uint64(1), lx.Stats().RepairedFiles)
	requireNotCached(t, dir, rotated)
}

// TestCatchUpDropsPages: the files a catch-up copies from a peer leave the
// page cache once they are durable, as a rotated file does.
func TestCatchUpDropsPages(t *testing.T) {
	t.Parallel()
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
	require.True(t, waitFor(60*time.Second, func() bool {
		st := c.nodes[2].Stats()
		return st.CatchUps == 1 && !st.CatchingUp
	}), "no catch-up")
	require.Positive(t, c.nodes[2].Stats().FetchedBytes)
	names, err := LogFiles(dir, "app.log")
	require.NoError(t, err)
	require.Greater(t, len(names), 3, "files")
	requireNotCached(t, dir, names[:len(names)-1])
}

// TestCopiesKeptForCompressor: the files a catch-up and a repair copy leave
// the page cache, except on a node that compresses (fsm.onRotated set),
// whose compressor reads them next.
func TestCopiesKeptForCompressor(t *testing.T) {
	for _, compress := range []bool{false, true} {
		src, m := sourceFSM(t, testLogs(40, 7))
		dir := t.TempDir()
		pagecachetest.Observable(t, dir)
		dst := openTestFSM(t, dir)
		if compress {
			dst.onRotated = func() {}
		}
		dst.fetcher = &dirFetcher{src: src}
		require.NoError(t, restoreFrom(t, dst, m))
		require.Greater(t, len(m.Files), 3, "files")
		rotated := m.Files[:len(m.Files)-1]
		require.NoError(t, dst.repair(context.Background(), rotated[0]))
		for _, fs := range rotated {
			n, pages := pagecachetest.Cached(t, filepath.Join(dir, fs.Name))
			want := 0
			if compress {
				want = pages
			}
			require.Equal(t, want, n, "compress %v: %s: pages cached, of %d", compress, fs.Name, pages)
		}
		require.NoError(t, dst.close())
	}
}

// TestCheckDropsPages: segmentSum, the start's check of a file, drops
// the file's pages, except a plain file's on a node that compresses.
func TestCheckDropsPages(t *testing.T) {
	dir := t.TempDir()
	pagecachetest.Observable(t, dir)
	plain := filepath.Join(dir, "plain.log")
	b := make([]byte, 0, 64<<10)
	for len(b) < 60<<10 {
		b = append(b, "seq=1 level=INFO msg=\"a line to check\"\n"...)
	}
	p, err := os.Create(plain)
	require.NoError(t, err)
	_, err = p.Write(b)
	require.NoError(t, err)
	require.NoError(t, p.Sync()) // rotated files are durable; dirty pages are not dropped
	require.NoError(t, p.Close())
	z, err := os.Create(filepath.Join(dir, "z.log.zst"))
	require.NoError(t, err)
	src, err := os.Open(plain)
	require.NoError(t, err)
	_, _, err = store.Compress(z, src, store.SHA256, func() error { return nil })
	require.NoError(t, err)
	require.NoError(t, src.Close())
	require.NoError(t, z.Sync())
	require.NoError(t, z.Close())
	cached := func(path string) int {
		_, err := os.ReadFile(path) // into the page cache
		require.NoError(t, err)
		n, _ := pagecachetest.Cached(t, path)
		return n
	}
	for _, c := range []struct {
		path      string
		keepPlain bool
		kept      bool
	}{
		{plain, false, false},
		{plain, true, true},
		{z.Name(), false, false},
		{z.Name(), true, false}, // compressed: nobody reads it next
	} {
		require.Positive(t, cached(c.path))
		_, _, err := segmentSum(context.Background(), c.path, store.File{}, c.keepPlain)
		require.NoError(t, err)
		n, pages := pagecachetest.Cached(t, c.path)
		want := 0
		if c.kept {
			want = pages
		}
		require.Equal(t, want, n, "%s, keepPlain %v", filepath.Base(c.path), c.keepPlain)
	}
}
