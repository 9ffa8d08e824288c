package logx

import (
	"sync"

	"github.com/hashicorp/raft"
)

// verifiedTransport is a stream's Raft transport with one rule of the Raft
// paper's AppendEntries restored on the receiving side: a follower advances
// its commit index to min(leaderCommit, index of the last new entry).
// hashicorp/raft v1.8.0 takes min(leaderCommit, its own last index)
// instead (raft.go, appendEntries), and so can commit, and apply, entries
// past those the request checked against the leader's log: a deposed
// leader's entries that no majority held. Say node 1 led, wrote entries
// 911-914 in its term and lost its lease before any follower had them;
// node 2 leads the next term and commits its own 911-915. A request to
// node 1 whose previous entry is 910 (which matches) and that carries no
// entries, or fewer than reach 911, with leaderCommit 915 (the leader's
// replication goroutine set its end before it appended the rest, and went
// back through refusals meanwhile) had node 1 apply its own 911-914, lines
// no other node has, and skip node 2's; its files then differed for good.
// TestRaftLogReadErrorLeaderCannotSend found it (the follower's reads
// failing made it refuse the requests that would have cut its entries);
// the same class of fault is etcd's #1203, copycat's #265, CCF's #8172.
//
// The rule is applied to each request before Raft's main loop takes it
// (Consumer): leaderCommit is lowered to the request's previous index plus
// its entries. The leader's next request, or its next empty one once those
// are stored (previous index = this node's last), carries the rest, so a
// follower's commit is never held back for long. Heartbeats (no previous
// index, no commit index) take Raft's fast path and are untouched.
type verifiedTransport struct {
	*raft.NetworkTransport
	rpcs chan raft.RPC
	done chan struct{}
	once sync.Once
}

func newVerifiedTransport(t *raft.NetworkTransport) *verifiedTransport {
	v := &verifiedTransport{NetworkTransport: t, rpcs: make(chan raft.RPC), done: make(chan struct{})}
	go v.relay(t.Consumer())
	return v
}

// Consumer is where Raft takes its requests: those of the network
// transport, with verifiedCommit applied.
func (v *verifiedTransport) Consumer() <-chan raft.RPC { return v.rpcs }

// Close stops the relay and closes the network transport.
func (v *verifiedTransport) Close() error {
	v.once.Do(func() { close(v.done) })
	return v.NetworkTransport.Close()
}

func (v *verifiedTransport) relay(in <-chan raft.RPC) {
	for {
		select {
		case rpc := <-in:
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok {
				verifiedCommit(req)
			}
			select {
			case v.rpcs <- rpc:
			case <-v.done:
				return
			}
		case <-v.done:
			return
		}
	}
}

// verifiedCommit lowers req's commit index to the last index the request
// checks against the leader's log: its previous entry's, plus its entries
// (a leader sends them in order, from the one after the previous entry),
// and no further than its last entry's index (a peer that sent them out
// of order).
func verifiedCommit(req *raft.AppendEntriesRequest) {
	end := req.PrevLogEntry + uint64(len(req.Entries))
	if n := len(req.Entries); n > 0 && req.Entries[n-1] != nil {
		end = min(end, req.Entries[n-1].Index)
	}
	if req.LeaderCommitIndex > end {
		req.LeaderCommitIndex = end
	}
}
