package logx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

// plainHashes returns plain name → sha256 of the plain bytes of every log
// file of a node directory, compressed or not.
func plainHashes(t testing.TB, dir, name string) map[string]string {
	t.Helper()
	files, err := store.StoredFiles(dir, name)
	require.NoError(t, err)
	out := map[string]string{}
	for _, f := range files {
		r, err := OpenLogFile(filepath.Join(dir, f.Stored))
		require.NoError(t, err)
		h := sha256.New()
		_, err = io.Copy(h, r)
		r.Close()
		require.NoError(t, err)
		out[f.Name] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// waitCompressed waits until every rotated file of dir but the newest
// (which may not be in a checkpoint yet) is compressed, and returns the
// names on disk.
func waitCompressed(t testing.TB, dir, name string) []string {
	t.Helper()
	var names []string
	ok := waitFor(30*time.Second, func() bool {
		var err error
		names, err = LogFiles(dir, name)
		require.NoError(t, err)
		if len(names) < 3 {
			return false
		}
		for _, n := range names[:len(names)-2] {
			if !strings.HasSuffix(n, store.CompressedExt) {
				return false
			}
		}
		return true
	})
	require.True(t, ok, "not compressed: %v", names)
	return names
}

// TestCompressedFiles: nodes with Compress replace their rotated files by
// compressed ones with the same bytes on each, whose plain bytes are those
// of a node that does not compress; reading, seeking, grep, watch and
// verification see the same log either way.
func TestCompressedFiles(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.MaxSize = 16 << 10
		cfg.Compress = cfg.NodeID != "n3"
	})
	c.logAppend("compress", 500)
	c.flushAll()
	total := c.waitSameSeq(1500)
	dirs := c.dirs()
	for _, d := range dirs[:2] {
		waitCompressed(t, d, "app.log")
	}
	// Rotate once more and wait, so that every file the test compares was
	// in a checkpoint on both compressing nodes.
	names := waitCompressed(t, dirs[0], "app.log")
	require.True(t, waitFor(30*time.Second, func() bool {
		return c.nodes[0].Stats().CompressedFiles >= uint64(len(names)-2) && c.nodes[1].Stats().CompressedFiles >= uint64(len(names)-2)
	}))

	// The compressed files are the same bytes on both nodes.
	z0, z1 := zstHashes(t, dirs[0], "app.log"), zstHashes(t, dirs[1], "app.log")
	common := 0
	for n, h := range z0 {
		if h1, ok := z1[n]; ok {
			require.Equal(t, h, h1, "%s differs", n)
			common++
		}
	}
	require.Greater(t, common, 5)
	// Their plain bytes are n3's, which are plain files.
	for _, n := range mustLogFiles(t, dirs[2]) {
		require.False(t, strings.HasSuffix(n, store.CompressedExt), "n3 compressed %s", n)
	}
	want := plainHashes(t, dirs[2], "app.log")
	for _, d := range dirs[:2] {
		require.Equal(t, want, plainHashes(t, d, "app.log"))
	}
	st := c.nodes[0].Stats()
	require.Positive(t, st.CompressedSaved)
	require.Zero(t, st.CompressFailures)

	// Reading: every line once, in order, from the compressed node.
	lx := c.nodes[0]
	r, err := lx.OpenReader()
	require.NoError(t, err)
	var seq uint64
	for l, err := range r.Lines() {
		require.NoError(t, err)
		seq++
		require.Equal(t, seq, l.Seq)
	}
	require.Equal(t, total, seq)
	// Seeking into a compressed file.
	mid := total / 3
	require.NoError(t, r.SeekSeq(mid))
	l, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, mid, l.Seq)
	r.Close()

	// Grep finds a line of an early (compressed) file, and counts as the
	// plain node does.
	q := Query{Contains: "tag=compress node=1 k=7", Regexp: regexp.MustCompile(`k=7$`)}
	var got, want3 []uint64
	require.NoError(t, lx.Grep(context.Background(), q, func(l Line) error { got = append(got, l.Seq); return nil }))
	require.NoError(t, c.nodes[2].Grep(context.Background(), q, func(l Line) error { want3 = append(want3, l.Seq); return nil }))
	require.Len(t, got, 1)
	require.Equal(t, want3, got)
	require.Less(t, got[0], total/2)

	// Watch replays from the first line through the compressed files.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var watched uint64
	err = lx.Watch(ctx, 1, nil, func(l Line) error {
		watched++
		if l.Seq != watched {
			return fmt.Errorf("line %d after %d", l.Seq, watched-1)
		}
		if l.Seq == total {
			return io.EOF
		}
		return nil
	})
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, total, watched)

	// zstd's own tool decodes a compressed file to the plain node's bytes.
	if zstd, err := exec.LookPath("zstd"); err == nil {
		z := mustLogFiles(t, dirs[0])[0]
		out, err := exec.Command(zstd, "-dc", filepath.Join(dirs[0], z)).Output()
		require.NoError(t, err)
		plain, err := os.ReadFile(filepath.Join(dirs[2], strings.TrimSuffix(z, store.CompressedExt)))
		require.NoError(t, err)
		require.True(t, bytes.Equal(out, plain), "zstd -dc of %s", z)
	}
}

