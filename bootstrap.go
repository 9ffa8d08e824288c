package logx

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/logx-dev/logx/internal/wire"
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
// A member counts only if its group has run: a commit index or an applied
// index above 0, or a Raft log past its first entry (the configuration a
// bootstrap writes). A member restarted reports no commit index until a
// leader reaches it, and, before its first checkpoint, no applied index;
// its log tells. A log past its first entry was written by a leader,
// which a majority elected, and the member answering is configured: it
// can be elected again (this node, unconfigured, grants its vote) and will
// reach this node. A node that only bootstrapped (its log the
// configuration's one entry, whatever elections it lost) does not count:
// the others bootstrap too, as on every first start, rather than wait for
// it with no configuration.
//
// Only a node that started with empty Raft state asks (a new node, one
// whose Dir was emptied, one that joins): for its default stream (unless
// it joins), and for every other stream it opens while it runs, declared
// or from the catalog. A node emptied and started with Join would
// otherwise bootstrap a declared stream with the catalog's voters once
// the catalog reached it (bootstrapIfEmpty), and two such nodes, a
// majority of those voters, could elect one of themselves there (the
// chaos harness's lose-disks fault found it). Any other node creates a
// stream the catalog adds with no asking, as before: the others are
// opening it at the same moment, and have nothing to tell.
//
// A node answers from the moment it listens, before its streams are open:
// a status request for a stream it is opening gets "starting", with
// whether the stream has Raft state (answerStarting). While a member
// answers that it is starting with Raft state (a whole cluster restarted
// at once, the node that holds the log slow to open it), the node asks
// again rather than bootstrap, until that member answers in full or
// stops answering; New waits meanwhile. Until it has decided, the stream
// takes no Raft connection (raftLayer): a vote granted meanwhile would
// store a term, and hashicorp/raft then refuses to bootstrap.
//
// It fails open otherwise: if no member answers that it runs the group
// within the election timeout, and none is starting with Raft state (the
// first start of a cluster, whose other nodes are not up or have no
// history yet; a leader down, not listening yet, cut off or too slow to
// answer; Peers that no longer name a member), the node bootstraps as
// before.

