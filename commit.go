package logx

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// How followers learn that entries are committed, and why an idle cluster
// costs almost nothing.
//
// A leader tells its followers its commit index only in AppendEntries
// requests: those that carry new entries, and, when none come, one per
// follower every CommitTimeout to twice it (hashicorp/raft's heartbeats do
// not carry it). With a short CommitTimeout an idle leader sends each
// follower dozens of requests a second that say nothing new (about 67 with
// 10 ms): 6 % of a core on an idle leader. logx sets it to commitTimeout,
// and under traffic every round carries the index anyway.
//
// When traffic stops, the leader passes the index on itself: once its
// Raft log has not grown for tailAfter and all of it is committed, it
// commits a Raft barrier (an entry the logs never see), whose
// AppendEntries carry the index (passTail). So a follower applies the last
// entries of a burst tailAfter to twice it (and a Raft round) after the
// leader committed them, at the cost of one barrier per burst, and
// CommitTimeout is left only as the fallback, and to retry a follower
// that missed an AppendEntries while nothing else is sent. A trickle of
// lines, each after a pause, would cost a barrier each: passes are at
// least passEvery apart, so a trickle's lines reach the followers within
// about passEvery. An idle stream (idle.go), whose only entries are its
// clock reports, and a cluster of one server pass nothing.
//
// A follower that waits for its own entries asks sooner: Flush on a
// follower whose last batch the leader has committed but this node has not
// yet applied asks the leader, after nudgeAfter, to pass its commit index
// on, and the leader commits a barrier for it. Requests that arrive while
// a barrier is in flight share the next one, so a flood of them costs at
// most one barrier at a time.
const (
	commitTimeout = 2 * time.Second
	tailAfter     = 100 * time.Millisecond
	passEvery     = 500 * time.Millisecond
	nudgeAfter    = 5 * time.Millisecond
)

// armTail tells passTail that this node applied entries: if it leads,
// passTail watches for the end of the traffic. (A new leader applies the
// entries its first one commits, and so arms it too.) It never blocks,
// and costs a follower one atomic load.
func (lx *Stream) armTail() {
	if r := lx.raftPtr.Load(); r == nil || r.State() != raft.Leader {
		return
	}
	select {
	case lx.tailArmed <- struct{}{}:
	default:
	}
}

// passTail runs for the stream's life. Each time armTail wakes it, it
// looks at the Raft log every tailAfter while this node leads, until the
// log has not grown since the last look and all of it is committed. Then
// no AppendEntries sent after the commit may have told the followers, and
// unless a barrier of its own already passed on the newest entry the state
// machine sees (lagTarget), it commits one (no sooner than passEvery after
// the last): appended after that entry was committed, its AppendEntries
// carry the index. A barrier that fails is tried again while this node
// leads. While traffic flows it wakes once every tailAfter.
func (lx *Stream) passTail() {
	after := cmp.Or(lx.seams.tailAfter, tailAfter)
	t := time.NewTimer(after)
	t.Stop()
	done := lx.closingCtx.Done()
	var (
		passed   uint64 // the entry this node's last barrier passed on
		lastPass time.Time
	)
	for {
		select {
		case <-lx.tailArmed:
		case <-done:
			return
		}
		seen, wait := lx.raft.LastIndex(), after
		for {
			t.Reset(wait)
			wait = after
			select {
			case <-t.C:
			case <-done:
				return
			}
			if lx.raft.State() != raft.Leader || lx.idle.Load() {
				break
			}
			last := lx.raft.LastIndex()
			if last != seen || lx.raft.CommitIndex() < last {
				seen = last
				continue
			}
			target := lx.lagTarget()
			if target <= passed || !lx.hasPeers() {
				break
			}
			if d := passEvery - time.Since(lastPass); d > 0 {
				wait = d // a trickle: pass it on with the next pass
				continue
			}
			ctx, cancel := context.WithTimeout(lx.closingCtx, lx.cfg.ForwardTimeout)
			err := lx.passCommitIndex(ctx)
			cancel()
			lastPass = time.Now()
			if err == nil {
				passed = target
				break
			}
		}
	}
}

