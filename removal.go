package logx

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Checking a "removed" notice. After RemoveServer commits, the leader sends
// the removed node a "removed" control request, so that it stops taking
// entries and stops its Raft, which would otherwise call elections nobody
// answers. Anyone who can open a control connection can send that request
// too, so a node does not take it on trust. Nor can it check it locally:
// hashicorp/raft stops replicating to a removed server at once, so the node
// usually never receives the entry that removed it and its configuration
// still lists it. It asks the other members of its latest configuration
// for their status instead, and honours the notice only if a majority of
// that configuration's other voters (the configuration the removal
// committed in: hashicorp/raft counts a change in the configuration it
// makes), the leader among them, answer, as the member it dialled, with a
// configuration that does not list this node. Otherwise it ignores the
// notice (Stats.IgnoredRemovals, and a line on LogOutput). A majority of
// all the voters, this node counted, could never be reached with two
// voters, nor with four while one other was down.

// Bounds of one check: up to removalCheckRounds rounds of status requests
// to every other member at once (each bounded by Config.ForwardTimeout),
// removalCheckWait apart at first, doubling. Members that had not yet
// appended the configuration change when the notice came (it commits
// before all have) agree by a later round. While some other voter leaves
// this node out and none lists it, but the removal is not confirmed (the
// leader that sent the notice went down and the next is not elected yet,
// or too few voters answer: in a cluster of three the other voter may be
// the only one), the check goes on past those rounds, up to
// removalLeaderWait apart, until it is confirmed or a voter lists this
// node: a node that ignored a genuine notice would never get another, and
// would call elections for good.
const (
	removalCheckRounds = 5
	removalCheckWait   = 50 * time.Millisecond
	removalLeaderWait  = 10 * time.Second
)

// removalNotice has a notice that this node was removed checked, in the
// background: by a check of its own, or, if one is running, by one more
// once that ends (a genuine notice that came during a check of forged
// ones was dropped).
func (lx *Stream) removalNotice() {
	if lx.removed.Load() {
		return
	}
	lx.recheckRemoval.Store(true)
	if !lx.checkingRemoval.CompareAndSwap(false, true) {
		return // the running check takes it
	}
	started := lx.goFunc(func() {
		for {
			for lx.recheckRemoval.Swap(false) && !lx.removed.Load() {
				lx.checkRemoval()
			}
			lx.checkingRemoval.Store(false)
			// A notice that came between the last Swap and the Store saw
			// the check running: take it, unless another check has.
			if !lx.recheckRemoval.Load() || !lx.checkingRemoval.CompareAndSwap(false, true) {
				return
			}
		}
	})
	if !started { // Close began
		lx.checkingRemoval.Store(false)
	}
}

// checkRemoval asks the other members, round after round, until a majority
// of voters confirm the removal, the rounds run out, or Close begins. On
// confirmation the node stops taking entries and stops its Raft.
func (lx *Stream) checkRemoval() {
	ctx := lx.closingCtx
	wait := removalCheckWait
	var verdict string
	for round := 0; ; round++ {
		if round > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, removalLeaderWait)
		}
		if lx.seams.removalRound != nil {
			lx.seams.removalRound(round)
		}
		var confirmed, unsettled bool
		confirmed, unsettled, verdict = lx.removalConfirmed()
		if ctx.Err() != nil {
			return
		}
		if confirmed {
			if !lx.removed.Swap(true) {
				lx.markRemoved()
				lx.logf("logx: this node was removed from the cluster (%s); Raft stops", verdict)
				_ = lx.shutdownRaft() // Close reports its error
			}
			return
		}
		if round+1 < removalCheckRounds {
			continue
		}
		if !unsettled {
			break
		}
		if round+1 == removalCheckRounds {
			lx.logf("logx: a notice that this node was removed: %s; asking again until it is confirmed or a voter lists this node", verdict)
		}
	}
	lx.stats.ignoredRemovals.Add(1)
	lx.logf("logx: ignoring a notice that this node was removed: %s", verdict)
}

// removalConfirmed asks every other member of this node's latest
// configuration for its status, at once, and reports whether a majority
// of its other voters, the leader among them, no longer list this node,
// or whether it is unsettled (removalVerdict), with a summary of the
// answers.
func (lx *Stream) removalConfirmed() (confirmed, unsettled bool, verdict string) {
	f := lx.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, false, fmt.Sprintf("reading the configuration: %v", err)
	}
	var others []raft.Server
	for _, s := range f.Configuration().Servers {
		if string(s.ID) != lx.cfg.Addr {
			others = append(others, s)
		}
	}
	ans := make([]removalAnswer, len(others))
	var wg sync.WaitGroup
	for i, s := range others {
		wg.Go(func() { ans[i] = lx.listsMeNot(string(s.Address)) })
	}
	wg.Wait()
	if ok, unsettled, verdict := removalVerdict(others, ans); ok || lx.closingCtx.Err() != nil {
		return ok, unsettled, verdict
	}
	// The leader the confirming members name may be one this node's
	// configuration lacks (its log stalled while a member was added and
	// the leadership moved to it): its word counts too.
	if l := unlistedLeader(others, ans, lx.cfg.Addr); l != "" {
		others = append(others, raft.Server{ID: raft.ServerID(l), Address: raft.ServerAddress(l), Suffrage: raft.Nonvoter})
		ans = append(ans, lx.listsMeNot(l))
	}
	return removalVerdict(others, ans)
}

