package logx

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"testing/slogtest"
	"time"

	"github.com/stretchr/testify/require"
)

// newSingle starts a one-node cluster.
func newSingle(t *testing.T, tweak func(*Config)) *Logx {
	t.Helper()
	return newSingleSeams(t, tweak, seams{})
}

// newSingleSeams is newSingle with test hooks.
func newSingleSeams(t *testing.T, tweak func(*Config), sm seams) *Logx {
	t.Helper()
	addrs := freeAddrs(t, 1)
	cfg := testConfig(t, 0, addrs, filepath.Join(t.TempDir(), "n1"))
	if tweak != nil {
		tweak(&cfg)
	}
	lx, err := newNode(cfg, sm)
	require.NoError(t, err)
	t.Cleanup(func() { lx.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, lx.WaitReady(ctx))
	return lx
}

// newLines returns a function that yields the lines written since the
// previous call.
func newLines(t *testing.T, lx *Logx) func() [][]byte {
	done := 0
	return func() [][]byte {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, lx.Flush(ctx))
		all := readLines(t, lx.cfg.Dir, lx.cfg.File)
		out := all[done:]
		done = len(all)
		return out
	}
}

func TestSlogtestJSON(t *testing.T) {
	lx := newSingle(t, func(c *Config) { c.Format = FormatJSON })
	lines := newLines(t, lx)
	slogtest.Run(t, func(*testing.T) slog.Handler { return lx.Handler() }, func(t *testing.T) map[string]any {
		ls := lines()
		require.Len(t, ls, 1)
		var m map[string]any
		require.NoError(t, json.Unmarshal(ls[0], &m), "%s", ls[0])
		return m
	})
}

func TestSlogtestText(t *testing.T) {
	lx := newSingle(t, nil)
	lines := newLines(t, lx)
	slogtest.Run(t, func(*testing.T) slog.Handler { return lx.Handler() }, func(t *testing.T) map[string]any {
		ls := lines()
		require.Len(t, ls, 1)
		kv, err := parseText(ls[0])
		require.NoError(t, err, "%s", ls[0])
		// Nest dotted keys as groups.
		m := map[string]any{}
		for k, v := range kv {
			parts := strings.Split(k, ".")
			cur := m
			for _, p := range parts[:len(parts)-1] {
				sub, ok := cur[p].(map[string]any)
				if !ok {
					sub = map[string]any{}
					cur[p] = sub
				}
				cur = sub
			}
			cur[parts[len(parts)-1]] = v
		}
		return m
	})
}

// TestHandlerCaller checks that the caller recorded is the application's
// call site, for the slog handler and the Logx methods alike.
func TestHandlerCaller(t *testing.T) {
	lx := newSingle(t, nil)
	lines := newLines(t, lx)
	slog.New(lx.Handler()).Info("via slog")
	lx.Info("via info")
	_, err := lx.Append(context.Background(), LevelWarn, "via append")
	require.NoError(t, err)
	ls := lines()
	require.Len(t, ls, 3)
	for _, l := range ls {
		kv, err := parseText(l)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(kv["caller"], "main/handler_test.go:") ||
			strings.Contains(kv["caller"], "handler_test.go:"), "caller %q in %s", kv["caller"], l)
	}
}

// TestFlushReportsLosses: an asynchronous call whose entry could not be
// queued (too large) makes the next Flush fail with ErrEntriesLost, once;
// a Flush after entries that all committed returns nil; and Close reports
// a loss no Flush has reported.
func TestFlushReportsLosses(t *testing.T) {
	t.Parallel()
	lx := newSingle(t, func(c *Config) { c.MaxEntrySize = 1 << 10 })
	ctx := context.Background()
	big := strings.Repeat("x", 2<<10)
	lx.Info("fits")
	require.NoError(t, lx.Flush(ctx))

	lx.Info(big)
	slog.New(lx.Handler()).Warn(big)
	lx.Info("fits")
	err := lx.Flush(ctx)
	require.ErrorIs(t, err, ErrEntriesLost)
	require.ErrorContains(t, err, "2 asynchronous entries logged")
	require.NoError(t, lx.Flush(ctx), "a loss is reported once")
	require.Len(t, readLines(t, lx.cfg.Dir, lx.cfg.File), 2)

	// An Append's failure is its caller's to see: Flush does not count it.
	_, err = lx.Append(ctx, LevelInfo, big)
	require.ErrorIs(t, err, ErrEntryTooLarge)
	require.NoError(t, lx.Flush(ctx))

	lx.LogAttrs(ctx, LevelError, big)
	require.ErrorIs(t, lx.Close(), ErrEntriesLost)

	// Calls still logging while Close runs get ErrClosed once it has
	// begun; they are not losses of entries logged before it.
	lx2 := newSingle(t, nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			lx2.Info("busy", "i", i)
		}
	}()
	require.True(t, waitFor(10*time.Second, func() bool { return lx2.Stats().Enqueued > 1000 }))
	err = lx2.Close()
	close(stop)
	<-done
	require.NoError(t, err)
	require.Positive(t, lx2.Stats().AsyncErrors, "no call came after Close began: the test shows nothing")
}
