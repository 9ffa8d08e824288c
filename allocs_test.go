package logx

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The caller's path of async logging allocates nothing: the entry and its
// body come from a free list the producer refills, the caller's site is
// cached, and attributes are rendered in place. Values the caller boxes into
// ...any (ints of 256 and more, non-constant strings) are the caller's
// allocations, as with slog.Logger.Info; LogAttrs avoids those.
func TestAsyncAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	c := newTestCluster(t, 1, nil)
	lx := c.nodes[0]
	ctx := context.Background()
	logger := slog.New(lx.Handler())
	user, n, took := "alice", 4096, 1500*time.Microsecond
	var err error = errTest

	cases := []struct {
		name string
		f    func()
	}{
		{"Info", func() { lx.Info("user signed in", "user", "alice", "attempt", 3, "ok", true, "path", "/login") }},
		// A message that is not a constant: it must not escape (sampling
		// once kept it, and every call paid for it).
		{"Info built", func() { lx.Info(string(msgBuf[:7])) }},
		{"LogAttrs", func() {
			lx.LogAttrs(ctx, LevelInfo, "user signed in", slog.String("user", user), slog.Int("n", n),
				slog.Duration("took", took), slog.Any("err", err))
		}},
		{"slog.LogAttrs", func() {
			logger.LogAttrs(ctx, slog.LevelInfo, "user signed in", slog.String("user", user), slog.Int("n", n),
				slog.Duration("took", took), slog.Bool("ok", true))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Warm up: fill the free list and the caller cache.
			for range 2000 {
				tc.f()
			}
			require.NoError(t, lx.Flush(ctx))
			allocs, _ := callerAllocs(t, lx, tc.f)
			require.Zero(t, allocs, "allocations per call")
		})
	}
}

// callerAllocs returns the allocations per call of f on lx's caller path,
// and how many rounds of 1,001 calls it took. testing.AllocsPerRun counts
// every goroutine's allocations, and the producer, Raft and apply allocate
// per batch: when batches come small (a loaded machine, the race
// detector) theirs reach one per call. The caller's own are in every
// round, so the fewest of up to five rounds, each followed by a Flush, is
// the caller's.
func callerAllocs(t *testing.T, lx interface{ Flush(context.Context) error }, f func()) (allocs float64, rounds int) {
	t.Helper()
	allocs = math.Inf(1)
	for rounds < 5 && allocs > 0 {
		allocs = min(allocs, testing.AllocsPerRun(1000, f))
		rounds++
		require.NoError(t, lx.Flush(context.Background()))
	}
	return allocs, rounds
}

var errTest = errorString("disk on fire")

var msgBuf = []byte("message built at run time")

type errorString string

func (e errorString) Error() string { return string(e) }
