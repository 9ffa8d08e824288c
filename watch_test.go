package logx

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWatch: a watcher started mid-log replays from its position, then sees
// every new line once, in order, filtered by level; a blocked watcher does
// not hold up logging, and catches up when it is released.
func TestWatch(t *testing.T) {
	lx := newSingle(t, func(c *Config) { c.MaxSize = 4096 }) // rotations under the watcher
	ctx := context.Background()
	for k := 0; k < 20; k++ {
		_, err := lx.Append(ctx, LevelInfo, "early", "k", k)
		require.NoError(t, err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var seqs []uint64
	gate := make(chan struct{})
	got := make(chan struct{}, 1000)
	done := make(chan error, 1)
	go func() {
		done <- lx.Watch(wctx, 11, LevelWarn, func(l Line) error {
			if l.Seq == 21 {
				<-gate // blocked: a slow subscriber
			}
			mu.Lock()
			seqs = append(seqs, l.Seq)
			mu.Unlock()
			got <- struct{}{}
			return nil
		})
	}()
	// While the watcher is blocked, logging goes on.
	for k := 0; k < 200; k++ {
		level := LevelWarn
		if k%2 == 1 {
			level = LevelInfo
		}
		_, err := lx.Append(ctx, level, "late", "k", k)
		require.NoError(t, err)
	}
	require.Greater(t, lx.Stats().Rotations, uint64(3))
	close(gate)
	for range 100 { // the 100 WARN lines from seq 21 on
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			t.Fatal("the watcher did not catch up")
		}
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seqs, 100) // lines 11-20 were INFO: filtered out
	for i, s := range seqs {
		require.Equal(t, uint64(21+2*i), s)
	}
}

// TestWatchFromAhead: a watcher asked to start past this node's last line
// (a browser that reconnects to a follower behind the node it read from)
// gets lines from there on only. Before, the lines between the node's end
// and from were delivered too.
func TestWatchFromAhead(t *testing.T) {
	lx := newSingle(t, nil)
	ctx := context.Background()
	for k := 0; k < 10; k++ {
		_, err := lx.Append(ctx, LevelInfo, "early", "k", k)
		require.NoError(t, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan uint64, 100)
	done := make(chan error, 1)
	go func() {
		done <- lx.Watch(wctx, 15, nil, func(l Line) error {
			got <- l.Seq
			return nil
		})
	}()
	for k := 0; k < 10; k++ {
		_, err := lx.Append(ctx, LevelInfo, "late", "k", k)
		require.NoError(t, err)
	}
	for want := uint64(15); want <= 20; want++ {
		select {
		case seq := <-got:
			require.Equal(t, want, seq)
		case <-time.After(30 * time.Second):
			t.Fatal("the watcher did not deliver")
		}
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// TestWatchSkipsBadLine: damaged lines of the active file (it has no
// checksum until it rotates) are skipped by a watcher, which goes on with
// every line after them that parses, however many lines the damage took
// or made (a block of garbage has newlines of its own), and whether it
// starts before the damage or at a line it took. Before, Watch returned
// the error, and a watcher that resumed from the line reported stopped at
// it again.
func TestWatchSkipsBadLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		from  uint64
		block bool
		want  []uint64 // then 11, appended after
	}{
		{"first line", 0, false, []uint64{2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"from the damaged line", 1, false, []uint64{2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"from after it", 2, false, []uint64{2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"a block", 0, true, []uint64{1, 2, 5, 6, 7, 8, 9, 10}},
		{"from inside a block", 3, true, []uint64{5, 6, 7, 8, 9, 10}},
		{"merged lines", 0, false, []uint64{1, 2, 3, 5, 6, 7, 8, 9, 10}}, // line 3's newline lost: 4 is part of 3
	} {
		t.Run(tc.name, func(t *testing.T) {
			lx := newSingle(t, nil)
			ctx := context.Background()
			for k := 0; k < 10; k++ {
				_, err := lx.Append(ctx, LevelInfo, "line", "k", k)
				require.NoError(t, err)
			}
			require.NoError(t, lx.Flush(ctx))
			path := filepath.Join(lx.cfg.Dir, lx.logFile())
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			off, garbage := 0, []byte("#")
			lines := bytes.SplitAfter(b, []byte("\n"))
			if tc.name == "merged lines" {
				off = len(lines[0]) + len(lines[1]) + len(lines[2]) - 1
			}
			if tc.block { // lines 3 and 4 become three lines of garbage, same length
				off = len(lines[0]) + len(lines[1])
				n := len(lines[2]) + len(lines[3])
				garbage = bytes.Repeat([]byte("#"), n)
				garbage[n/3], garbage[2*n/3], garbage[n-1] = '\n', '\n', '\n'
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			require.NoError(t, err)
			_, err = f.WriteAt(garbage, int64(off)) // in place: the node appends after
			require.NoError(t, err)
			require.NoError(t, f.Close())

			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			got := make(chan uint64, 100)
			done := make(chan error, 1)
			go func() {
				done <- lx.Watch(wctx, tc.from, nil, func(l Line) error {
					got <- l.Seq
					return nil
				})
			}()
			next := func() uint64 {
				t.Helper()
				select {
				case seq := <-got:
					return seq
				case err := <-done:
					t.Fatalf("the watcher stopped: %v", err)
				case <-time.After(30 * time.Second):
					t.Fatal("the watcher did not deliver")
				}
				return 0
			}
			for _, want := range tc.want {
				require.Equal(t, want, next())
			}
			_, err = lx.Append(ctx, LevelInfo, "after")
			require.NoError(t, err)
			require.Equal(t, uint64(11), next(), "the watcher did not go on")
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
		})
	}
}

// TestWatchRetained: a watcher that lags behind retention is told which
// lines it lost.
func TestWatchRetained(t *testing.T) {
	lx := newSingle(t, func(c *Config) {
		c.MaxSize = 2048
		c.MaxFiles = 1
	})
	ctx := context.Background()
	_, err := lx.Append(ctx, LevelInfo, "first")
	require.NoError(t, err)
	gate := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- lx.Watch(ctx, 1, nil, func(l Line) error {
			if l.Seq == 1 {
				<-gate
			}
			return nil
		})
	}()
	for k := 0; k < 200; k++ {
		_, err := lx.Append(ctx, LevelInfo, "filler to rotate and retire", "k", k)
		require.NoError(t, err)
	}
	// Two snapshots delete what retention retired.
	require.NoError(t, lx.raft.Snapshot().Error())
	_, err = lx.Append(ctx, LevelInfo, "between")
	require.NoError(t, err)
	require.NoError(t, lx.raft.Snapshot().Error())
	close(gate)
	select {
	case err := <-done:
		require.True(t, errors.Is(err, ErrRetained), "got %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher was not told it lost lines")
	}

	// Asking for a removed position fails at once.
	err = lx.Watch(ctx, 1, nil, func(Line) error { return nil })
	require.ErrorIs(t, err, ErrRetained)
}

// TestWatchReplayEndsWithClose: a watcher replaying a long backlog stops
// within 1,024 lines once Close begins (ErrClosed). Before, it replayed the
// whole backlog to its callback after Close.
func TestWatchReplayEndsWithClose(t *testing.T) {
	lx := newSingle(t, nil)
	ctx := context.Background()
	const total = 5000
	recs := make([]Record, total/5)
	for i := range recs {
		recs[i] = Record{Level: LevelInfo, Msg: "backlog"}
	}
	for range 5 {
		_, err := lx.AppendBatch(ctx, recs)
		require.NoError(t, err)
	}
	first := make(chan struct{})
	release := make(chan struct{})
	n := 0
	done := make(chan error, 1)
	go func() {
		done <- lx.Watch(ctx, 1, nil, func(Line) error {
			n++
			if n == 1 {
				close(first)
				<-release
			}
			return nil
		})
	}()
	<-first
	go func() { _ = lx.Close() }()
	require.Eventually(t, func() bool { return lx.closingCtx.Err() != nil }, 10*time.Second, time.Millisecond)
	close(release)
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher did not stop")
	}
	require.LessOrEqual(t, n, 1025, "lines replayed after Close began")
}

// TestWatchListsDirOnRotation: a watcher that reaches the end of the active
// file (at every batch applied) lists Dir only when a rotation may have
// made a newer file, not each time: Dir may hold thousands of files. It
// still follows a rotation.
func TestWatchListsDirOnRotation(t *testing.T) {
	lx := newSingle(t, func(c *Config) { c.MaxSize = 64 << 10 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan uint64, 1000)
	done := make(chan error, 1)
	go func() {
		done <- lx.Watch(ctx, 0, nil, func(l Line) error { got <- l.Seq; return nil })
	}()
	await := func(seq uint64) {
		t.Helper()
		for {
			select {
			case s := <-got:
				if s >= seq {
					return
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("the watcher did not see line %d", seq)
			}
		}
	}
	_, err := lx.Append(ctx, LevelInfo, "first")
	require.NoError(t, err)
	await(1)
	before := listings.Load()
	for k := range 200 {
		seq, err := lx.Append(ctx, LevelInfo, "one batch at a time", "k", k)
		require.NoError(t, err)
		await(seq)
	}
	require.Zero(t, lx.Stats().Rotations)
	require.Less(t, listings.Load()-before, int64(10), "listings of Dir for 200 batches without a rotation")
	// A rotation: the watcher moves on to the new file.
	big := strings.Repeat("x", 8<<10)
	var last uint64
	for range 10 {
		last, err = lx.Append(ctx, LevelInfo, big)
		require.NoError(t, err)
	}
	require.Positive(t, lx.Stats().Rotations)
	await(last)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}
