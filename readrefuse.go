package logx

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// A stream's answers to reads of its Raft log that fail (logguard.go):
// what its Raft may not send meanwhile, and why.

// raftRefused says why this node's Raft may send nothing now: its dials
// fail, and waitingToRead closes the connections it holds. That is while
// this node leads and a read of an entry it is to apply is being tried
// again (readAgain): its main goroutine is the one waiting, so it cannot
// lead meanwhile, and its heartbeats, which goroutines of their own send,
// would keep its followers from electing a leader that can. It misses its
// lease; once the read works it steps down (or, if it still fails, Raft
// panics). What peers send it is still answered.
//
// Also for a while after a leader's read of an entry it has not applied
// failed, other than as one tried again (cannotReadUnapplied), whatever
// its role by then: once it steps down, it asks for no votes meanwhile.
func (lx *Stream) raftRefused() error {
	g := lx.guard
	if monoNanos() < g.refuseUntil.Load() {
		return errCannotRead
	}
	if g.waiting.Load() > 0 {
		if r := lx.raftPtr.Load(); r != nil && r.State() == raft.Leader {
			return errCannotRead
		}
	}
	return nil
}

// hookGuard gives the guard this stream's answers to reads that fail:
// waitingToRead and cannotReadUnapplied, which refuses for refuseFor
// after each failure once they have gone on for refuseAfter.
func (lx *Stream) hookGuard(g *logGuard, refuseFor, refuseAfter time.Duration) {
	g.onWait, g.cannotSend, g.refuseFor, g.refuseAfter = lx.waitingToRead, lx.cannotReadUnapplied, refuseFor, refuseAfter
}

// cannotReadUnapplied is called when a read of entry index, which this
// node has not applied, failed with err and is not tried again: an
// entry past the commit index, or a damaged one. If this node leads, its
// replication needs the entry for a follower (the entry before those it
// sends, after a restart with a cold cache, say), and hashicorp/raft tries
// such a read again for good while the heartbeats, which goroutines of
// their own send, keep the follower following: with a failing disk, a
// cluster whose followers all needed such entries committed nothing for
// as long as this node lived. Now it sends nothing for refuseFor after
// each such failure (raftRefused; Raft tries the read again within twice
// CommitTimeout, or sooner, so a disk that goes on failing keeps it so),
// and the connections it holds are closed (closeWhileRefused): it misses
// its lease and steps down, and the others, if a majority without it,
// elect a leader among themselves. Meanwhile it asks
// for no votes either: its log may be the longest, and the votes it was
// granted (each resets a follower's timer) elected it again and again.
//
// A failure that passes costs nothing: only one refuseAfter or more after
// the first of its episode refuses (Raft tries again a CommitTimeout to
// twice that later; an episode ends refuseFor after its first failure
// without one refused). Not with one voter: no other node can lead, and
// the non-voters would wait for nothing.
func (lx *Stream) cannotReadUnapplied(index uint64, err error) {
	r := lx.raftPtr.Load()
	if r == nil || r.State() != raft.Leader {
		return
	}
	if v := lx.fsm.voters.Load(); v != nil && len(v.voters) <= 1 {
		return
	}
	g := lx.guard
	now := monoNanos()
	first := g.firstFail.Load()
	if first == 0 || now-first > int64(g.refuseFor) && now >= g.refuseUntil.Load() {
		g.firstFail.Store(now) // a new episode
		return
	}
	if now-first < int64(g.refuseAfter) {
		return
	}
	g.refusals.Add(1)
	g.refuseUntil.Store(now + int64(g.refuseFor))
	lx.transport.CloseStreams()
	if g.closer.CompareAndSwap(false, true) && !lx.goFunc(lx.closeWhileRefused) {
		g.closer.Store(false)
	}
	if _, ok := onceEvery(&g.refuseLog, notFoundLogEvery); ok {
		g.logf("logx: this node leads and cannot read Raft entry %d, which it has not applied and a follower needs: %v; it sends nothing for %v after each such failure, so that another node leads (this is logged at most every %v)",
			index, err, g.refuseFor, notFoundLogEvery)
	}
}

// closeWhileRefused closes the connections Raft holds every 100 ms while
// raftRefused refuses for a failed read (cannotReadUnapplied): one in use
// as they were closed (a heartbeat under way) goes back to Raft's pool
// after, and would carry its heartbeats without a dial.
func (lx *Stream) closeWhileRefused() {
	g := lx.guard
	defer g.closer.Store(false)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for monoNanos() < g.refuseUntil.Load() {
		select {
		case <-t.C:
			lx.transport.CloseStreams()
		case <-lx.closing:
			return
		}
	}
}

var errCannotRead = errors.New("logx: this node cannot read its Raft log, and sends nothing for now so that another node leads")

// waitingToRead is called before each new try of a failed read
// (readAgain): if this node leads, the connections Raft holds to its
// peers are closed (a connection in use then goes back to Raft's pool
// after its request, and the next try closes it), and raftRefused keeps
// it from dialling new ones.
func (lx *Stream) waitingToRead() {
	if lx.raftRefused() != nil {
		lx.transport.CloseStreams()
	}
}
