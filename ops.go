package logx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Operating a node: what Stats adds about peers and lag, and alarms.

// PeerStats is what the leader knows of one other member.
type PeerStats struct {
	Addr  string `json:"addr"`
	Voter bool   `json:"voter"`
	// Failing is set while the leader's heartbeats to the peer fail;
	// LastContact is then when it last answered.
	Failing     bool      `json:"failing"`
	LastContact time.Time `json:"last_contact,omitzero"`
}

// AlarmKind says what an Alarm is about.
type AlarmKind string

const (
	AlarmNoLeader   AlarmKind = "no-leader"   // no leader known for longer than Config.AlarmNoLeader
	AlarmLag        AlarmKind = "lag"         // applied index more than Config.AlarmLag behind the commit index
	AlarmWriteError AlarmKind = "write-error" // writing the files failed; the node stopped applying
)

// An Alarm is raised once when its condition starts and once, with Cleared
// set, when it ends.
type Alarm struct {
	Stream  string // the stream's name (DefaultStream for the default one)
	Kind    AlarmKind
	Cleared bool
	Since   time.Time // when the condition started
	Detail  string
}

// peerWatch tracks the leader's heartbeat failures per peer, from Raft's
// observations.
type peerWatch struct {
	mu      sync.Mutex
	failing map[raft.ServerID]failure
}

// failure is what peerWatch knows of a peer whose heartbeats fail: its
// last contact, and since when (this node's monotonic clock) they fail.
type failure struct{ lastContact, since time.Time }

func (p *peerWatch) observe(o raft.Observation) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch d := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		f, ok := p.failing[d.PeerID]
		if !ok {
			f.since = time.Now()
		}
		f.lastContact = d.LastContact
		p.failing[d.PeerID] = f
	case raft.ResumedHeartbeatObservation:
		delete(p.failing, d.PeerID)
	case raft.LeaderObservation:
		clear(p.failing) // a new term starts with a clean slate
	case raft.PeerObservation:
		// Added or removed: a peer added again starts with no failure,
		// and its new heartbeats report none until one fails (it was
		// marked failing for good when removed while down).
		delete(p.failing, d.Peer.ID)
	}
	return false // nothing for the channel: the filter did the work
}

// forget drops what is recorded of id's failures.
func (p *peerWatch) forget(id raft.ServerID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.failing, id)
}

// failingFor returns the peers whose heartbeats have failed for longer
// than d.
func (p *peerWatch) failingFor(d time.Duration) []raft.ServerID {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []raft.ServerID
	for id, f := range p.failing {
		if time.Since(f.since) > d {
			out = append(out, id)
		}
	}
	return out
}

// peers lists the other members with what the leader knows of them; on a
// follower it lists them without heartbeat information.
func (lx *Stream) peers() []PeerStats {
	f := lx.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	leader := lx.raft.State() == raft.Leader
	lx.peerWatch.mu.Lock()
	defer lx.peerWatch.mu.Unlock()
	var out []PeerStats
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == lx.cfg.Addr {
			continue
		}
		ps := PeerStats{Addr: string(s.Address), Voter: s.Suffrage == raft.Voter}
		if f, ok := lx.peerWatch.failing[s.ID]; ok && leader {
			ps.Failing, ps.LastContact = true, f.lastContact
		}
		out = append(out, ps)
	}
	return out
}

// lastContact is how long ago a follower last heard from the leader (0 on
// the leader, -1 if never).
func (lx *Stream) lastContact() time.Duration {
	if lx.raft.State() == raft.Leader {
		return 0
	}
	last := lx.raft.LastContact()
	if last.IsZero() {
		return -1
	}
	return time.Since(last)
}

// alarmCheckEvery is how often the alarm monitor looks: a tenth of
// AlarmNoLeader, at least 100 ms and at most a second. (It looked every
// 100 ms: ten wake-ups a second per stream on an idle node, more than its
// Raft heartbeats; issue 11.)
func alarmCheckEvery(noLeader time.Duration) time.Duration {
	return min(max(noLeader/10, 100*time.Millisecond), time.Second)
}

