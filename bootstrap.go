package logx

import (
	"context"
	"slices"
	"sync"
)

// A node whose Raft state for a stream is empty (a new node, or one whose
// Dir was emptied: a lost disk, a damaged Raft log) does not bootstrap the
// stream's group when a member answers that it runs the group with this
// node in its configuration. With a configuration of its own a node can
// be elected, and two emptied nodes are a majority of three: while the
// cluster's leader backs off from them (hashicorp/raft waits up to about
// 10 s between tries to a peer that failed), they could elect one of
// themselves, over a log of their own, and commit entries there that the
// leader's log overwrites as soon as it reaches them: acknowledged, then
// lost. Without a configuration a node never stands for election; it
// waits for the leader's entries, as a joining node does, and votes as
// Raft asks (hashicorp/raft grants votes when it has no configuration).
//
// A member counts only if its group has committed (a commit index or an
// applied index above 0): its configuration is then on a majority, and
// whichever of them leads will reach this node. A node that only
// bootstrapped (term 1, nothing committed) does not count: the others
// bootstrap too, as on every first start, rather than wait for it with
// no configuration (if it died before it committed, a node that had voted
// for it could never bootstrap: Raft refuses once a term is stored).
//
// Only a node that started with empty Raft state asks (a new node, or one
// whose Dir was emptied): for its default stream, and, if that one found
// the cluster running (it did not bootstrap), for every stream it opens
// while it runs. Any other node creates a stream the catalog adds with
// no asking, as before: the others are opening it at the same moment, and
// would hold the question until their own open.
//
// It fails open: if no such member answers within the election timeout
// (the first start of a cluster, whose other nodes are not up or have no
// history yet; a leader cut off or too slow; a member still starting;
// Peers that no longer name a member), the node bootstraps as before.

// clusterRuns asks the peers among addrs (this node left out) for their
// status of this stream, at once, and returns the address of one that
// runs the group with this node in its configuration (runsWith), with the
// members it lists; "" if none answers so within the election timeout.
func (lx *Stream) clusterRuns(addrs []string) (string, []string) {
	ctx, cancel := context.WithTimeout(lx.closingCtx, lx.cfg.ElectionTimeout)
	defer cancel()
	if lx.hooks.stopping != nil { // the node's Close, for a stream opened later
		defer context.AfterFunc(lx.hooks.stopping, cancel)()
	}
	var mu sync.Mutex
	var found string
	var members []string
	var wg sync.WaitGroup
	for _, addr := range addrs {
		if addr == lx.cfg.Addr {
			continue
		}
		wg.Go(func() {
			st, _, err := lx.remoteStatus(ctx, addr)
			if err != nil || !runsWith(st, addr, lx.cfg.Addr) {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if found == "" {
				found, members = addr, []string{addr}
				for _, p := range st.Peers {
					members = append(members, p.Addr)
				}
				cancel() // one is enough
			}
		})
	}
	wg.Wait()
	return found, members
}

// runsWith reports whether st, the status the node at addr sent, says it
// runs its group with self in its configuration: it answered as addr, its
// Raft has not stopped, its group has committed (a commit index or an
// applied index), and its configuration lists self, so its leader will
// reach self. A removed node, a node of another cluster, a node that only
// bootstrapped and one that only voted (without a configuration) do not.
func runsWith(st Stats, addr, self string) bool {
	return st.Addr == addr && st.State != "Shutdown" &&
		(st.CommitIndex > 0 || st.AppliedIndex > 0) &&
		slices.ContainsFunc(st.Peers, func(p PeerStats) bool { return p.Addr == self })
}

// skipBootstrap records that this stream did not bootstrap because peer
// runs its group with members: until the leader's entries give it a
// configuration, Raft connections are accepted from those members and
// Peers only (raftPeerOK), not from any certificate of the CA.
func (lx *Stream) skipBootstrap(peer string, members []string) {
	lx.runsWith.Store(&members)
	lx.logf("logx: this node's Raft state is empty and %s already runs the group with it: not bootstrapping; waiting for its leader", peer)
}

// skippedBootstrap reports whether this stream did not bootstrap because a
// member runs its group (skipBootstrap).
func (lx *Stream) skippedBootstrap() bool { return lx.runsWith.Load() != nil }

// knownMembers returns the addresses of the members of this stream's
// configuration, or, while it has none, those a peer listed when this
// stream did not bootstrap (nil if neither).
func (lx *Stream) knownMembers() []string {
	if addrs, _ := lx.serverAddrs(false); len(addrs) > 0 {
		return addrs
	}
	if m := lx.runsWith.Load(); m != nil {
		return *m
	}
	return nil
}

// askFirst is clusterRuns for a stream about to bootstrap (its Raft state
// is empty): always for the default stream, for another only when the
// default stream found the cluster running (nodeFresh). Otherwise the
// stream is new (the catalog added it; the other nodes are opening it
// too) and "" is returned at once.
func (lx *Stream) askFirst(addrs []string) (string, []string) {
	if lx.name != DefaultStream && (lx.hooks.nodeFresh == nil || !lx.hooks.nodeFresh()) {
		return "", nil
	}
	return lx.clusterRuns(addrs)
}
