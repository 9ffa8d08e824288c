package logx

import (
	"context"
	"sync"
)

// A node whose Raft state for a stream is empty (a new node, or one whose
// Dir was emptied: a lost disk, a damaged Raft log) bootstraps the stream's
// group with its voters only if no peer answers that the group already
// runs. With a configuration of its own it can be elected, and two such
// nodes are a majority of three: while the cluster's leader backs off
// from them (hashicorp/raft waits up to about 10 s between tries to a
// peer that failed), they could elect one of themselves, over a log of
// their own, and commit entries there that the leader's log overwrites as
// soon as it reaches them: acknowledged, then lost. Without a
// configuration a node never stands for election; it waits for the
// leader's entries, as a joining node does, and votes as Raft asks.

// clusterRuns asks the peers among addrs (this node left out) for their
// status of this stream, at once, and returns the address of one whose
// group has a history (a term, a commit index or a leader), "" if none
// answers so within the election timeout (the first start of a cluster:
// the others are not up, or have no history yet either).
func (lx *Stream) clusterRuns(addrs []string) string {
	ctx, cancel := context.WithTimeout(lx.closingCtx, lx.cfg.ElectionTimeout)
	defer cancel()
	var mu sync.Mutex
	var found string
	var wg sync.WaitGroup
	for _, addr := range addrs {
		if addr == lx.cfg.Addr {
			continue
		}
		wg.Go(func() {
			st, _, err := lx.remoteStatus(ctx, addr)
			if err != nil || st.Term == 0 && st.CommitIndex == 0 && st.Leader == "" {
				return
			}
			mu.Lock()
			if found == "" {
				found = addr
				cancel() // one is enough
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return found
}
