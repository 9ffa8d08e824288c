package logx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Membership: AddNode and RemoveNode change the Raft configuration. Only the
// leader can, so any other node sends the request to the leader over the
// control protocol (control.go), following "not the leader" answers. The
// same protocol answers status requests, which the leader uses to see when
// a node it is adding has caught up.

// ErrNotMember is returned by RemoveNode for an address that is not in the
// cluster's configuration (for example because an earlier call removed it).
var ErrNotMember = errors.New("logx: not a member of the cluster")

// Member is one server of the cluster's Raft configuration.
type Member struct {
	Addr   string `json:"addr"`
	Voter  bool   `json:"voter"`  // false while a node being added catches up
	Leader bool   `json:"leader"` // the current leader, as this node knows it
}

// Members returns the cluster's configuration as this node knows it.
func (lx *Stream) Members() ([]Member, error) {
	f := lx.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("logx: reading the configuration: %w", err)
	}
	leader, _ := lx.raft.LeaderWithID()
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{
			Addr:   string(s.Address),
			Voter:  s.Suffrage == raft.Voter,
			Leader: s.Address == leader,
		})
	}
	return out, nil
}

// AddNode adds the node listening on addr to the cluster: to the Raft
// group of every stream, the default one first. It may be called on any
// member, or on the new node itself (started with Config.Join); each change
// is carried out by the stream's leader. The node is added as a non-voter
// first, so it cannot disturb elections or quorum while it catches up (by
// replaying the Raft log, or by copying files from peers if the log was
// compacted), and is made a voter once it has applied everything that was
// committed when it was added. AddNode returns when the node is a voter of
// every stream (it waits up to a minute for this node to open the streams
// created meanwhile: openCatalogStreams), or with the error that stopped
// it; calling it again resumes (a stream in which the node is already a
// voter is left as is). If ctx has no deadline each stream's change is
// bounded by 10 minutes.
func (lx *Logx) AddNode(ctx context.Context, addr string) error {
	if err := checkAddr(addr); err != nil {
		return fmt.Errorf("logx: AddNode: %w", err)
	}
	// Passes over the streams until one finds none left: a stream created
	// while the node was being added started without it (its voters are
	// the default stream's when it was created).
	added := map[*Stream]bool{}
	var missing map[string]error // streams of the catalog this node did not open, and why
	for opened := false; ; {
		more := false
		for i, s := range lx.node.list() {
			if added[s] || lx.node.deleted(s) {
				continue
			}
			more = true
			if i > 0 {
				// The node opens its declared streams at start, and those
				// of the catalog once it has the default stream's log:
				// wait for it to have this one before changing the group,
				// which would otherwise hold a member that never answers.
				if err := s.awaitStream(ctx, addr); err != nil {
					if lx.node.deleted(s) {
						continue // deleted meanwhile, as RemoveNode allows
					}
					return s.named(err)
				}
			}
			if err := s.control(ctx, controlRequest{Op: "add", Addr: addr}); err != nil {
				if lx.node.deleted(s) {
					continue
				}
				return s.named(err)
			}
			added[s] = true
		}
		if !more {
			if opened {
				if err := lx.node.missingErr(missing, func(s *Stream) bool { return added[s] }); err != nil {
					return fmt.Errorf("logx: AddNode: %s is a member of every stream open here, but not of one this node has not opened: %w", addr, err)
				}
				return nil
			}
			// One more pass once this node has every stream of the
			// catalog open; after the default stream's change a stream
			// created starts with the node.
			missing = lx.node.openCatalogStreams(ctx)
			opened = true
		}
	}
}

