package logx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestCallersShareBatches: callers of Append that call again as soon as
// they are answered go into one batch together (callerWait), instead of
// splitting into two groups that take turns. Four callers on one node
// would then fill about two batches per round of four entries; with the
// wait, one. The wait is raised to 20 ms here so that a slow machine (the
// race detector on two cores) cannot make a caller miss it: the test
// measures the batching, not the timing.
func TestCallersShareBatches(t *testing.T) {
	const callers, total = 4, 800
	c := newTestClusterSeams(t, 3, func(_ *Config, sm *seams) {
		sm.callerWait = 20 * time.Millisecond
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

// TestRejoin checks the committer's wait for callers step by step against
// callerWait's rules: it waits while fewer callers are back than it
// answered, time is left and the last came back less than callerGap ago;
// a wait that ends with fewer than half of them back, or at the limit
// without all of them, is a miss, after which it skips 1, 2, 4, ... up to
// maxRejoinSkip batches; a wait in which they all come back resets that.
func TestRejoin(t *testing.T) {
	const long, none = time.Hour, time.Duration(-1)
	caller := func(epoch uint64) *entry { return &entry{w: &waiter{epoch: epoch}} }
	var r rejoin

	// Nobody was answered: no wait.
	r.answered(0, 1)
	if r.keepWaiting(long, long) {
		t.Fatal("waits with nobody answered")
	}
	// Two answered: wait until both are back; an older Append, an Info
	// and an entry of an AppendBatch's members do not count.
	r.answered(2, 2)
	r.joined(caller(1))
	r.joined(&entry{})
	if !r.keepWaiting(long, long) {
		t.Fatal("stopped waiting with nobody back")
	}
	r.joined(caller(2))
	if !r.keepWaiting(long, long) {
		t.Fatal("stopped waiting with one of two back")
	}
	r.joined(caller(2))
	if r.keepWaiting(long, long) {
		t.Fatal("waits with both back")
	}
	// The gap ends a wait with half back: not a miss, the next batch
	// waits.
	r.answered(2, 3)
	r.joined(caller(3))
	if r.keepWaiting(long, none) || r.skip != 0 {
		t.Fatalf("half back: skip %d, want 0", r.skip)
	}
	// Misses: the skips double up to maxRejoinSkip.
	want := 1
	for miss := 0; miss < 10; miss++ {
		r.answered(4, uint64(10+miss))
		r.joined(caller(uint64(10 + miss)))
		if r.keepWaiting(none, long) {
			t.Fatal("waits with no time left")
		}
		if r.skip != want {
			t.Fatalf("miss %d: skip %d, want %d", miss+1, r.skip, want)
		}
		for i := 0; i < want; i++ {
			r.answered(4, 99)
			if r.keepWaiting(long, long) {
				t.Fatalf("miss %d: waited in skipped batch %d of %d", miss+1, i+1, want)
			}
		}
		want = min(2*want, maxRejoinSkip)
	}
	// A wait in which they come back ends the skipping.
	r.answered(1, 100)
	r.joined(caller(100))
	if r.keepWaiting(long, long) || r.backoff != 0 {
		t.Fatalf("all back: backoff %d, want 0", r.backoff)
	}
	r.answered(2, 101)
	if r.keepWaiting(none, long); r.skip != 1 {
		t.Fatalf("after a success, a miss skips %d batches, want 1", r.skip)
	}

	// Three callers answered a second ago, then the entries given (each
	// joined now), in a fresh rejoin.
	const half = 500 * time.Millisecond
	answeredAgo := func(epoch uint64, ents ...*entry) *rejoin {
		r := &rejoin{}
		r.answered(3, epoch)
		r.at = r.at.Add(-time.Second)
		r.last = r.at
		for _, e := range ents {
			r.joined(e)
		}
		return r
	}

	// The gap: with time left, a wait ends once nobody has come back for
	// gap, since the answer or the last caller back; ended so with fewer
	// than half back it is a miss like any other.
	if g := answeredAgo(200, caller(200), caller(200)); g.keepWaiting(long, none) || g.skip != 0 {
		t.Fatalf("gap over with two of three back: waits on, or skip %d, want 0", g.skip)
	}
	if g := answeredAgo(201); g.keepWaiting(long, none) || g.skip != 1 {
		t.Fatalf("gap over with nobody back: waits on, or skip %d, want 1 (a miss)", g.skip)
	}
	// A caller back extends the gap; an Info or an older Append does not.
	if g := answeredAgo(300, &entry{}, caller(299)); g.keepWaiting(long, half) {
		t.Fatal("an Info or an older Append extended the gap")
	}
	g := answeredAgo(301, caller(301), caller(301))
	if !g.keepWaiting(long, half) {
		t.Fatal("a caller back did not extend the gap")
	}
	// Callers that keep coming until the limit, yet not all of them: a
	// miss (new callers' Appends more than the answered coming back).
	if g.keepWaiting(half, long) || g.skip != 1 {
		t.Fatalf("limit reached with two of three back: waits on, or skip %d, want 1 (a miss)", g.skip)
	}
}

// TestNoteLost: a failed batch's losses that Flush reports are its
// asynchronous callers' entries only: not an Append's, not the other
// records of an AppendBatch (its caller has the error), not logx's own
// (a sampling summary); an unknown outcome is counted apart.
func TestNoteLost(t *testing.T) {
	lx := &Stream{}
	w := &waiter{}
	ents := []*entry{{}, {}, {w: w}, {w: w, member: true}, {member: true}, {own: true}}
	lx.noteLost(ents, errors.New("rejected"))
	require.Equal(t, lossCount{lost: 2}, lx.stats.lost.load())
	lx.noteLost(ents, fmt.Errorf("%w: gave up", ErrOutcomeUnknown))
	require.Equal(t, lossCount{lost: 2, unknown: 2}, lx.stats.lost.load())
	err := lx.flushSeen.reportSince(lossCount{}, lx.stats.lost.load())
	require.ErrorIs(t, err, ErrEntriesLost)
	require.ErrorContains(t, err, "2 asynchronous entries logged through this node not committed, and 2 whose outcome is unknown")
	require.NoError(t, lx.flushSeen.reportSince(lx.flushSeen.load(), lx.stats.lost.load()), "reported once")
}
