package logx

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCallersShareBatches: callers of Append that call again as soon as
// they are answered go into one batch together (callerWait), instead of
// splitting into two groups that take turns. Four callers on one node
// would then fill about two batches per round of four entries; with the
// wait, one. The wait is raised to half a second here so that a slow
// machine cannot make a caller miss it: the test measures the batching,
// not the timing.
func TestCallersShareBatches(t *testing.T) {
	const callers, total = 4, 800
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) {
		sm.callerWait = 500 * time.Millisecond
		sm.clockEvery = time.Hour
	})
	lx := c.nodes[0] // leader or follower: each node's committer batches
	before := lx.Stats()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for i := next.Add(1); i <= total; i = next.Add(1) {
				if _, err := lx.Append(ctx, LevelInfo, "shared", "i", i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	after := lx.Stats()
	entries, batches := after.Committed-before.Committed, after.Batches-before.Batches
	if entries != total {
		t.Fatalf("committed %d entries, want %d", entries, total)
	}
	// About total/callers = 200 batches with the wait, 400 without; the
	// first and last rounds may be partial.
	if batches > total/3 {
		t.Errorf("%d entries took %d batches (%.2f entries a batch): the callers did not share batches", entries, batches, float64(entries)/float64(batches))
	}
	t.Logf("%d entries in %d batches", entries, batches)
}
