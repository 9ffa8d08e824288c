package logx

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// Idle streams are cheap. Every Raft group costs its leader heartbeats to
// each follower (hashicorp/raft sends one every tenth of HeartbeatTimeout)
// and every voter a clock report in the log every 10 s, an fsync on every
// node; with 64 streams that is most of what an idle node does. So a
// stream other than the default one that has neither logged nor applied an
// entry for idleAfter ElectionTimeouts goes idle on this node (node.tend
// checks every round):
//
//   - its Raft HeartbeatTimeout and ElectionTimeout become idleStretch
//     times Config.ElectionTimeout (ReloadConfig): a leader heartbeats
//     idleStretch times less often, and a follower waits that much longer
//     before it calls an election;
//   - it reports its clock every idleClockEvery instead of every 10 s (the
//     log clock still moves, so retention by age still happens).
//
// It is active again at the first entry its producer takes or its apply
// writes: the timeouts go back at once (a shorter HeartbeatTimeout wakes
// Raft's heartbeat and follower timers), and the node reports its clock at
// once, so the log clock that rotation by time goes by is not a minute
// old. The nodes decide each for itself,
// so for a moment a leader may heartbeat at the stretched pace while a
// follower waits only the normal timeout; idleStretch is small enough that
// the stretched heartbeats (every 0.3 to 0.6 ElectionTimeout) still come
// well inside a follower's normal timeout, and these streams' Raft
// LeaderLeaseTimeout is a whole ElectionTimeout, so a leader does not step
// down between two of them. The price: a failed leader of an idle stream
// is replaced later (measured by TestIdleFailoverTime, ElectionTimeout 1 s:
// a median of 7.5 s without a leader against 1.3 s; docs/benchmarks.md);
// the first entry logged on a follower makes that follower's timeout
// normal again.
//
// The default stream does not go idle: its fail-over time stays that of
// the first release.
const (
	idleAfter      = 10 // ElectionTimeouts
	idleStretch    = 3
	idleClockEvery = time.Minute
)

// markActive notes activity: an entry the producer took or apply wrote.
func (lx *Stream) markActive() {
	lx.lastActive.Store(time.Now().UnixNano())
	if lx.idle.Load() && lx.idle.CompareAndSwap(true, false) {
		lx.goFunc(lx.applyTimeouts)
		select { // the last report may be a minute old: report now
		case lx.clockNow <- struct{}{}:
		default:
		}
	}
}

// checkIdle makes the stream idle if it has had no activity for idleAfter
// ElectionTimeouts (node.tend calls it every round).
func (lx *Stream) checkIdle(now time.Time) {
	if lx.name == DefaultStream || lx.idle.Load() ||
		now.Sub(time.Unix(0, lx.lastActive.Load())) < idleAfter*lx.cfg.ElectionTimeout {
		return
	}
	if lx.idle.CompareAndSwap(false, true) {
		lx.applyTimeouts()
	}
}

// applyTimeouts sets Raft's heartbeat and election timeouts by whether the
// stream is idle now: idleStretch or 1 times Config.ElectionTimeout. Calls
// are serialized and each applies the current state, so the last one
// leaves the right timeouts whatever order they ran in.
func (lx *Stream) applyTimeouts() {
	lx.timeoutsMu.Lock()
	defer lx.timeoutsMu.Unlock()
	k := time.Duration(1)
	if lx.idle.Load() {
		k = idleStretch
	}
	err := lx.raftCall(func() error {
		rc := lx.raft.ReloadableConfig()
		rc.HeartbeatTimeout, rc.ElectionTimeout = k*lx.cfg.ElectionTimeout, k*lx.cfg.ElectionTimeout
		return lx.raft.ReloadConfig(rc)
	})
	if err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
		lx.logf("logx: setting Raft's timeouts (idle: %v): %v", k != 1, err)
	}
}
