package main

import (
	"context"
	"errors"
	"io"
	"sync"
)

// ingestBudget bounds the bytes of /ingest bodies held at once: read and
// not yet committed. A request takes from it the bytes it reads, as they
// arrive, and never waits while it holds any: one that finds the budget
// spent partway through its body is answered "busy" at once, nothing
// committed (honest requests holding parts of the budget would otherwise
// wait on one another). Before it reads, a request waits, holding nothing,
// until the budget has room for its body (ingestFreeFirst of one of
// unknown length; ingestWait at most): room it sees, not reserves, so
// requests that start together can still find it taken partway. So a request
// that sends only its headers holds nothing, and one that stalls holds
// what it sent, for ingestBodyTimeout at most; the bodies are read before
// their requests wait for a turn to commit (ingestAtOnce), so a slow
// upload never holds a turn.
const ingestBudget = 32 << 20

// byteBudget is a pool of bytes that requests take from as they read and
// give back when they are done.
type byteBudget struct {
	size  int64 // all of it
	mu    sync.Mutex
	free  int64
	freed chan struct{} // closed, and replaced, when bytes are given back
}

func newByteBudget(n int64) *byteBudget {
	return &byteBudget{size: n, free: n, freed: make(chan struct{})}
}

// waitFree waits until at least n bytes are free, taking none, or returns
// ctx's error.
func (b *byteBudget) waitFree(ctx context.Context, n int64) error {
	for {
		b.mu.Lock()
		free, freed := b.free, b.freed
		b.mu.Unlock()
		if free >= n {
			return nil
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// tryTake takes n bytes if they are free.
func (b *byteBudget) tryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.free < n {
		return false
	}
	b.free -= n
	return true
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

// errIngestBusy: the budget is spent.
var errIngestBusy = errors.New("busy: too many /ingest bytes in flight; try again")

// budgetReader reads r and takes from b every byte it has read, failing
// with errIngestBusy when b has not enough; held is what it has taken,
// which its owner gives back.
type budgetReader struct {
	r    io.Reader
	b    *byteBudget
	held int64
}

func (r *budgetReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		if !r.b.tryTake(int64(n)) {
			return 0, errIngestBusy
		}
		r.held += int64(n)
	}
	return n, err
}

// take takes n more bytes from b for what the body became once parsed
// (ingestAttrCost), failing as Read does when b has not enough.
func (r *budgetReader) take(n int64) bool {
	if !r.b.tryTake(n) {
		return false
	}
	r.held += n
	return true
}
