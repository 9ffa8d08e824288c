package main

import (
	"context"
	"errors"
	"sync"
)

// ingestBudget bounds the bytes of /ingest bodies held at once: read (and
// parsed) and not yet committed. A request takes its share before it
// reads its body (its Content-Length, or maxIngestBody when it sends
// none), and a body is read before its request waits for a turn to commit
// (ingestAtOnce), so that a slow upload holds its share for at most
// ingestBodyTimeout, and never a turn the others need.
const ingestBudget = 32 << 20

// byteBudget is a pool of bytes that requests take from before they read
// and give back when they are done.
type byteBudget struct {
	mu    sync.Mutex
	free  int64
	freed chan struct{} // closed, and replaced, when bytes are given back
}

func newByteBudget(n int64) *byteBudget {
	return &byteBudget{free: n, freed: make(chan struct{})}
}

// take waits until n bytes are free and takes them, or returns ctx's
// error.
func (b *byteBudget) take(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// give returns n bytes to the pool.
func (b *byteBudget) give(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// errIngestBusy: the budget stayed spent for as long as a request waits.
var errIngestBusy = errors.New("busy: too many /ingest bytes in flight; try again")
