package logx

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// AppendBatch from every node of a 3-node cluster at once, among Info and
// Append traffic, with batches of 1 to 40 records: every batch is in the
// files whole, contiguous and in order, at the sequence number it
// returned, on every node.
func TestAppendBatch(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.MaxBatchEntries = 64 }) // small batches: groups must often open a new one
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	firsts := map[string]uint64{} // batch id → its first seq
	sizes := map[string]int{}
	var wg sync.WaitGroup
	for i, lx := range c.nodes {
		for g := range 3 {
			wg.Go(func() {
				for b := range 25 {
					id := fmt.Sprintf("n%d-g%d-b%d", i, g, b)
					n := 1 + (i*7+g*5+b*3)%40
					recs := make([]Record, n)
					for p := range recs {
						recs[p] = Record{Level: LevelInfo, Msg: "part", Attrs: []slog.Attr{slog.String("batch", id), slog.Int("p", p)}}
					}
					first, err := lx.AppendBatch(ctx, recs)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					firsts[id], sizes[id] = first, n
					mu.Unlock()
					lx.Info("noise", "after", id)
				}
			})
		}
	}
	wg.Wait()
	c.flushAll()
	total := uint64(0)
	for _, n := range sizes {
		total += uint64(n) + 1
	}
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")
	lines := readLines(t, c.cfgs[2].Dir, "app.log")
	for id, first := range firsts {
		for p := range sizes[id] {
			kv, err := parseText(lines[first-1+uint64(p)])
			require.NoError(t, err)
			require.Equal(t, id, kv["batch"], "seq %d", first+uint64(p))
			require.Equal(t, strconv.Itoa(p), kv["p"])
		}
	}
}

// AppendBatch refuses what cannot go in one batch, says nothing was
// logged, and leaves out the records below the level.
func TestAppendBatchInput(t *testing.T) {
	lx := newSingle(t, func(cfg *Config) {
		cfg.MaxBatchEntries = 10
		cfg.MaxBatchBytes = 4 << 10
		cfg.MaxEntrySize = 4 << 10
		cfg.Level = LevelInfo
	})
	ctx := context.Background()
	_, err := lx.AppendBatch(ctx, nil)
	require.Error(t, err)
	_, err = lx.AppendBatch(ctx, make([]Record, 11))
	require.ErrorIs(t, err, ErrEntryTooLarge)
	big := []Record{{Level: LevelInfo, Msg: strings.Repeat("x", 3000)}, {Level: LevelInfo, Msg: strings.Repeat("y", 3000)}}
	_, err = lx.AppendBatch(ctx, big)
	require.ErrorIs(t, err, ErrEntryTooLarge)
	_, err = lx.AppendBatch(ctx, []Record{{Level: LevelInfo, Msg: "ok"}, {Level: LevelInfo, Msg: strings.Repeat("z", 5<<10)}})
	require.ErrorIs(t, err, ErrEntryTooLarge, "one record over MaxEntrySize")
	seq, err := lx.AppendBatch(ctx, []Record{{Level: LevelDebug, Msg: "below"}})
	require.NoError(t, err)
	require.Zero(t, seq)
	first, err := lx.AppendBatch(ctx, []Record{{Level: LevelDebug, Msg: "below"}, {Level: LevelWarn, Msg: "kept"}, {Level: LevelInfo, Msg: "kept too"}})
	require.NoError(t, err)
	require.Equal(t, uint64(1), first, "nothing else was logged: the refused batches left no line")
	require.NoError(t, lx.Flush(ctx))
	lines := readLines(t, lx.cfg.Dir, "app.log")
	require.Len(t, lines, 2)
	require.True(t, strings.HasSuffix(string(lines[0]), " msg=kept"), "%s", lines[0])
	require.Contains(t, string(lines[1]), `msg="kept too"`)

	// A batch withdrawn by its context before it was sent leaves nothing.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	_, err = lx.AppendBatch(cctx, []Record{{Level: LevelInfo, Msg: "withdrawn"}, {Level: LevelInfo, Msg: "withdrawn"}})
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrOutcomeUnknown, "a context that had ended sends nothing")
	require.NoError(t, lx.Flush(ctx))
	require.Len(t, readLines(t, lx.cfg.Dir, "app.log"), 2)
}