// openCatalogStreams waits until this node has opened every live stream of
// the catalog. A stream created while AddNode or RemoveNode ran may still
// need the change: its voters are the default stream's at its creation.
// Its creation comes before the change to the default stream in that
// stream's log, so this node first applies up to the leader's commit
// index, then waits for tend to open what the catalog holds. It returns
// the streams that failed to open here, or did not open within
// catalogStreamsWait (or ctx), each with an error saying why (missingErr).
func (n *node) openCatalogStreams(ctx context.Context) map[string]error {
	def := n.get(DefaultStream)
	if def == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, catalogStreamsWait)
	defer cancel()
	stop := context.AfterFunc(def.closingCtx, cancel)
	defer stop()
	var idx uint64
	if leader, local := def.route(); local {
		idx = def.raft.CommitIndex()
	} else if leader != "" {
		if st, _, err := def.remoteStatus(ctx, leader); err == nil {
			idx = st.CommitIndex
		}
	}
	// This node learns the commit index, then applies up to the last
	// entry at or below it that its state machine sees (lagTarget:
	// barriers and no-ops it never sees).
	for def.raft.CommitIndex() < idx && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	if t := def.lagTarget(); t > 0 && ctx.Err() == nil {
		_ = def.fsm.waitApplied(ctx.Done(), t)
	}
	missing := map[string]error{}
	for name := range live(def.fsm.catalogView()) {
		for n.get(name) == nil {
			if e := def.fsm.catalogView()[name]; e == nil || e.Deleted != 0 {
				break // deleted meanwhile
			}
			n.mu.Lock()
			ch, oerr := n.changed, n.openErr[name]
			n.mu.Unlock()
			if oerr != nil { // tend could not open it here: nothing to wait for
				missing[name] = fmt.Errorf("stream %q failed to open here (%w): restart this node, which opens it, or call on another member", name, oerr)
				break
			}
			select {
			case <-ctx.Done():
				missing[name] = fmt.Errorf("stream %q, created meanwhile, did not open here in time (%w): call again once it is open", name, ctx.Err())
				return missing
			case <-ch:
			case <-time.After(100 * time.Millisecond): // a deletion changes no list
			}
		}
	}
	return missing
}

// missingErr joins the errors of the streams openCatalogStreams found
// missing that the last pass did not reach (done says which it did: one
// may have opened just after the wait) and that are not deleted since;
// nil if none is left.
func (n *node) missingErr(missing map[string]error, done func(*Stream) bool) error {
	cat := n.list()[0].fsm.catalogView()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(missing)) {
		if e := cat[name]; e == nil || e.Deleted != 0 {
			continue
		}
		if s := n.get(name); s != nil && done(s) {
			continue
		}
		errs = append(errs, missing[name])
	}
	return errors.Join(errs...)
}

// catalogStreamsWait bounds openCatalogStreams: the change is made, and
// a node whose apply stalls (a full disk) should not hold the call.
const catalogStreamsWait = time.Minute

