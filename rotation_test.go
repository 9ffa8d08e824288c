package logx

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRotation: a small MaxSize forces dozens of rotations; every node has
// the same names and bytes, names follow the first sequence number of each
// file, and no file passes MaxSize.
func TestRotation(t *testing.T) {
	const maxSize = 8 << 10
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.MaxSize = maxSize; cfg.MaxEntrySize = 1 << 10 })
	per := 1500
	if testing.Short() {
		per = 600
	}
	var wg sync.WaitGroup
	for n, lx := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				lx.Info("rotation entry", "n", n, "i", i)
			}
		}()
	}
	wg.Wait()
	c.flushAll()
	total := uint64(3 * per)
	c.waitSameSeq(total)
	hashes := requireIdentical(t, c.dirs(), "app.log")
	require.Greater(t, len(hashes), 24, "expected dozens of files")

	names, err := LogFiles(c.cfgs[0].Dir, "app.log")
	require.NoError(t, err)
	require.Equal(t, "app.log", names[len(names)-1])
	next := uint64(1)
	var prevSize int64 // the previous file's, which the first line here did not fit
	for k, name := range names {
		path := filepath.Join(c.cfgs[0].Dir, name)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.LessOrEqual(t, fi.Size(), int64(maxSize), name)
		lines := readLinesOf(t, path)
		require.NotEmpty(t, lines, name)
		kv, err := parseText(lines[0])
		require.NoError(t, err)
		require.Equal(t, strconv.FormatUint(next, 10), kv["seq"], "first line of %s", name)
		if k > 0 {
			// The previous file is full: this line would not have fitted.
			require.Greater(t, prevSize+int64(len(lines[0]))+1, int64(maxSize), names[k-1])
		}
		if name != "app.log" {
			require.Equal(t, fmt.Sprintf("app-%020d.log", next), name)
		}
		prevSize = fi.Size()
		next += uint64(len(lines))
	}
	require.Equal(t, total+1, next)
	for _, lx := range c.nodes {
		require.Equal(t, uint64(len(names)-1), lx.Stats().Rotations)
	}
}

func readLinesOf(t testing.TB, path string) [][]byte {
	t.Helper()
	dir, name := filepath.Split(path)
	return readLinesFiles(t, dir, []string{name})
}

// TestRestart: a node is closed while the others keep logging, then
// reopened with the same Dir: it catches up from the Raft log and ends
// identical, with nothing written twice.
func TestRestart(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.MaxSize = 32 << 10 })
	ctx := context.Background()
	logN := func(from, n int) {
		var wg sync.WaitGroup
		for i, lx := range c.nodes {
			if lx == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := from; k < from+n; k++ {
					_, err := lx.Append(ctx, LevelInfo, "restart entry", "node", i, "k", k)
					require.NoError(t, err)
				}
			}()
		}
		wg.Wait()
	}
	logN(0, 200)
	c.stop(2)
	logN(200, 400)
	c.start(2)
	logN(600, 200)
	c.flushAll()
	total := uint64(3*200 + 2*400 + 3*200)
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	requireUnique(t, readLines(t, c.cfgs[2].Dir, "app.log"), "node", "k")
	// Restart every node, one after another: still identical, nothing new.
	for i := range c.nodes {
		c.stop(i)
		c.start(i)
	}
	c.waitReady()
	c.flushAll()
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
}

// requireUnique checks seq numbers run 1..n and the entries identified by
// keys appear once each.
func requireUnique(t testing.TB, lines [][]byte, keys ...string) {
	t.Helper()
	seen := map[string]int{}
	for n, l := range lines {
		kv, err := parseText(l)
		require.NoError(t, err, "%s", l)
		require.Equal(t, strconv.Itoa(n+1), kv["seq"], "line %d", n+1)
		id := ""
		for _, k := range keys {
			id += kv[k] + "/"
		}
		if prev, ok := seen[id]; ok {
			t.Fatalf("entry %s at lines %d and %d", id, prev, n+1)
		}
		seen[id] = n + 1
	}
}
