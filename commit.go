package logx

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// How followers learn that entries are committed, and why an idle cluster
// costs almost nothing.
//
// A leader tells its followers its commit index only in AppendEntries
// requests: those that carry new entries, and, when none come, one per
// follower every CommitTimeout (hashicorp/raft's heartbeats do not carry
// it). With a short CommitTimeout an idle leader sends a hundred requests a
// second that say nothing new; that was 6 % of a core on an idle leader
// with 10 ms. logx sets it to commitTimeout: under traffic every round
// carries the index anyway, and when traffic stops a follower applies the
// last entries up to commitTimeout (at most twice it) later.
//
// Where somebody waits for that, a follower asks: Flush on a follower whose
// last batch the leader has committed but this node has not yet applied
// asks the leader, after nudgeAfter, to pass its commit index on. The
// leader does so by committing a Raft barrier (an entry the logs never
// see), whose AppendEntries carry the index. Requests that arrive while a
// barrier is in flight share the next one, so a flood of them costs at most
// one barrier at a time.
const (
	commitTimeout = 500 * time.Millisecond
	nudgeAfter    = 5 * time.Millisecond
)

// waitApplied waits until this node has applied Raft index idx, asking the
// leader to pass its commit index on if that takes longer than nudgeAfter.
// idx must be committed (the leader answered for it). It returns
// errWaitAborted when ctx ends first.
func (lx *Logx) waitApplied(ctx context.Context, idx uint64) error {
	tctx, cancel := context.WithTimeout(ctx, nudgeAfter)
	err := lx.fsm.waitApplied(tctx.Done(), idx)
	cancel()
	if !errors.Is(err, errWaitAborted) || ctx.Err() != nil {
		return err
	}
	if leader, local := lx.route(); !local && leader != "" {
		nctx, ncancel := context.WithTimeout(ctx, lx.cfg.ElectionTimeout)
		// On failure the commit index still comes within commitTimeout.
		_, _ = lx.sendControl(nctx, leader, controlRequest{Op: "commit"})
		ncancel()
	}
	return lx.fsm.waitApplied(ctx.Done(), idx)
}

// barrierWithin commits a barrier and waits for it at most d: a leader
// that closes passes its commit index on before it hands over, so that
// its successor and every follower apply all it acknowledged even if the
// cluster then lacks a quorum. A barrier left waiting ends with Raft.
func (lx *Logx) barrierWithin(d time.Duration) {
	done := make(chan struct{})
	f := lx.raft.Barrier(d)
	go func() {
		_ = f.Error()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// barriers coalesces the leader's commit barriers: a request joins the
// next barrier to start, and one runs at a time.
type barriers struct {
	mu      sync.Mutex
	next    *barrierCall // the barrier new requests join; nil if none waits
	running bool         // a goroutine is running barriers
}

type barrierCall struct {
	done chan struct{}
	err  error
}

// passCommitIndex commits a barrier, shared with the requests that arrive
// while one is in flight, and waits for it or for ctx. This node must lead.
func (lx *Logx) passCommitIndex(ctx context.Context) error {
	b := &lx.barriers
	b.mu.Lock()
	c := b.next
	if c == nil {
		c = &barrierCall{done: make(chan struct{})}
		b.next = c
	}
	if !b.running {
		if !lx.goFunc(lx.runBarriers) {
			b.next = nil
			b.mu.Unlock()
			return ErrClosed
		}
		b.running = true
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runBarriers commits barriers while requests wait for one.
func (lx *Logx) runBarriers() {
	b := &lx.barriers
	for {
		b.mu.Lock()
		c := b.next
		b.next = nil
		if c == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		if lx.raft.State() != raft.Leader {
			c.err = raft.ErrNotLeader
		} else {
			c.err = lx.raft.Barrier(lx.cfg.ForwardTimeout).Error()
		}
		close(c.done)
	}
}
