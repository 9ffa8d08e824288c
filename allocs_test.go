package logx

import (
	"context"
	"log/slog"
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
			allocs := testing.AllocsPerRun(1000, tc.f)
			require.NoError(t, lx.Flush(ctx))
			require.Zero(t, allocs, "allocations per call")
		})
	}
}

var errTest = errorString("disk on fire")

var msgBuf = []byte("message built at run time")

type errorString string

func (e errorString) Error() string { return string(e) }