// hasPeers reports whether the Raft configuration has a server other than
// this node, voter or not: only then is there anyone to pass the commit
// index on to.
func (lx *Stream) hasPeers() bool {
	servers, err := lx.serverAddrs(false)
	return err != nil || slices.ContainsFunc(servers, func(a string) bool { return a != lx.cfg.Addr })
}

// waitApplied waits until this node has applied Raft index idx, asking the
// leader to pass its commit index on if that takes longer than nudgeAfter.
// idx must be committed (the leader answered for it). It returns
// errWaitAborted when ctx ends first. The request runs beside the wait and
// is cut short once idx is applied: the leader answers only when its
// barrier is applied, which can take longer than the follower needs.
func (lx *Stream) waitApplied(ctx context.Context, idx uint64) error {
	tctx, cancel := context.WithTimeout(ctx, nudgeAfter)
	err := lx.fsm.waitApplied(tctx.Done(), idx)
	cancel()
	if !errors.Is(err, errWaitAborted) || ctx.Err() != nil {
		return err
	}
	leader, local := lx.route()
	if local || leader == "" {
		return lx.fsm.waitApplied(ctx.Done(), idx)
	}
	nctx, ncancel := context.WithTimeout(ctx, lx.cfg.ElectionTimeout)
	nudged := make(chan struct{})
	go func() {
		defer close(nudged)
		// On failure the commit index still comes: with the leader's pass
		// at the end of the traffic, or within commitTimeout.
		_, _ = lx.sendControl(nctx, leader, controlRequest{Op: "commit"})
	}()
	err = lx.fsm.waitApplied(ctx.Done(), idx)
	ncancel()
	<-nudged
	return err
}

// lagTarget is the last Raft entry at or below the commit index that the
// state machine sees (commands and configurations). Lag is measured to it
// rather than to the commit index: barriers and no-ops never reach the
// files, and a run of them at the end of the log (a flood of commit
// requests) is not lag. (Raft's own applied index will not do: it counts
// entries handed to the state machine, not applied.) Each call looks only
// at the entries committed since the last one, newest first, and stops at
// the first the state machine sees; an entry no longer in the Raft log
// counts as one.
func (lx *Stream) lagTarget() uint64 {
	commit := lx.raft.CommitIndex()
	v := &lx.lagIdx
	v.mu.Lock()
	defer v.mu.Unlock()
	if lx.raftStopped.Load() { // Close may be closing the log (closeLog holds v.mu)
		return v.visible
	}
	if commit < v.commit { // a restore from a snapshot
		v.commit, v.visible = 0, 0
	}
	var l raft.Log
	for idx := commit; idx > v.commit; idx-- {
		if err := lx.logs.GetLog(idx, &l); err != nil || l.Type != raft.LogBarrier && l.Type != raft.LogNoop {
			v.visible = idx
			break
		}
	}
	v.commit = commit
	return v.visible
}

// lagIndex is lagTarget's memory.
type lagIndex struct {
	mu              sync.Mutex
	commit, visible uint64 // the commit index last looked at; the entry found
}

// lag is how many Raft entries this node's files trail lagTarget by, with
// the two indexes it compares.
func (lx *Stream) lag() (lag, target, applied uint64) {
	target, applied = lx.lagTarget(), lx.fsm.appliedIndex()
	if target > applied {
		lag = target - applied
	}
	return lag, target, applied
}

// barrierWithin commits a barrier and waits for it at most d: a leader
// that closes passes its commit index on before it hands over, so that
// its successor and every follower apply all it acknowledged even if the
// cluster then lacks a quorum.
func (lx *Stream) barrierWithin(d time.Duration) {
	done := make(chan struct{})
	go func() { // shutdownRaft waits for it
		_ = lx.raftCall(func() error { return lx.raft.Barrier(d).Error() })
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
func (lx *Stream) passCommitIndex(ctx context.Context) error {
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
func (lx *Stream) runBarriers() {
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
		// A follower's Raft answers ErrNotLeader.
		c.err = lx.raftCall(func() error { return lx.raft.Barrier(lx.cfg.ForwardTimeout).Error() })
		close(c.done)
	}
}