// monitor raises and clears alarms until Close.
func (lx *Stream) monitor() {
	defer close(lx.monitorDone)
	if lx.cfg.OnAlarm == nil {
		return
	}
	active := map[AlarmKind]time.Time{}
	var noLeaderSince, lagSince time.Time
	t := time.NewTicker(alarmCheckEvery(lx.cfg.AlarmNoLeader))
	defer t.Stop()
	raise := func(k AlarmKind, on bool, since time.Time, detail string) {
		_, was := active[k]
		switch {
		case on && !was:
			active[k] = since
			lx.cfg.OnAlarm(Alarm{Stream: lx.name, Kind: k, Since: since, Detail: detail})
		case !on && was:
			lx.cfg.OnAlarm(Alarm{Stream: lx.name, Kind: k, Cleared: true, Since: active[k], Detail: detail})
			delete(active, k)
		}
	}
	for {
		select {
		case <-lx.closing:
			return
		case now := <-t.C:
			if addr, _ := lx.raft.LeaderWithID(); addr == "" {
				if noLeaderSince.IsZero() {
					noLeaderSince = now
				}
			} else {
				noLeaderSince = time.Time{}
			}
			raise(AlarmNoLeader, !noLeaderSince.IsZero() && now.Sub(noLeaderSince) >= lx.cfg.AlarmNoLeader,
				noLeaderSince, "no leader known")

			lag, target, applied := lx.lag()
			lagging := lag > lx.cfg.AlarmLag
			if lagging {
				if lagSince.IsZero() {
					lagSince = now
				}
			} else {
				lagSince = time.Time{}
			}
			raise(AlarmLag, lagging, lagSince, "applied index "+strconv.FormatUint(applied, 10)+
				" of committed index "+strconv.FormatUint(target, 10))

			werr := lx.fsm.Err()
			detail := ""
			if werr != nil {
				detail = werr.Error()
			}
			raise(AlarmWriteError, werr != nil, now, detail)
		}
	}
}

// quietRaft drops the messages hashicorp/raft logs at WARN or ERROR that
// are a normal part of a node's life, so that LogOutput shows only what
// needs a look (hclog's LoggerOptions.Exclude):
//
//   - "heartbeat timeout reached, starting election" while this node has
//     never known a leader: the first election after a start;
//   - "no known peers, aborting election": a group started without a
//     configuration, as a node started with Join, or a declared stream
//     the catalog does not list yet (catalog.go), waits to be given one;
//   - "failed to get previous log", "previous log term mis-match" and
//     "appendEntries rejected, sending older logs": a follower that
//     restarted behind the leader, or holding entries of an older term
//     that no majority held (a leader's last ones before the cluster
//     closed: TestQuietStart saw it under -race), which the leader then
//     sends earlier entries (Raft's log matching);
//   - a vote or pre-vote refused because this node's log is more recent
//     than the candidate's, or because this node has a leader (a node that
//     restarted asks before it hears from the leader, and pre-voting exists
//     so that such a refusal disturbs nothing; a vote, not a pre-vote, is
//     refused so when two candidates of one election after a restart race
//     and the other one won: a loaded machine's TestQuietStart saw it), and
//     "clearing log suffix" (entries no majority held, replaced by the new
//     leader's): Raft's elections after a restart;
//   - "failed to decode incoming command" because the connection or the
//     transport was closed: a peer, or this node, shutting down;
//   - "peer has newer term, stopping replication": this leader is deposed
//     by a peer's election. With pre-voting, a peer's term rises only when
//     a majority grants its pre-vote, that is when a majority has no
//     leader: after a start, two first elections racing on a loaded
//     machine (TestQuietStart saw it); a leadership transfer; or followers
//     that lost a leader they knew, which log their own election (below).
//
// Elections after a leader was known, and every other message, still show;
// a leader missing for long raises the AlarmNoLeader alarm.
func quietRaft(level hclog.Level, msg string, args ...any) bool {
	switch msg {
	case "heartbeat timeout reached, starting election":
		return argString(args, "last-leader-addr") == ""
	case "no known peers, aborting election",
		"rejecting pre-vote request since our last index is greater",
		"rejecting pre-vote request since our last term is greater",
		"rejecting pre-vote request since we have a leader",
		"rejecting vote request since we have a leader",
		"rejecting vote request since our last index is greater",
		"rejecting vote request since our last term is greater",
		"clearing log suffix",
		"peer has newer term, stopping replication":
		return true
	case "failed to get previous log", "previous log term mis-match", "appendEntries rejected, sending older logs":
		return level <= hclog.Warn
	case "failed to decode incoming command":
		err, _ := argValue(args, "error").(error)
		return errors.Is(err, net.ErrClosed) || errors.Is(err, raft.ErrTransportShutdown)
	}
	return false
}