// clusterRuns asks the peers among addrs (this node left out) for their
// status of this stream, at once, and returns the address of one that
// runs the group with this node in its configuration (runsWith), with the
// members it lists; "" if none answers so within the election timeout
// and none is starting with Raft state. While one is, it asks again,
// every fifth of an election timeout, until that one answers in full or
// stops answering. The error is ErrClosed if the stream or the node
// closes first: the stream must then not bootstrap.
func (lx *Stream) clusterRuns(addrs, voters []string) (string, []string, error) {
	ctx, cancel := lx.untilClose()
	defer cancel()
	lx.mux.m.asking.Add(1)
	defer lx.mux.m.asking.Add(-1)
	var logged time.Time
	for {
		found, members, starting, differs := lx.askPeers(ctx, addrs, voters)
		switch {
		case ctx.Err() != nil:
			return "", nil, fmt.Errorf("%w while asking its peers whether to bootstrap stream %q", ErrClosed, lx.name)
		case found == "" && differs != nil:
			return "", nil, differs
		case found != "" || starting == "":
			return found, members, nil
		case time.Since(logged) >= 10*time.Second:
			logged = time.Now()
			lx.logf("logx: this node's Raft state is empty and %s, which has Raft state, is still starting: waiting for it before deciding whether to bootstrap", starting)
		}
		t := time.NewTimer(max(lx.cfg.ElectionTimeout/5, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// untilClose is a context that ends when the stream's Close begins, or the
// node's (which closes the default stream last, and a stream it opened
// after its start only once its tend has stopped): for the waits of a
// stream's start, and of tend's work on the default stream.
func (lx *Stream) untilClose() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(lx.closingCtx)
	if lx.hooks.stopping == nil {
		return ctx, cancel
	}
	stop := context.AfterFunc(lx.hooks.stopping, cancel)
	return ctx, func() { stop(); cancel() }
}

// askPeers is one round of clusterRuns's questions, each bounded by the
// election timeout: the member that runs the group with this node and
// the members it lists, or else the address of one that answered that
// it is starting with Raft state ("" if none). differs is an error if a
// peer bootstrapped the group with other voters than this node would
// (voters), or runs it without this node (peersDiffer).
func (lx *Stream) askPeers(ctx context.Context, addrs, voters []string) (found string, members []string, starting string, differs error) {
	ctx, cancel := context.WithTimeout(ctx, lx.cfg.ElectionTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, addr := range addrs {
		if addr == lx.cfg.Addr {
			continue
		}
		wg.Go(func() {
			st, _, err := lx.remoteStatus(ctx, addr)
			mu.Lock()
			defer mu.Unlock()
			var se *startingError
			switch {
			case errors.As(err, &se):
				if se.Addr == addr && se.RaftState && starting == "" {
					starting = addr
				}
			case err != nil:
			case !runsWith(st, addr, lx.cfg.Addr):
				if differs == nil {
					differs = lx.peersDiffer(st, addr, voters)
				}
			case found == "":
				found, members = addr, []string{addr}
				for _, p := range st.Peers {
					members = append(members, p.Addr)
				}
				cancel() // one is enough
			}
		})
	}
	wg.Wait()
	return found, members, starting, differs
}

// startingStatus is a node's answer to a status request for a stream it
// is to open and has not opened yet: its Addr, and whether the stream has
// Raft state.
type startingStatus struct {
	Addr      string `json:"addr"`
	RaftState bool   `json:"raft_state"`
}

// startingError is remoteStatus's error for a startingStatus answer; msg
// is the answer's own text.
type startingError struct {
	startingStatus
	msg string
}

func (e *startingError) Error() string { return e.msg }

// isOpen reports whether stream name's endpoint is open.
func (m *mux) isOpen(name string) bool {
	m.mu.Lock()
	e := m.endpoints[name]
	m.mu.Unlock()
	if e == nil {
		return false
	}
	select {
	case <-e.ready:
		return true
	default:
		return false
	}
}

// answerStarting answers a status request for stream name, which is not
// open, if this node is starting it (m.stateOf): at once, with whether
// the stream has Raft state (answered true: c is done with). Anything
// else is left to the stream's handler, once it is open, which reads the
// request from the connection returned. Only a request of at most
// maxStartingRequest bytes is read here.
func (m *mux) answerStarting(c net.Conn, name string) (_ net.Conn, answered bool) {
	stream := cmp.Or(name, DefaultStream)
	if _, ok := m.stateOf(stream); !ok {
		return c, false
	}
	var raw bytes.Buffer
	r := io.TeeReader(c, &raw)
	replay := &replayConn{Conn: c, r: io.MultiReader(&raw, c)}
	_ = c.SetReadDeadline(time.Now().Add(m.headerTimeout))
	data, err := wire.ReadFrame(r, nil, maxStartingRequest)
	_ = c.SetReadDeadline(time.Time{})
	var tooBig *wire.FrameSizeError
	if errors.As(err, &tooBig) {
		return replay, false // not a status request: only its header is read
	}
	if err != nil {
		return nil, true
	}
	var req struct{ Op string }
	if json.Unmarshal(data, &req) != nil || req.Op != "status" || m.isOpen(name) {
		return replay, false
	}
	raftState, ok := m.stateOf(stream)
	if !ok {
		return replay, false
	}
	_ = c.SetWriteDeadline(time.Now().Add(m.headerTimeout))
	_ = writeJSONFrame(c, controlResponse{
		Error:    fmt.Sprintf("logx: %s is starting: stream %q is not open yet", m.addr, stream),
		Starting: &startingStatus{Addr: m.addr, RaftState: raftState}})
	if m.answered != nil {
		m.answered()
	}
	return nil, true
}

// maxStartingRequest bounds the control request answerStarting reads: a
// status request is a few dozen bytes.
const maxStartingRequest = 4 << 10

// noteState records whether stream name, which this node is opening, has
// Raft state: newStream tells it twice, from its directory before it
// opens anything, then as Raft's stores say.
func (m *mux) noteState(name string, raftState bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[name] = raftState
}

// forgetState drops what noteState recorded of stream name: it is open,
// or failed to open.
func (m *mux) forgetState(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.states, name)
}

// stateOf says whether this node is starting stream name (ok), and if so
// whether the stream has Raft state: as newStream noted it, or, for a
// stream the node is to open that it has not begun to, from its directory
// (m.starting). Not once the node closes. While a stream of this node
// asks its peers whether to bootstrap, a stream it has not begun to open
// answers without Raft state: two nodes that each hold a stream the other
// asks about, and open them in the opposite order, would otherwise wait
// for each other for good.
func (m *mux) stateOf(name string) (raftState, ok bool) {
	m.mu.Lock()
	st, noted := m.states[name]
	closed := m.closed
	m.mu.Unlock()
	switch {
	case closed || m.starting == nil:
		return false, false
	case noted:
		return st, true
	}
	st, ok = m.starting(name)
	return st && m.asking.Load() == 0, ok
}

// replayConn is a connection whose reads return what was read from it
// already (r starts with it) before the rest.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// raftStateOnDisk reports whether the stream in dir has Raft state: files
// in its Raft log's or its snapshots' directory. It is read before the
// node opens the stream (opening the log creates files).
func raftStateOnDisk(dir string) bool {
	for _, sub := range []string{"raft", "snapshots"} {
		if ents, err := os.ReadDir(filepath.Join(dir, sub)); err == nil && len(ents) > 0 {
			return true
		}
	}
	return false
}

// runsWith reports whether st, the status the node at addr sent, says it
// runs its group with self in its configuration: it answered as addr, its
// Raft has not stopped, its group has run (a commit index, an applied
// index, or a log past the bootstrap's entry), and its configuration
// lists self, so its leader will reach self. A removed node, a node of another cluster, a node that only
// bootstrapped and one that only voted (without a configuration) do not.
func runsWith(st Stats, addr, self string) bool {
	return st.Addr == addr && st.State != "Shutdown" && hasRun(st) && listed(st, self)
}

// listed reports whether the configuration st lists has self in it.
func listed(st Stats, self string) bool {
	return slices.ContainsFunc(st.Peers, func(p PeerStats) bool { return p.Addr == self })
}

// hasRun reports whether st says its group has run: a commit index, an
// applied index, or a Raft log past the configuration a bootstrap writes.
func hasRun(st Stats) bool { return st.CommitIndex > 0 || st.AppliedIndex > 0 || st.LastIndex > 1 }

// peersDiffer is the error for a stream that is not to bootstrap with
// voters (its Peers, or for a stream of the catalog the catalog's voters)
// because st, the status the node at addr sent, says that node
// bootstrapped the group with other voters and the group has not run (its
// Raft log is the configuration's one entry, which Peers list), or that
// the group has run without this node in its configuration (a node
// started with other Peers elected itself; or this node was removed, or
// was never added, and should start with Join); nil otherwise, and for a
// node whose Raft has stopped (removed). Each node would keep the
// configuration it bootstrapped with: hashicorp/raft writes it as the
// log's first entry, which a leader's entries never replace, so the nodes
// would count other voters, for elections and for the log clock
// (clock.go), and their files part; a node that ran alone would have its
// Raft log cut back by the others' leader, its files keeping what it
// wrote alone. (The check after the start, checkVoters, finds what this
// one cannot: nodes that asked each other before either had
// bootstrapped.)
func (lx *Stream) peersDiffer(st Stats, addr string, voters []string) error {
	if st.Addr != addr || st.State == "Shutdown" {
		return nil
	}
	theirs, ours := sortedVoters(st, addr), sortedSet(voters)
	switch {
	case hasRun(st) && listed(st, lx.cfg.Addr):
		return nil // it runs the group with this node (runsWith)
	case hasRun(st):
		return fmt.Errorf("logx: not bootstrapping stream %q: %s runs it without this node, with the voters %v (a node that is not a member starts with Join, and AddNode adds it; or the nodes were started with other Peers)", lx.name, addr, theirs)
	case st.LastIndex != 1 || slices.Equal(theirs, ours):
		return nil
	}
	return fmt.Errorf("logx: not bootstrapping stream %q: %s bootstrapped it with the voters %v, and this node would with %v: start every node with the same Peers (a node keeps the voters it bootstrapped with until its Dir is emptied)", lx.name, addr, theirs, ours)
}

// skipBootstrap records that this stream did not bootstrap because peer
// runs its group with members: until the leader's entries give it a
// configuration, Raft connections are accepted from those members and
// Peers only (raftPeerOK), not from any certificate of the CA.
func (lx *Stream) skipBootstrap(peer string, members []string) {
	lx.runsWith.Store(&members)
	lx.logf("logx: this node's Raft state is empty and %s already runs the group with it: not bootstrapping; waiting for its leader", peer)
}

// decide lets Raft connections reach this stream's Raft (raftLayer): it
// has Raft state, joins, or has decided whether to bootstrap.
func (lx *Stream) decide() { lx.decideOnce.Do(func() { close(lx.decided) }) }

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

// askFirst is clusterRuns for a stream about to bootstrap with voters (its
// Raft state is empty): always for the default stream, for another only
// when the default stream started empty too (nodeFresh). Otherwise the
// stream is new (the catalog added it; the other nodes are opening it
// too) and "" is returned at once.
func (lx *Stream) askFirst(voters []string) (string, []string, error) {
	asks := voters
	if lx.name != DefaultStream {
		if lx.hooks.nodeFresh == nil || !lx.hooks.nodeFresh() {
			return "", nil, nil
		}
		// The catalog's voters are the stream's first ones: members added
		// since (who may be the only ones with its log) are in the default
		// stream's configuration.
		if lx.hooks.defaultServers != nil {
			servers, err := lx.defaultMembers()
			if err != nil {
				return "", nil, err
			}
			for _, a := range servers {
				if !slices.Contains(asks, a) {
					asks = append(slices.Clip(asks), a)
				}
			}
		}
	}
	found, members, err := lx.clusterRuns(asks, voters)
	if err == nil {
		err = lx.seams.open(lx.name, "asked")
	}
	return found, members, err
}

// defaultMembers returns the default stream's members, once it knows
// them. The catalog can reach a node with the restore of a snapshot,
// which hashicorp/raft makes before it takes the snapshot's
// configuration: asked meanwhile, the default stream knew no member, and
// the stream asked only the catalog's voters (all emptied, in a chaos
// run, beside the added member that held the log), then bootstrapped.
func (lx *Stream) defaultMembers() ([]string, error) {
	ctx, cancel := lx.untilClose()
	defer cancel()
	start, logged := time.Now(), time.Now()
	for {
		if m := lx.hooks.defaultServers(); len(m) > 0 {
			return m, nil
		}
		if time.Since(logged) >= 10*time.Second {
			logged = time.Now()
			lx.logf("logx: this node's Raft state is empty and the default stream knows no member yet (%v): waiting for its configuration before deciding whether to bootstrap", time.Since(start).Round(time.Second))
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w while waiting for the default stream's members, to ask them whether to bootstrap stream %q", ErrClosed, lx.name)
		case <-t.C:
		}
	}
}

// sortedVoters is the voters of the configuration st, the status the
// node at addr sent, lists, that node included, sorted.
func sortedVoters(st Stats, addr string) []string {
	voters := []string{addr}
	for _, p := range st.Peers {
		if p.Voter {
			voters = append(voters, p.Addr)
		}
	}
	return sortedSet(voters)
}

// sortedSet is a sorted copy of addrs.
func sortedSet(addrs []string) []string {
	s := slices.Clone(addrs)
	slices.Sort(s)
	return s
}

// checkVoters is the check after the start for what peersDiffer checks
// before it: nodes that started at once, each asking before the other had
// bootstrapped, can bootstrap with other voters. A follower whose state
// machine applied the first configuration entry (index 1: the one a
// bootstrap writes) and none since asks its leader's status, on its own
// goroutine, once it knows a leader. If the leader's last applied
// configuration is the first too and has other voters, this node logs
// that and asks the leader to commit its configuration again (the control
// operation "voters", at most once every 10 s on the leader): every node
// then applies the leader's, at an index past 1, and counts the same
// voters from there on. It checks no more once this node's last applied
// configuration is another (or none since it started: its voters came
// from a checkpoint or a snapshot, and no check is made), or the leader's
// answer shows the same voters or another configuration; a failed ask is
// tried again at the next call. Called by tend every balance round.
func (lx *Stream) checkVoters() {
	if lx.votersChecked.Load() || !lx.ready() {
		return
	}
	v := lx.fsm.voters.Load()
	leader, _ := lx.raft.LeaderWithID()
	switch {
	case v == nil || len(v.voters) == 0, leader == "", string(leader) == lx.cfg.Addr:
		return // not yet; a leader's followers check
	case v.index != 1:
		lx.votersChecked.Store(true)
		return
	case !lx.checkingVoters.CompareAndSwap(false, true):
		return
	}
	lx.goFunc(func() {
		defer lx.checkingVoters.Store(false)
		ctx, cancel := context.WithTimeout(lx.closingCtx, lx.cfg.ElectionTimeout)
		defer cancel()
		st, _, err := lx.remoteStatus(ctx, string(leader))
		if err != nil {
			return // asked again at the next call
		}
		theirs := sortedSet(st.Voters)
		if st.Addr != string(leader) || st.ConfigIndex != 1 || slices.Equal(theirs, v.voters) {
			lx.votersChecked.Store(true)
			return
		}
		err = lx.control(ctx, controlRequest{Op: "voters"})
		if _, ok := onceEvery(&lx.votersDiffered, time.Minute); ok {
			extra := slices.DeleteFunc(slices.Clone(theirs), func(a string) bool { return slices.Contains(v.voters, a) })
			missing := slices.DeleteFunc(slices.Clone(v.voters), func(a string) bool { return slices.Contains(theirs, a) })
			lx.logf("logx: stream %q: this node and its leader %s bootstrapped with other voters (their Peers differ): the leader's have %v that this node's lack, and lack %v; asked the leader to commit its configuration again, so that every node counts the leader's voters (error: %v). Give every node the same Peers; remove a voter that is no node with RemoveNode (logx remove), and add a missing node with AddNode", lx.name, leader, extra, missing, err)
		}
	})
}