// zstHashes returns name → sha256 of the compressed files of dir (which
// stay until retention takes them; the plain ones may be compressed
// meanwhile).
func zstHashes(t testing.TB, dir, name string) map[string]string {
	t.Helper()
	names, err := LogFiles(dir, name)
	require.NoError(t, err)
	out := map[string]string{}
	for _, n := range names {
		if strings.HasSuffix(n, store.CompressedExt) {
			b, err := os.ReadFile(filepath.Join(dir, n))
			require.NoError(t, err)
			sum := sha256.Sum256(b)
			out[n] = hex.EncodeToString(sum[:])
		}
	}
	return out
}

func mustLogFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := LogFiles(dir, "app.log")
	require.NoError(t, err)
	return names
}

// TestCompressedCatchUp: a wiped node catches up from peers that keep
// their files compressed (they send the plain bytes), compresses what it
// copied, and ends with the same compressed bytes; retention retires and
// deletes compressed files like plain ones.
func TestCompressedCatchUp(t *testing.T) {
	t.Parallel()
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.MaxSize = 16 << 10
		cfg.MaxFiles = 6
		cfg.TrailingLogs = 8
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when the test asks
		cfg.Compress = true
		sm.walSegmentSize = 16 << 10
	})
	c.logAppend("before", 300)
	c.flushAll()
	c.waitSameSeq(900)
	for _, d := range c.dirs() {
		waitCompressed(t, d, "app.log")
	}
	c.snapshotAll()
	c.stop(2)
	require.NoError(t, os.RemoveAll(c.cfgs[2].Dir))
	c.logAppend("while-down", 100)
	c.flushAll()
	waitCompressed(t, c.cfgs[0].Dir, "app.log")
	c.snapshotAll()
	c.start(2)
	c.waitReady()
	c.waitSameSeq(3*300 + 2*100)
	require.Equal(t, uint64(1), c.nodes[2].Stats().CatchUps)
	require.Positive(t, c.nodes[2].Stats().FetchedBytes)
	// The files it copied are compressed once the catch-up ends, without
	// waiting for a rotation.
	waitCompressed(t, c.cfgs[2].Dir, "app.log")
	c.logAppend("after", 100)
	c.flushAll()
	total := uint64(3*300 + 2*100 + 3*100)
	require.Equal(t, total, c.waitSameSeq(total))

	// Every node compressed the same files to the same bytes.
	for _, d := range c.dirs() {
		waitCompressed(t, d, "app.log")
	}
	// A snapshot deletes what retention retired before the one before.
	require.Positive(t, c.nodes[0].Stats().Retired)
	c.snapshotAll()
	c.snapshotAll()
	for _, d := range c.dirs() {
		left, err := filepath.Glob(filepath.Join(d, ".retired-*"))
		require.NoError(t, err)
		require.Empty(t, left)
	}
	// They start again from compressed files.
	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.waitReady()
	for _, d := range c.dirs() {
		names := waitCompressed(t, d, "app.log")
		require.LessOrEqual(t, len(names), 6+1, "retention keeps MaxFiles rotated files")
	}
	want := zstHashes(t, c.cfgs[0].Dir, "app.log")
	for _, d := range c.dirs()[1:] {
		got := zstHashes(t, d, "app.log")
		for n, h := range want {
			if got[n] != "" {
				require.Equal(t, h, got[n], "%s differs in %s", n, d)
			}
		}
	}
	requirePlainIdentical(t, c.dirs())
	for _, d := range c.dirs() {
		left, err := filepath.Glob(filepath.Join(d, ".compress-*"))
		require.NoError(t, err)
		require.Empty(t, left)
	}
}

// requirePlainIdentical checks that the nodes' files hold the same plain
// bytes under the same plain names.
func requirePlainIdentical(t testing.TB, dirs []string) {
	t.Helper()
	want := plainHashes(t, dirs[0], "app.log")
	for _, d := range dirs[1:] {
		require.Equal(t, want, plainHashes(t, d, "app.log"), "%s and %s", dirs[0], d)
	}
}

