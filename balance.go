package logx

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Leaders spread over the nodes: each stream elects its own leader, and
// elections alone can leave one node leading most streams (the first node
// up, or the one that stayed up while another restarted). Every node with
// more than one stream checks every balanceEvery how many streams each
// voter leads, as it sees them; a node that leads more than its share,
// ceil(S/N) for S streams on N voters, hands one of its streams over to
// the voter that leads the fewest, if that one leads less than its share
// and is fit to lead: its heartbeats do not fail, and it answers a status
// request for that stream within an ElectionTimeout with no write error,
// no catch-up under way and little lag. A target is not picked again for
// balanceCooldown, whether the handover worked or not, so a node whose
// disk fails after it took a stream over is not handed streams in a loop.
// One handover per node per round: counts seen by different nodes may be
// a round apart, and the next round corrects what a race overshot. A
// stream without a known leader, or a round in which the streams disagree
// on the voters, changes nothing.

// balanceEvery is how often a node looks at the leaders, and
// balanceCooldown how long a target rests after a handover to it, in
// ElectionTimeouts; balanceMaxLag is the most Raft entries a target may
// trail by.
const (
	balanceEvery    = 2
	balanceCooldown = 10
	balanceMaxLag   = 64
)

// balanceOnce hands one stream over if this node leads more than its share
// (see above), and reports the stream it handed over, or nil.
func (n *node) balanceOnce() *Stream {
	n.rounds.Add(1)
	streams := n.list()
	if len(streams) < 2 {
		return nil
	}
	self := streams[0].cfg.Addr
	var voters []string
	counts := map[string]int{}
	led := []*Stream{}
	for _, s := range streams {
		vs, err := s.serverAddrs(true)
		if err != nil || len(vs) == 0 || (voters != nil && !slices.Equal(vs, voters)) {
			return nil
		}
		voters = vs
		leader, mine := s.leader()
		if leader == "" {
			return nil
		}
		counts[leader]++
		if mine && leader == self {
			led = append(led, s)
		}
	}
	if len(voters) < 2 || !slices.Contains(voters, self) {
		return nil
	}
	share := (len(streams) + len(voters) - 1) / len(voters)
	if len(led) <= share {
		return nil
	}
	s := led[len(led)-1] // the last opened: the default stream moves last
	failing := map[string]bool{}
	for _, l := range led {
		for _, p := range l.peers() {
			if p.Failing {
				failing[p.Addr] = true
			}
		}
	}
	now := time.Now()
	var cands []string
	for _, v := range voters {
		if v != self && counts[v] < share && !failing[v] && now.After(n.cooldown[v]) {
			cands = append(cands, v)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	target := slices.MinFunc(cands, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[a], counts[b]), cmp.Compare(a, b))
	})
	maps.DeleteFunc(n.cooldown, func(_ string, until time.Time) bool { return now.After(until) }) // addresses change over a year
	n.cooldown[target] = now.Add(balanceCooldown * n.cfg.ElectionTimeout)
	if !s.handTo(target, func() {
		n.mu.Lock()
		n.handedTo[target]++
		n.mu.Unlock()
	}) {
		return nil
	}
	return s
}

// serverAddrs returns the addresses of the servers of the stream's Raft
// configuration, sorted: its voters only, or all.
func (lx *Stream) serverAddrs(votersOnly bool) ([]string, error) {
	f := lx.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []string
	for _, sv := range f.Configuration().Servers {
		if !votersOnly || sv.Suffrage == raft.Voter {
			out = append(out, string(sv.Address))
		}
	}
	slices.Sort(out)
	return out, nil
}

// bootstrapConfig is the first configuration of a group whose voters are
// addrs.
func bootstrapConfig(addrs []string) raft.Configuration {
	var c raft.Configuration
	for _, a := range addrs {
		c.Servers = append(c.Servers, raft.Server{ID: raft.ServerID(a), Address: raft.ServerAddress(a)})
	}
	return c
}

// leader is the address of the stream's leader as this node knows it
// ("" for none), and whether this node is it.
func (lx *Stream) leader() (addr string, mine bool) {
	leader, _ := lx.raft.LeaderWithID()
	return string(leader), lx.raft.State() == raft.Leader
}

// handTo hands the stream's leadership to target if target is fit to
// take it (it answers a status request for this stream within an
// ElectionTimeout, with no write error, no catch-up and a lag of at most
// balanceMaxLag), calling trying first, and reports whether the handover
// was made.
func (lx *Stream) handTo(target string, trying func()) bool {
	ctx, cancel := context.WithTimeout(context.Background(), lx.cfg.ElectionTimeout)
	defer cancel()
	stop := context.AfterFunc(lx.closingCtx, cancel)
	defer stop()
	st, _, err := lx.remoteStatus(ctx, target)
	if err != nil || st.WriteError != "" || st.CatchingUp || st.Lag > balanceMaxLag || st.Stream != lx.name {
		return false
	}
	trying()
	lx.wake() // active first, as transferLeadership (idle.go)
	err = lx.raftCall(func() error {
		return lx.raft.LeadershipTransferToServer(raft.ServerID(target), raft.ServerAddress(target)).Error()
	})
	if err != nil {
		if !errors.Is(err, raft.ErrRaftShutdown) {
			lx.logf("logx: handing leadership to %s to spread the leaders: %v", target, err)
		}
		return false
	}
	return true
}
