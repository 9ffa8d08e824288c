package logx

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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