// TestCompressedRepair: a compressed file damaged on disk is found at
// start, replaced by a plain copy from a peer, and compressed again.
func TestCompressedRepair(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.MaxSize = 8 << 10
		cfg.Compress = true
	})
	c.logAppend("repair", 100)
	c.flushAll()
	c.waitSameSeq(300)
	dir := c.cfgs[1].Dir
	names := waitCompressed(t, dir, "app.log")
	c.stop(1)
	damaged := filepath.Join(dir, names[0])
	good, err := os.ReadFile(damaged)
	require.NoError(t, err)
	b := bytes.Clone(good)
	b[len(b)/3] ^= 0x20 // inside a frame
	require.NoError(t, os.WriteFile(damaged, b, 0o644))

	c.start(1)
	lx := c.nodes[1]
	require.True(t, waitFor(20*time.Second, func() bool { return lx.Stats().RepairedFiles == 1 }),
		"repaired %d of %d damaged", lx.Stats().RepairedFiles, lx.Stats().DamagedFiles)
	require.Equal(t, uint64(1), lx.Stats().DamagedFiles)
	// Compressed again, to the bytes it had.
	require.True(t, waitFor(20*time.Second, func() bool {
		now, err := os.ReadFile(damaged)
		return err == nil && bytes.Equal(now, good)
	}), "not compressed again")
	requirePlainIdentical(t, c.dirs())
}

// TestCompressRefusesDamaged: rotated files whose bytes no longer match
// their checkpoint (a flipped byte, a file cut to nothing), which no peer
// can repair (a single node), are not compressed: that would make the
// damage look whole. They stay plain and are counted; the others, older
// and newer, are compressed.
func TestCompressRefusesDamaged(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.MaxSize = 8 << 10 })
	c.logAppend("damaged", 300)
	c.flushAll()
	c.stop(0)
	dir := c.cfgs[0].Dir
	names := mustLogFiles(t, dir)
	require.Greater(t, len(names), 4)
	flipped := filepath.Join(dir, names[1])
	b, err := os.ReadFile(flipped)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x01
	require.NoError(t, os.WriteFile(flipped, b, 0o644))
	require.NoError(t, os.Truncate(filepath.Join(dir, names[2]), 0))

	c.cfgs[0].Compress = true
	c.start(0)
	lx := c.nodes[0]
	require.True(t, waitFor(20*time.Second, func() bool {
		return lx.Stats().CompressedFiles == uint64(len(names)-3)
	}), "compressed %d of %d", lx.Stats().CompressedFiles, len(names)-3)
	require.Equal(t, uint64(2), lx.Stats().CompressFailures)
	now := mustLogFiles(t, dir)
	require.Equal(t, names[1:3], now[1:3], "the damaged files stay plain")
	require.True(t, strings.HasSuffix(now[0], store.CompressedExt))
	require.True(t, strings.HasSuffix(now[3], store.CompressedExt))
	got, err := os.ReadFile(flipped)
	require.NoError(t, err)
	require.Equal(t, b, got)
	require.Equal(t, uint64(2), lx.Stats().DamagedFiles)
}

// TestCompressedCorruptRead: a compressed file damaged inside a frame
// while nobody checks (scrub runs at start) is an error for a Reader, a
// Watch and a seek, never the end of the log or a wait that does not end.
func TestCompressedCorruptRead(t *testing.T) {
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.MaxSize = 64 << 10; cfg.Compress = true })
	c.logAppend("corrupt", 2000)
	c.flushAll()
	dir := c.cfgs[0].Dir
	names := waitCompressed(t, dir, "app.log")
	path := filepath.Join(dir, names[0])
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x55
	require.NoError(t, os.WriteFile(path, b, 0o644))

	r, err := OpenReader(dir, "app.log")
	require.NoError(t, err)
	defer r.Close()
	var n int
	for _, err = range r.Lines() {
		if err != nil {
			break
		}
		n++
	}
	require.ErrorIs(t, err, ErrCorrupt)
	require.Less(t, n, 2000)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = c.nodes[0].Watch(ctx, 1, nil, func(Line) error { return nil })
	require.ErrorIs(t, err, ErrCorrupt)
	// A seek into the damaged part: an error, or a line at or after the
	// one asked for; never a wrong line.
	for _, seq := range []uint64{1, uint64(n), uint64(n) + 5} {
		if err := r.SeekSeq(seq); err == nil {
			l, err := r.Next()
			if err == nil {
				require.GreaterOrEqual(t, l.Seq, seq)
			} else {
				require.ErrorIs(t, err, ErrCorrupt)
			}
		} else {
			require.ErrorIs(t, err, ErrCorrupt)
		}
	}
}