// awaitStream waits until the node at addr answers a status request for
// this stream, or ctx ends (bounded by defaultControlTimeout).
func (lx *Stream) awaitStream(ctx context.Context, addr string) error {
	ctx, cancel := context.WithDeadline(ctx, deadlineOr(ctx, defaultControlTimeout))
	defer cancel()
	stop := context.AfterFunc(lx.closingCtx, cancel)
	defer stop()
	wait := 20 * time.Millisecond
	for {
		st, _, err := lx.remoteStatus(ctx, addr)
		if err == nil && st.Stream == lx.name {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logx: AddNode: %s has no stream %q (declare it in its Config.Streams, as on every node): %w (last: %v)", addr, lx.name, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// RemoveNode removes the node at addr from the cluster: from the Raft group
// of every stream, the default one first. It may be called on any member
// and each change is carried out by the stream's leader; removing a leader
// makes it step down once the change is committed. The leader then tells
// the removed node, if it is up; the node checks with the other members
// that it was removed, and then its logging calls fail with ErrRemoved and
// its Raft stops; close it, and wipe its Dir before using it for a new node.
// RemoveNode returns ErrNotMember if addr is in no stream's configuration,
// and ErrOutcomeUnknown if a stream's leader lost the leadership before
// the change committed (the other streams are still asked): the node may
// have been removed from that stream (Members says), and asked again it
// would be not found there.
func (lx *Logx) RemoveNode(ctx context.Context, addr string) error {
	if err := checkAddr(addr); err != nil {
		return fmt.Errorf("logx: RemoveNode: %w", err)
	}
	r := removal{done: map[*Stream]bool{}}
	if err := r.pass(ctx, lx.node, addr); err != nil {
		return err
	}
	// A stream created meanwhile may hold the node too; one created after
	// the default stream's change starts without it. This node opens no
	// more streams if it is the one leaving.
	var missing error // streams of the catalog this node did not open
	if addr != lx.node.cfg.Addr && !lx.defaultStream.removed.Load() {
		opened := lx.node.openCatalogStreams(ctx)
		if err := r.pass(ctx, lx.node, addr); err != nil {
			return err
		}
		missing = lx.node.missingErr(opened, func(s *Stream) bool { return r.done[s] })
	}
	switch {
	case r.unknown != nil:
		return r.unknown
	case missing != nil: // before ErrNotMember: such a stream may hold it
		return fmt.Errorf("logx: RemoveNode: %s is out of every stream open here, but perhaps not of one this node has not opened: %w", addr, missing)
	case r.notMember == r.tried:
		return ErrNotMember
	}
	return nil
}

// removal is RemoveNode's progress over the streams.
type removal struct {
	done             map[*Stream]bool
	tried, notMember int
	unknown          error // the first stream whose removal may have been made
}

// pass asks each stream not done yet to remove addr.
func (r *removal) pass(ctx context.Context, n *node, addr string) error {
	for _, s := range n.list() {
		if r.done[s] || n.deleted(s) {
			continue
		}
		r.done[s] = true
		r.tried++
		err := s.control(ctx, controlRequest{Op: "remove", Addr: addr})
		switch {
		case errors.Is(err, ErrNotMember) && !errors.Is(err, ErrOutcomeUnknown):
			// (Both: a try whose answer was lost, then "not a member",
			// which may be this call's own removal.)
			r.notMember++
		case err != nil && n.deleted(s): // deleted meanwhile
		case errors.Is(err, ErrOutcomeUnknown):
			// The other streams' groups still lose it.
			r.unknown = cmp.Or(r.unknown, s.named(err))
		case err != nil:
			return s.named(err)
		}
	}
	return nil
}

// suffrage returns addr's suffrage in the latest configuration, and whether
// it is there at all.
func (lx *Stream) suffrage(addr string) (raft.ServerSuffrage, bool, error) {
	f := lx.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, false, err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == addr {
			return s.Suffrage, true, nil
		}
	}
	return 0, false, nil
}

// addNode runs on the leader: non-voter, wait for catch-up, voter.
func (lx *Stream) addNode(ctx context.Context, addr string) error {
	suf, ok, err := lx.suffrage(addr)
	if err != nil {
		return err
	}
	if ok && suf == raft.Voter {
		return nil
	}
	// Nothing enters the configuration without saying what it runs: a
	// member that could not check the manifests it would be sent would
	// stay behind (sums.go), so a node that does not answer is not added,
	// and a non-voter that conflicts is taken out.
	st, want, err := lx.joinStatus(ctx, addr)
	if err != nil {
		return err
	}
	if ok {
		if err := lx.refuseMember(ctx, addr, st, want); err != nil {
			return err
		}
	} else if err := lx.joinConflict(addr, st, want); err != nil {
		return err
	}
	if !ok {
		if err := lx.addNonvoter(ctx, addr, st, want); err != nil {
			return err
		}
		lx.logf("logx: added %s as a non-voter; waiting for it to catch up", addr)
	}
	// What this leader's files hold now (its commit index may end on
	// barriers, which no node's files show: commit.go).
	target := lx.fsm.appliedIndex()
	wait := 20 * time.Millisecond
	for {
		var err error
		st, want, err = lx.remoteStatus(ctx, addr)
		if err == nil && st.State == "Shutdown" {
			err = errors.New("its Raft has stopped (restarting?)") // not refused: a node restarted while it caught up answers so for a moment
		}
		if err == nil {
			if cerr := lx.refuseMember(ctx, addr, st, want); cerr != nil {
				return cerr
			}
		}
		if err := lx.stillListed(addr); err != nil {
			return err
		}
		if err == nil && !st.CatchingUp && st.AppliedIndex >= target && st.WriteError == "" {
			break
		}
		if lx.raft.State() != raft.Leader {
			// The non-voter is in the configuration: an asker that gets
			// no answer from the next leader says the outcome is unknown
			// (Proposed), rather than that nothing was made.
			return fmt.Errorf("logx: %s is a non-voter now, and this node lost the leadership: %w", addr, raft.ErrLeadershipLost)
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("applied index %d of %d", st.AppliedIndex, target)
			}
			// It is a member now, and the leader replicates to it: AddNode
			// again makes it a voter once it has caught up, RemoveNode
			// takes it out.
			return fmt.Errorf("logx: %s is a non-voter now but did not catch up, so it is not a voter: %w (%v)", addr, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
	if lx.seams.beforeVoter != nil {
		lx.seams.beforeVoter(addr)
	}
	// An AddVoter of a server the configuration lacks adds it: holding
	// confSlot, a RemoveNode made while it caught up is seen, not undone.
	release, err := lx.confChange(ctx)
	if err != nil {
		return fmt.Errorf("logx: %s is a non-voter now and caught up, but not made a voter: %w", addr, err)
	}
	defer release()
	if err := lx.stillListed(addr); err != nil {
		return err
	}
	// Apply rules committed since the last check (rules.go): a node that
	// does not know them is taken out, not made a voter.
	if err := lx.refuseMember(ctx, addr, st, want); err != nil {
		return err
	}
	if err := lx.raftCall(func() error {
		return awaitFuture(ctx, lx.raft.AddVoter(raft.ServerID(addr), raft.ServerAddress(addr), 0, enqueueWithin(ctx)))
	}); err != nil {
		return err
	}
	lx.logf("logx: %s caught up and is a voter", addr)
	return nil
}

// refuseMember says why addr, a non-voter of the configuration whose
// status is st, cannot join (joinConflict), and takes it out then; nil if
// it can.
func (lx *Stream) refuseMember(ctx context.Context, addr string, st Stats, want *clusterSettings) error {
	err := lx.joinConflict(addr, st, want)
	if err != nil {
		_ = lx.raftCall(func() error {
			return awaitFuture(ctx, lx.raft.RemoveServer(raft.ServerID(addr), 0, enqueueWithin(ctx)))
		})
	}
	return err
}

// addNonvoter adds addr as a non-voter, holding confSlot: once this
// leader has applied everything before (a barrier), it checks again that
// addr may join (joinConflict with its status st and want): apply rules
// committed since the first check refuse an older node, and a commitRules
// holding the slot cannot have a member added between its check of the
// members and its commit.
func (lx *Stream) addNonvoter(ctx context.Context, addr string, st Stats, want *clusterSettings) error {
	release, err := lx.confChange(ctx)
	if err != nil {
		return fmt.Errorf("logx: %s not added: %w", addr, err)
	}
	defer release()
	if err := lx.raftCall(func() error { return awaitFuture(ctx, lx.raft.Barrier(enqueueWithin(ctx))) }); err != nil {
		return err
	}
	if err := lx.joinConflict(addr, st, want); err != nil {
		return err
	}
	return lx.raftCall(func() error {
		return awaitFuture(ctx, lx.raft.AddNonvoter(raft.ServerID(addr), raft.ServerAddress(addr), 0, enqueueWithin(ctx)))
	})
}

// confChange waits for confSlot, or for ctx to end, and returns its
// release.
func (lx *Stream) confChange(ctx context.Context) (func(), error) {
	select {
	case lx.confSlot <- struct{}{}:
		return func() { lx.confGen.Add(1); <-lx.confSlot }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for another membership change: %w", ctx.Err())
	}
}

// stillListed fails if addr, added as a non-voter, has left the
// configuration since (a RemoveNode meanwhile).
func (lx *Stream) stillListed(addr string) error {
	_, ok, err := lx.suffrage(addr)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("logx: %s was removed while it caught up, so it is not added", addr)
	}
	return nil
}

// joinStatus asks the node at addr for its status until it answers, this
// node stops leading, or ctx ends.
func (lx *Stream) joinStatus(ctx context.Context, addr string) (Stats, *clusterSettings, error) {
	wait := 20 * time.Millisecond
	for {
		st, want, err := lx.remoteStatus(ctx, addr)
		if err == nil {
			return st, want, nil
		}
		if lx.raft.State() != raft.Leader {
			return Stats{}, nil, raft.ErrNotLeader
		}
		select {
		case <-ctx.Done():
			return Stats{}, nil, fmt.Errorf("logx: %s did not answer, so it is not added: %w (%v)", addr, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// removeNode runs on the leader.
func (lx *Stream) removeNode(ctx context.Context, addr string) error {
	_, ok, err := lx.suffrage(addr)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotMember, addr)
	}
	if addr == lx.cfg.Addr && lx.voters() > 1 {
		// The leader hands over first and is then removed as a follower:
		// a leader that removes itself shuts its Raft down as the change
		// commits, and hashicorp/raft (v1.8.0) can then drop the change's
		// future unanswered, so RemoveServer's Error never returns.
		if err := lx.transferLeadership(); err != nil {
			lx.logf("logx: removing this node: handing over the leadership: %v; retrying", err)
		}
		return raft.ErrNotLeader // the caller asks the new leader
	}
	release, err := lx.confChange(ctx)
	if err != nil {
		return fmt.Errorf("logx: %s not removed: %w", addr, err)
	}
	err = lx.raftCall(func() error {
		return awaitFuture(ctx, lx.raft.RemoveServer(raft.ServerID(addr), 0, enqueueWithin(ctx)))
	})
	release()
	if err != nil {
		return err
	}
	lx.logf("logx: removed %s from the cluster", addr)
	if addr != lx.cfg.Addr {
		// Tell the node, if it is up, so it stops taking entries. It may
		// be down: then it learns nothing, and should not be restarted.
		nctx, cancel := context.WithTimeout(ctx, lx.cfg.ForwardTimeout)
		_, _ = lx.sendControl(nctx, addr, controlRequest{Op: "removed", Addr: addr})
		cancel()
	} else if !lx.removed.Swap(true) {
		lx.markRemoved()
		lx.logf("logx: this node removed itself from the cluster")
	}
	return nil
}

// remoteStatus asks the node at addr for its Stats and what its Config
// sets of the cluster's settings.
func (lx *Stream) remoteStatus(ctx context.Context, addr string) (Stats, *clusterSettings, error) {
	ctx, cancel := context.WithTimeout(ctx, lx.cfg.ForwardTimeout)
	defer cancel()
	resp, err := lx.sendControl(ctx, addr, controlRequest{Op: "status"})
	if err != nil {
		return Stats{}, nil, err
	}
	if resp.Status == nil {
		if resp.Starting != nil {
			return Stats{}, nil, &startingError{*resp.Starting, resp.Error}
		}
		return Stats{}, nil, fmt.Errorf("logx: %s sent no status: %v", addr, resp.err())
	}
	return *resp.Status, resp.Settings, nil
}

// joinConflict says why the node at addr, whose status is st and whose
// Config sets want of the cluster's settings, cannot join (nil if it can):
// it answers as another address (another spelling of a member's: the
// member would count twice, and a cluster of three would need all three;
// a node is added by its Addr, its ID in Raft), its Raft for the stream
// has stopped (a node removed: it would stay a non-voter that never
// catches up), settings that conflict with the cluster's, a logx older
// than BLAKE3 checksums, which could not check a manifest naming them
// (sums.go), or older than the stream's apply rules (rules.go); and for a
// stream other than the default one, that the default stream's
// configuration lacks it (inDefault).
func (lx *Stream) joinConflict(addr string, st Stats, want *clusterSettings) error {
	switch {
	case st.Addr != addr:
		return fmt.Errorf("logx: %s cannot join: it answers as %q (add a node by its Addr)", addr, st.Addr)
	case st.State == "Shutdown":
		return fmt.Errorf("logx: %s cannot join: its Raft for stream %q has stopped (a node removed from the cluster: start it again with an empty Dir and Join to add it back)", addr, lx.name)
	case !lx.inDefault(addr):
		return fmt.Errorf("logx: %s cannot join stream %q: it is not a member of the default stream (removed meanwhile?), which AddNode adds it to first", addr, lx.name)
	}
	if st.Version < sumsFeature {
		return fmt.Errorf("logx: %s cannot join: it runs a logx without BLAKE3 checksums (version %d), which the files of this cluster may name: upgrade it first", addr, st.Version)
	}
	if cs := lx.fsm.clusterSettings(); cs != nil && cs.RetentionSet && st.Version < retentionFeature {
		return fmt.Errorf("logx: %s cannot join: it runs a logx without retention commands (version %d), and this cluster's retention was set by one: upgrade it first", addr, st.Version)
	}
	if r := lx.fsm.rulesNow(); r >= 1 && st.Version < rulesFeature {
		return fmt.Errorf("logx: %s cannot join: it runs a logx without apply rules %d (version %d), which stream %q follows: upgrade it first", addr, r, st.Version, lx.name)
	}
	return lx.settingsConflict(addr, want)
}

// inDefault reports whether addr is a member of the default stream, as
// this node knows its configuration (always true for the default stream),
// waiting up to an ElectionTimeout for it to be: this node may apply the
// default stream's change a moment after that stream's leader committed
// it. AddNode adds a node to the default stream first and RemoveNode
// takes it out of it first, so a RemoveNode that ran between AddNode's
// changes to the default stream and to another is seen here, and the
// other stream does not keep a member the default stream has lost.
func (lx *Stream) inDefault(addr string) bool {
	if lx.name == DefaultStream || lx.hooks.defaultServers == nil {
		return true
	}
	deadline := time.Now().Add(lx.cfg.ElectionTimeout)
	for {
		if slices.Contains(lx.hooks.defaultServers(), addr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-lx.closingCtx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settingsConflict says why the node at addr, whose Config sets want of
// the cluster's settings, cannot join (nil if it can, or if the cluster's
// settings are not recorded yet).
func (lx *Stream) settingsConflict(addr string, want *clusterSettings) error {
	cs := lx.fsm.clusterSettings()
	if cs == nil || want == nil {
		return nil
	}
	if err := cs.conflict(want.withoutRetention()); err != nil {
		return fmt.Errorf("logx: %s cannot join: %w", addr, err)
	}
	return nil
}

// enqueueWithin is how long Raft may take to take a configuration change
// in (its enqueue timeout: it takes one only once the last is committed):
// most of what is left of ctx, so that a change it never took fails as
// such (ErrEnqueueTimeout) before ctx ends, not as unknown (awaitFuture).
// At least a millisecond: hashicorp/raft waits without a bound for none.
func enqueueWithin(ctx context.Context) time.Duration {
	return max(time.Until(deadlineOr(ctx, defaultControlTimeout))*9/10, time.Millisecond)
}

func deadlineOr(ctx context.Context, d time.Duration) time.Time {
	if t, ok := ctx.Deadline(); ok {
		return t
	}
	return time.Now().Add(d)
}

// pruneRaftPool closes the connections Raft keeps for reuse (its
// transport's pool) when some lead to an address no longer in the
// configuration: a node removed, or moved to another address. Raft never
// drops those itself, and each holds a descriptor and a 256 KiB buffer,
// per stream, so a cluster whose nodes are replaced under new addresses
// would hold more each time. The pool can only be emptied whole
// (CloseStreams), so the others go too, and Raft dials them again as it
// needs them; it also ends the handlers of the connections peers dialed
// to this node, after the request each is serving. The producer calls it
// with each clock report (every 10 s, a minute on an idle stream), so it
// adds no wake-up; the check runs on a goroutine of its own, since it asks
// Raft for the configuration.
func (lx *Stream) pruneRaftPool() {
	if !lx.pruning.CompareAndSwap(false, true) {
		return
	}
	started := lx.goFunc(func() {
		defer lx.pruning.Store(false)
		targets := lx.mux.raftTargets()
		if len(targets) == 0 {
			return
		}
		servers, err := lx.serverAddrs(false)
		if err != nil || len(servers) == 0 {
			return // no configuration yet (a node that joins)
		}
		for _, t := range targets {
			if _, ok := slices.BinarySearch(servers, t); !ok {
				lx.transport.CloseStreams()
				return
			}
		}
	})
	if !started {
		lx.pruning.Store(false)
	}
}
