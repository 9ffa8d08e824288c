package logx

import (
	"cmp"
	"errors"
	"slices"

	"github.com/hashicorp/raft"
)

// Leaders spread over the nodes: each stream elects its own leader, and
// elections alone can leave one node leading most streams (the first node
// up, or the one that stayed up while another restarted). Every node with
// more than one stream checks every balanceEvery how many streams each
// voter leads, as it sees them; a node that leads more than its share,
// ceil(S/N) for S streams on N voters, hands one of its streams over to
// the voter that leads the fewest, if that one leads less than its share.
// One handover per node per round: counts seen by different nodes may be
// a round apart, and the next round corrects what a race overshot. A
// stream without a known leader, or a round in which the streams disagree
// on the voters, changes nothing.

// balanceEvery is how often a node looks at the leaders, in ElectionTimeouts.
const balanceEvery = 2

// balanceOnce hands one stream over if this node leads more than its share
// (see above), and reports the stream it handed over, or nil.
func (n *node) balanceOnce() *Stream {
	streams := n.list()
	if len(streams) < 2 {
		return nil
	}
	self := streams[0].cfg.Addr
	var voters []string
	counts := map[string]int{}
	led := []*Stream{}
	for _, s := range streams {
		vs, ok := s.voterAddrs()
		if !ok || (voters != nil && !slices.Equal(vs, voters)) {
			return nil
		}
		voters = vs
		leader, _ := s.raft.LeaderWithID()
		if leader == "" {
			return nil
		}
		counts[string(leader)]++
		if string(leader) == self && s.raft.State() == raft.Leader {
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
	target := slices.MinFunc(voters, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[a], counts[b]), cmp.Compare(a, b))
	})
	if counts[target] >= share {
		return nil
	}
	s := led[len(led)-1] // the last declared: the default stream moves last
	err := s.raftCall(func() error {
		return s.raft.LeadershipTransferToServer(raft.ServerID(target), raft.ServerAddress(target)).Error()
	})
	if err != nil {
		if !errors.Is(err, raft.ErrRaftShutdown) {
			s.logf("logx: stream %q: handing leadership to %s to spread the leaders: %v", s.name, target, err)
		}
		return nil
	}
	return s
}

// voterAddrs returns the addresses of the stream's voters, sorted.
func (lx *Stream) voterAddrs() ([]string, bool) {
	f := lx.raft.GetConfiguration()
	if f.Error() != nil {
		return nil, false
	}
	var out []string
	for _, sv := range f.Configuration().Servers {
		if sv.Suffrage == raft.Voter {
			out = append(out, string(sv.Address))
		}
	}
	slices.Sort(out)
	return out, len(out) > 0
}
