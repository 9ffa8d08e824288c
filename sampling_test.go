package logx

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countMsgs counts a node's lines by their msg= field, and returns the
// sampling summaries' lines.
func countMsgs(t *testing.T, dir string) (map[string]int, []string) {
	t.Helper()
	counts := map[string]int{}
	var summaries []string
	for _, l := range readLines(t, dir, "app.log") {
		line := string(l)
		_, rest, _ := strings.Cut(line, " msg=")
		msg := rest
		if strings.HasPrefix(rest, `"`) {
			msg = rest[1 : 1+strings.Index(rest[1:], `"`)]
		} else if i := strings.IndexByte(rest, ' '); i >= 0 {
			msg = rest[:i]
		}
		counts[msg]++
		if msg == "logx: sampling dropped entries" {
			summaries = append(summaries, line)
		}
	}
	return counts, summaries
}

// Sampling on a node of a 3-node cluster, its clock held still: per
// (level, message), the first 3 of an interval and then every 10th are
// logged; ERROR is not sampled; the slog handler and LogAttrs are sampled
// like Info; Append is not. Each pair that lost entries gets one summary
// entry, replicated like any other; Stats counts the drops. The next
// interval counts again.
func TestSampling(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.Sampling = &Sampling{Interval: time.Hour, First: 3, Thereafter: 10} // no summary by the ticker during the test
		if cfg.NodeID == "n1" {
			sm.now = func() time.Time { return time.Unix(0, clock.Load()) }
		}
	})
	lx := c.nodes[0]
	// Messages share a counter when their hashes meet in the table (1 in
	// samplingSlots per pair): this test counts each on its own, so it
	// takes a seed under which "hot" and "cold" do not meet.
	for maphash.String(lx.sampler.seed, "hot")%samplingSlots == maphash.String(lx.sampler.seed, "cold")%samplingSlots {
		lx.sampler.seed = maphash.MakeSeed()
	}
	ctx := context.Background()
	logger := slog.New(lx.Handler())
	for k := range 100 {
		lx.Info("hot", "k", k)
	}
	lx.Info("cold")
	lx.Info("cold")
	for range 20 {
		lx.Error("boom")
	}
	for range 15 {
		logger.Warn("via slog")
	}
	for range 5 {
		lx.LogAttrs(ctx, LevelDebug, "attrs")
	}
	for range 5 {
		_, err := lx.Append(ctx, LevelInfo, "appended")
		require.NoError(t, err)
	}
	require.Equal(t, uint64(88+11+2), lx.Stats().Sampled)
	lx.logSummaries(lx.sampler, true) // the end of the interval
	require.NoError(t, lx.Flush(ctx))

	// The next interval counts from 0 again.
	clock.Add(int64(time.Hour))
	for range 5 {
		lx.Info("hot")
	}
	lx.logSummaries(lx.sampler, true)
	require.NoError(t, lx.Flush(ctx))
	c.flushAll()
	total := uint64(12 + 2 + 20 + 4 + 3 + 5 + 3 + 3 + 1) // hot, cold, boom, via slog, attrs, appended, summaries, hot again, its summary
	require.Equal(t, total, c.waitSameSeq(total))
	requireIdentical(t, c.dirs(), "app.log")

	counts, summaries := countMsgs(t, c.cfgs[2].Dir) // another node's copy
	require.Equal(t, 12+3, counts["hot"], "3 of the first interval, then every 10th; 3 of the next")
	require.Equal(t, 2, counts["cold"])
	require.Equal(t, 20, counts["boom"], "ERROR is not sampled")
	require.Equal(t, 4, counts["via slog"])
	require.Equal(t, 3, counts["attrs"])
	require.Equal(t, 5, counts["appended"], "Append is not sampled")
	require.Len(t, summaries, 4)
	want := []string{"sampled_msg=hot dropped=88 ", `sampled_msg="via slog" dropped=11 `, "sampled_msg=attrs dropped=2 ", "sampled_msg=hot dropped=2 "}
	for _, w := range want {
		found := false
		for _, s := range summaries {
			found = found || strings.Contains(s, w)
		}
		require.True(t, found, "no summary with %q in %q", w, summaries)
	}
	for _, s := range summaries {
		require.Contains(t, s, " interval=1h0m0s")
	}
}

// The caller's path stays free of allocations with sampling on, whether
// the entry is kept or dropped.
func TestSamplingAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.Sampling = &Sampling{Interval: time.Hour, First: 1, Thereafter: 2} })
	lx := c.nodes[0]
	ctx := context.Background()
	logger := slog.New(lx.Handler())
	user := "alice"
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Info", func() { lx.Info("user signed in", "user", "alice", "ok", true) }},
		{"LogAttrs", func() { lx.LogAttrs(ctx, LevelInfo, "user signed in", slog.String("user", user)) }},
		{"slog.LogAttrs", func() { logger.LogAttrs(ctx, slog.LevelInfo, "user signed in", slog.String("user", user)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2000 {
				tc.f()
			}
			require.NoError(t, lx.Flush(ctx))
			before := lx.Stats().Sampled
			allocs, rounds := callerAllocs(t, lx, tc.f)
			require.Zero(t, allocs, "allocations per call")
			require.InDelta(t, 500*rounds, lx.Stats().Sampled-before, float64(10*rounds), "about every other call dropped")
		})
	}
}

func TestSamplingConfig(t *testing.T) {
	for _, s := range []Sampling{{First: 0}, {First: 1, Interval: -time.Second}, {First: 1, Thereafter: -1}} {
		cfg := Config{NodeID: "n1", Addr: "127.0.0.1:1", Peers: []string{"127.0.0.1:1"}, Dir: t.TempDir(), Sampling: &s}
		var ce *ConfigError
		require.True(t, errors.As(cfg.Validate(), &ce), "%+v", s)
		require.Equal(t, "Sampling", ce.Field)
	}
}

// TestSamplingLongMessage: a summary names the head of a long message (up
// to 256 bytes, cut at a character), so it stays within any MaxEntrySize,
// and the slot lets go of it once summarized.
func TestSamplingLongMessage(t *testing.T) {
	s := newSampler(Sampling{Interval: time.Hour, First: 1})
	long := strings.Repeat("é", 1<<20) // 2 MiB, two bytes a character
	now := time.Now().UnixNano()
	require.True(t, s.allow(LevelInfo, long, now))
	require.False(t, s.allow(LevelInfo, long, now))
	var got []string
	s.summaries(func(_ slog.Level, msg string, dropped uint64) {
		require.Equal(t, uint64(1), dropped)
		got = append(got, msg)
	})
	require.Equal(t, []string{strings.Repeat("é", 128)}, got)
	for l := range s.slots {
		for i := range s.slots[l] {
			require.Empty(t, s.slots[l][i].msg, "a summarized message is let go")
		}
	}
	require.Equal(t, "ab", sampledHead("ab"))
	require.Equal(t, strings.Repeat("a", 255), sampledHead(strings.Repeat("a", 255)+"é"), "cut at a character's start")
}
