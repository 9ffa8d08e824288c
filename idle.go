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
// stream that has neither logged nor applied an entry for idleAfter
// ElectionTimeouts goes idle on this node (node.tend checks every round):
//
//   - it reports its clock every idleClockEvery instead of every 10 s (the
//     log clock still moves, so retention by age still happens), once it
//     knows the voters (until then each report asks for them,
//     ensureVoters);
//   - while this node leads it, its Raft HeartbeatTimeout and
//     ElectionTimeout become idleStretch times Config.ElectionTimeout
//     (ReloadConfig): the leader heartbeats idleStretch times less often
//     (every 0.2 to 0.4 ElectionTimeout instead of 0.1 to 0.2);
//   - a stream other than the default one stretches them on every node,
//     followers included, so a follower waits that much longer before it
//     calls an election.
//
// It is active again at the first entry its producer takes or its apply
// writes: the timeouts go back at once (a shorter HeartbeatTimeout wakes
// Raft's heartbeat and follower timers), and the node reports its clock at
// once, so the log clock that rotation by time goes by is not a minute
// old. A leadership transfer makes it active first (Raft bounds a transfer
// by the ElectionTimeout). The nodes decide each for itself, and a node
// that starts or stops leading an idle stream sets its timeouts again (the
// observer in stream.go), so a leader may heartbeat at the stretched pace
// while a follower waits only the normal timeout, and every stream's Raft
// LeaderLeaseTimeout is one ElectionTimeout. idleStretch is 2 so that the
// longest gap between two contacts a follower hears still fits in one
// ElectionTimeout when one heartbeat in between fails (Raft then waits a
// new interval after a 10 ms pause: at most 2 × 0.4 of it): neither the
// leader's lease nor a follower's patience runs out over one lost
// heartbeat, as with the default timeouts (a hostile review found that a
// threefold stretch let a leader that depends on one follower, a 3-node
// cluster during a rolling restart, step down for a single failed one).
//
// The default stream's followers keep the normal timeouts, so its
// fail-over time stays that of the first release (TestFailoverTime,
// TestIdleFailoverTime): an idle default stream costs its leader about 40 %
// less CPU than an active one (logx-bench's idle workload,
// docs/benchmarks.md).
// The other streams pay for their cheaper followers: a failed leader of an
// idle stream is replaced later (TestIdleFailoverTime, docs/benchmarks.md);
// the first entry logged on a follower makes that follower's timeout normal
// again.
const (
	idleAfter      = 10 // ElectionTimeouts
	idleStretch    = 2
	idleClockEvery = time.Minute
)

// markActive notes activity: an entry the producer took or apply wrote.
func (lx *Stream) markActive() {
	lx.lastActive.Store(monoNanos())
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
func (lx *Stream) checkIdle() {
	if lx.idle.Load() ||
		time.Duration(monoNanos()-lx.lastActive.Load()) < idleAfter*lx.cfg.ElectionTimeout {
		return
	}
	if lx.idle.CompareAndSwap(false, true) {
		lx.applyTimeouts()
	}
}

// applyTimeouts sets Raft's heartbeat and election timeouts by whether the
// stream is idle now and whether this node leads it (idleTimeouts). Calls
// are serialized and each applies the current state, so the last one
// leaves the right timeouts whatever order they ran in.
func (lx *Stream) applyTimeouts() {
	lx.timeoutsMu.Lock()
	defer lx.timeoutsMu.Unlock()
	idle := lx.idle.Load()
	err := lx.raftCall(func() error {
		rc := lx.raft.ReloadableConfig()
		rc.HeartbeatTimeout, rc.ElectionTimeout = idleTimeouts(lx.cfg.ElectionTimeout, lx.name == DefaultStream, idle, lx.raft.State() == raft.Leader)
		return lx.raft.ReloadConfig(rc)
	})
	if err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
		lx.logf("logx: setting Raft's timeouts (idle: %v): %v", idle, err)
	}
}

// idleTimeouts is a stream's Raft HeartbeatTimeout and ElectionTimeout:
// et (Config.ElectionTimeout) while it is active; idleStretch times et
// while it is idle, except on the default stream's followers: that stream
// stretches them only while this node leads, where they set the heartbeat
// pace (a leader has no election timer, and Raft wants ElectionTimeout at
// least HeartbeatTimeout), not a follower's patience.
func idleTimeouts(et time.Duration, isDefault, idle, leading bool) (heartbeat, election time.Duration) {
	if idle && (leading || !isDefault) {
		return idleStretch * et, idleStretch * et
	}
	return et, et
}

// wake makes the stream active now, with its normal timeouts: a
// leadership transfer goes first (Raft bounds it by ElectionTimeout,
// stretched while idle).
func (lx *Stream) wake() {
	lx.lastActive.Store(monoNanos())
	if lx.idle.CompareAndSwap(true, false) {
		lx.applyTimeouts()
	}
}

// observeRole sets the timeouts again when this node starts or stops
// leading an idle stream (Raft's observer calls it on every change of
// role; the work goes to a goroutine, off Raft's).
func (lx *Stream) observeRole(o raft.Observation) {
	if _, ok := o.Data.(raft.RaftState); ok {
		lx.confGen.Add(1) // another leader may have changed the membership meanwhile (commitRules)
		if lx.idle.Load() {
			lx.goFunc(lx.applyTimeouts)
		}
	}
}