// argValue is the value after key in hclog's key-value args (nil if none).
func argValue(args []any, key string) any {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == key {
			return args[i+1]
		}
	}
	return nil
}

// argString is argValue as a string ("" if none). hashicorp/raft passes
// addresses as raft.ServerAddress, a string type without a String method.
func argString(args []any, key string) string {
	v := argValue(args, key)
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// staleNonvoterAfter is how long a non-voter's heartbeats may fail before
// its leader takes it out of the stream (dropStaleNonvoters).
const staleNonvoterAfter = time.Hour

// dropStaleNonvoters takes out of this stream, which this node leads, a
// non-voter whose heartbeats have failed for staleNonvoterAfter (a seam
// may shorten it): an AddNode that stopped after adding the non-voter (its
// context ended, its caller or the node went away) left it listed, and
// nothing else takes it out. The leader would send it heartbeats and dial
// it for good, and a member that does not answer holds the apply rules
// back (rules.go). AddNode adds it again. A change of term starts the
// count again. Called by tend every balance round; the removal runs on a
// goroutine of its own, holding the membership slot.
func (lx *Stream) dropStaleNonvoters() {
	if !lx.ready() || lx.raft.State() != raft.Leader || !lx.dropping.CompareAndSwap(false, true) {
		return
	}
	// Only non-voters: a voter down as long must not take the slot each
	// round (each release counts as a change: confGen, rules.go).
	stale := slices.DeleteFunc(lx.peerWatch.failingFor(lx.staleAfter()), func(id raft.ServerID) bool { return !lx.isNonvoter(id) })
	if len(stale) == 0 || !lx.goFunc(func() { defer lx.dropping.Store(false); lx.dropNonvoters(stale) }) {
		lx.dropping.Store(false)
	}
}

// dropNonvoters removes those of ids that do not answer a status request
// and are still non-voters, under the membership slot (taken only if one
// does not answer). hashicorp/raft reports a heartbeat that resumed only
// after a failure in the same term: one that failed as the term changed
// can stay recorded while the peer answers; its record is dropped.
func (lx *Stream) dropNonvoters(ids []raft.ServerID) {
	ctx, cancel := context.WithTimeout(lx.closingCtx, lx.cfg.ForwardTimeout)
	defer cancel()
	ids = slices.DeleteFunc(ids, func(id raft.ServerID) bool {
		_, _, err := lx.remoteStatus(ctx, string(id))
		if err == nil {
			lx.peerWatch.forget(id)
		}
		return err == nil
	})
	if len(ids) == 0 {
		return
	}
	release, err := lx.confChange(ctx)
	if err != nil {
		return // another change runs: the next round tries again
	}
	defer release()
	after := lx.staleAfter()
	for _, id := range ids {
		if !lx.isNonvoter(id) {
			continue
		}
		err := lx.raftCall(func() error {
			return awaitFuture(ctx, lx.raft.RemoveServer(id, 0, enqueueWithin(ctx)))
		})
		if err != nil {
			lx.logf("logx: taking out the non-voter %s, whose heartbeats have failed for %v: %v", id, after, err)
			return
		}
		lx.logf("logx: took out the non-voter %s, whose heartbeats had failed for %v (an AddNode that stopped midway; AddNode adds it again)", id, after)
	}
}

// staleAfter is staleNonvoterAfter, or the seam's.
func (lx *Stream) staleAfter() time.Duration {
	return cmp.Or(lx.seams.staleNonvoter, staleNonvoterAfter)
}

// isNonvoter reports whether id is a non-voter of this stream's
// configuration.
func (lx *Stream) isNonvoter(id raft.ServerID) bool {
	suf, ok, err := lx.suffrage(string(id))
	return err == nil && ok && suf == raft.Nonvoter
}
