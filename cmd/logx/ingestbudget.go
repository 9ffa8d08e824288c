package main

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// ingestBudget bounds the bytes of /ingest bodies held at once: read (and
// parsed) and not yet committed. A body is read before its request waits
// for a turn to commit (ingestAtOnce), so that a slow upload holds only
// the bytes it has sent, never a turn the others need.
const ingestBudget = 32 << 20

// byteBudget is a pool of bytes that readers take from as they read and
// give back when they are done.
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

// budgetReader reads r, and takes from b every byte it has read (waiting
// up to wait for them each time, then failing with errIngestBusy): a read
// that waits for its sender holds nothing. held is what it has taken,
// which its owner gives back.
type budgetReader struct {
	r    io.Reader
	b    *byteBudget
	ctx  context.Context
	wait time.Duration
	held int64
}

func (r *budgetReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		ctx, cancel := context.WithTimeout(r.ctx, r.wait)
		terr := r.b.take(ctx, int64(n))
		cancel()
		if terr != nil {
			if r.ctx.Err() == nil {
				return 0, errIngestBusy
			}
			return 0, r.ctx.Err()
		}
		r.held += int64(n)
	}
	return n, err
}