// unlistedLeader returns the leader a confirming voter names, if neither
// self nor one of others, the members asked; "" if none.
func unlistedLeader(others []raft.Server, ans []removalAnswer, self string) string {
	for i, a := range ans {
		l := a.leaderAddr
		if !a.gone || others[i].Suffrage != raft.Voter || l == "" || l == self ||
			slices.ContainsFunc(others, func(s raft.Server) bool { return string(s.Address) == l }) {
			continue
		}
		return l
	}
	return ""
}

// removalAnswer is what one member said of this node: that its
// configuration leaves it out (gone), whether it leads, or no answer.
type removalAnswer struct {
	gone, leader bool
	leaderAddr   string // the leader it names
	err          error
}

// removalVerdict decides a removal check from the answers of the other
// members: a majority of the other voters must leave this node out, and
// the leader among them. The leader's configuration is the newest, and
// it sent the notice; without it, members whose configuration is older
// than this node's (a voter just added, whose entry they are still
// appending; a member restored from a snapshot taken before this node
// joined, catching up) could confirm a forged notice. A genuine removal
// has a leader that leaves this node out: the leader removes itself only
// after it has handed over, as a follower of the next. A member this node
// lists as a non-voter (promoted and elected since) counts as that leader
// only if a voter that leaves this node out names it as its leader: a
// non-voter's own word, with voters whose configuration is older than
// this node's, would confirm a forged notice.
//
// unsettled is whether the check should go on past its rounds
// (checkRemoval): not confirmed, but some voter leaves this node out and
// no voter lists it (the others do not answer, or none leads).
func removalVerdict(others []raft.Server, ans []removalAnswer) (confirmed, unsettled bool, verdict string) {
	voters, gone, listingVoters, leader := 0, 0, 0, false
	var listing, silent []string
	named := map[string]bool{} // the leaders voters that leave this node out name
	for i, s := range others {
		if a := ans[i]; a.err == nil && a.gone && s.Suffrage == raft.Voter && a.leaderAddr != "" {
			named[a.leaderAddr] = true
		}
	}
	for i, s := range others {
		if s.Suffrage == raft.Voter {
			voters++
		}
		switch a := ans[i]; {
		case a.err != nil:
			silent = append(silent, fmt.Sprintf("%s (%v)", s.Address, a.err))
		case !a.gone:
			listing = append(listing, string(s.Address))
			if s.Suffrage == raft.Voter {
				listingVoters++
			}
		default:
			leader = leader || a.leader && (s.Suffrage == raft.Voter || named[string(s.Address)])
			if s.Suffrage == raft.Voter {
				gone++
			}
		}
	}
	need := voters/2 + 1
	verdict = fmt.Sprintf("%d of %d other voters confirm, %d needed", gone, voters, need)
	if gone >= need && !leader {
		verdict += ", but none of them leads"
	}
	if len(listing) > 0 {
		verdict += "; still listed by " + strings.Join(listing, ", ")
	}
	if len(silent) > 0 {
		verdict += "; no answer from " + strings.Join(silent, ", ")
	}
	confirmed = gone >= need && leader
	return confirmed, !confirmed && gone > 0 && listingVoters == 0, verdict
}

// listsMeNot asks the member at addr for its status and reports whether its
// configuration (its Peers and itself) leaves this node out, and whether
// it leads.
func (lx *Stream) listsMeNot(addr string) removalAnswer {
	st, _, err := lx.remoteStatus(lx.closingCtx, addr)
	if err != nil {
		return removalAnswer{err: err}
	}
	gone, err := leavesOut(st, addr, lx.cfg.Addr)
	return removalAnswer{gone: gone, leader: st.State == "Leader", leaderAddr: st.Leader, err: err}
}

// leavesOut reports whether st, the status the member at addr sent, has
// a configuration without self. A member whose group has not run (a node
// emptied and waiting for the leader's first entries, with no
// configuration at all) is no answer: counted, two such voters made a
// forged notice stop the only node that held the log.
func leavesOut(st Stats, addr, self string) (bool, error) {
	if st.Addr != addr {
		return false, fmt.Errorf("answered as %q", st.Addr)
	}
	if st.CommitIndex == 0 && st.AppliedIndex == 0 && st.LastIndex == 0 {
		return false, errors.New("no configuration yet")
	}
	return !listed(st, self), nil
}
