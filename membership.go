package logx

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
)

// Membership: AddNode and RemoveNode change the Raft configuration. Only the
// leader can, so any other node sends the request to the leader over its
// address (protocol byte 4), following "not the leader" answers. The same
// protocol answers status requests, which the leader uses to see when a node
// it is adding has caught up. Frames are a uint32 length and a JSON object
// each way: controlRequest, then controlResponse.

// ErrNotMember is returned by RemoveNode for an address that is not in the
// cluster's configuration (for example because an earlier call removed it).
var ErrNotMember = errors.New("logx: not a member of the cluster")

// maxControlFrame bounds a control frame, request or response.
const maxControlFrame = 1 << 20

// defaultControlTimeout bounds a membership change whose caller's context
// has no deadline.
const defaultControlTimeout = 10 * time.Minute

type controlRequest struct {
	Op        string `json:"op"` // "add", "remove", "status", "commit" (follower → leader, commit.go), "removed" (leader → removed node; checked, see removal.go), "create-stream" or "delete-stream" (catalog.go), "set-level" (clusterlevel.go), "truncate" (truncate.go), "grep" (grepremote.go)
	Addr      string `json:"addr,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"` // what is left of the caller's context
	// Stream is the stream a create-stream creates; Name the one a
	// delete-stream deletes.
	Stream *streamSpec `json:"stream,omitempty"`
	Name   string      `json:"name,omitempty"`
	// Level is what a set-level sets (clusterlevel.go); Seq the point a
	// truncate truncates before (truncate.go).
	Level *slog.Level `json:"level,omitempty"`
	Seq   uint64      `json:"seq,omitempty"`
	// Grep is what a grep asks for (grepremote.go).
	Grep *grepRequest `json:"grep,omitempty"`
}

type controlResponse struct {
	Error     string `json:"error,omitempty"`
	NotMember bool   `json:"not_member,omitempty"`
	NotLeader bool   `json:"not_leader,omitempty"`
	// Unknown: the command may or may not have been committed
	// (ErrOutcomeUnknown); Error says why.
	Unknown bool   `json:"unknown,omitempty"`
	Leader  string `json:"leader,omitempty"` // a hint with NotLeader
	Status  *Stats `json:"status,omitempty"`
	// Streams, with the default stream's status, are the node's other
	// streams' (QueryStreams).
	Streams []Stats `json:"streams,omitempty"`
	// Settings, with a status, are what the node's Config sets of the
	// cluster's settings (settings.go), for AddNode to compare.
	Settings *clusterSettings `json:"settings,omitempty"`
	// Index is the Raft index of what a set-level or truncate committed.
	Index uint64 `json:"index,omitempty"`
	// Lines answer a grep; Truncated says the answer stopped at its bound.
	Lines     []grepLine `json:"lines,omitempty"`
	Truncated bool       `json:"truncated,omitempty"`
}

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
// every stream, or with the error that stopped it; calling it again resumes
// (a stream in which the node is already a voter is left as is). If ctx has
// no deadline each stream's change is bounded by 10 minutes.
func (lx *Logx) AddNode(ctx context.Context, addr string) error {
	if err := checkAddr(addr); err != nil {
		return fmt.Errorf("logx: AddNode: %w", err)
	}
	// Passes over the streams until one finds none left: a stream created
	// while the node was being added started without it (its voters are
	// the default stream's when it was created).
	added := map[*Stream]bool{}
	for {
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
					return s.named(err)
				}
			}
			if err := s.control(ctx, controlRequest{Op: "add", Addr: addr}); err != nil {
				return s.named(err)
			}
			added[s] = true
		}
		if !more {
			return nil
		}
	}
}

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
	tried, notMember := 0, 0
	var unknown error // the first stream whose removal may have been made
	for _, s := range lx.node.list() {
		if lx.node.deleted(s) {
			continue
		}
		tried++
		err := s.control(ctx, controlRequest{Op: "remove", Addr: addr})
		switch {
		case errors.Is(err, ErrNotMember):
			notMember++
		case err != nil && lx.node.deleted(s): // deleted meanwhile
		case errors.Is(err, ErrOutcomeUnknown):
			// The other streams' groups still lose it.
			unknown = cmp.Or(unknown, s.named(err))
		case err != nil:
			return s.named(err)
		}
	}
	switch {
	case unknown != nil:
		return unknown
	case notMember == tried:
		return ErrNotMember
	}
	return nil
}

// control runs a membership change on the leader: here if this node leads,
// otherwise by asking the leader it knows, or each of Config.Peers, and
// following their hints, until ctx ends.
func (lx *Stream) control(ctx context.Context, req controlRequest) error {
	_, err := lx.controlResp(ctx, req)
	return err
}

// controlResp is control that also returns the answer.
func (lx *Stream) controlResp(ctx context.Context, req controlRequest) (controlResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(lx.closingCtx, cancel) // Close ends a change in progress
	defer stop()
	wait := 20 * time.Millisecond
	var lastErr error
	for {
		if lx.raft.State() == raft.Leader {
			resp := lx.doControl(ctx, req)
			if !resp.NotLeader {
				return resp, resp.err()
			}
		} else {
			for _, target := range lx.controlTargets() {
				resp, err := lx.sendControl(ctx, target, req)
				if err == nil && resp.NotLeader && resp.Leader != "" && resp.Leader != target && resp.Leader != lx.cfg.Addr {
					target = resp.Leader // follow the hint once
					resp, err = lx.sendControl(ctx, target, req)
				}
				switch {
				case err != nil:
					lastErr = fmt.Errorf("%s: %w", target, err)
				case resp.NotLeader:
					lastErr = fmt.Errorf("%s: not the leader", target)
				default:
					return resp, resp.err()
				}
			}
		}
		select {
		case <-ctx.Done():
			select {
			case <-lx.closing:
				return controlResponse{}, ErrClosed
			default:
			}
			what := strings.TrimSpace(req.Op + " " + req.Addr) // Addr: add and remove only
			if lastErr != nil {
				return controlResponse{}, fmt.Errorf("logx: %s: %w (last: %v)", what, ctx.Err(), lastErr)
			}
			return controlResponse{}, fmt.Errorf("logx: %s: %w", what, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// controlTargets lists whom a non-leader asks: the leader if known, else
// every peer.
func (lx *Stream) controlTargets() []string {
	if leader, _ := lx.raft.LeaderWithID(); leader != "" && string(leader) != lx.cfg.Addr {
		return []string{string(leader)}
	}
	var out []string
	for _, p := range lx.cfg.Peers {
		if p != lx.cfg.Addr {
			out = append(out, p)
		}
	}
	return out
}

// remoteError is another node's error: its text, and the sentinel it
// matches.
type remoteError struct {
	msg string
	is  error
}

func (e remoteError) Error() string { return e.msg }
func (e remoteError) Unwrap() error { return e.is }

func (r controlResponse) err() error {
	switch {
	case r.NotMember:
		return fmt.Errorf("%w: %s", ErrNotMember, r.Error)
	case r.Unknown: // the text already says so
		return remoteError{r.Error, ErrOutcomeUnknown}
	case r.Error != "":
		return errors.New(r.Error)
	}
	return nil
}

// sendControl sends one request to addr and reads the answer. The
// connection's deadline is ctx's, or defaultControlTimeout.
func (lx *Stream) sendControl(ctx context.Context, addr string, req controlRequest) (controlResponse, error) {
	var resp controlResponse
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultControlTimeout)
	}
	req.TimeoutMS = time.Until(deadline).Milliseconds()
	if req.TimeoutMS <= 0 {
		return resp, context.DeadlineExceeded
	}
	c, err := lx.mux.dialContext(ctx, addr, wire.ProtoControl, min(lx.cfg.ForwardTimeout, time.Until(deadline)))
	if err != nil {
		return resp, err
	}
	defer c.Close()
	return controlExchange(ctx, c, req, deadline)
}

// controlExchange sends req on c and reads the answer, by deadline or until
// ctx ends.
func controlExchange(ctx context.Context, c net.Conn, req controlRequest, deadline time.Time) (controlResponse, error) {
	var resp controlResponse
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(deadline)
	if err := writeJSONFrame(c, req); err != nil {
		return resp, err
	}
	data, err := wire.ReadFrame(bufio.NewReader(c), nil, maxControlFrame)
	if err != nil {
		if ctx.Err() != nil {
			return resp, ctx.Err()
		}
		return resp, err
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return resp, fmt.Errorf("logx: malformed control response: %w", err)
	}
	return resp, nil
}

// serveControl answers one control request. The request's context ends
// with its timeout, or when the connection closes (the asker gave up, or
// Close closed every connection).
func (lx *Stream) serveControl(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(lx.mux.m.headerTimeout))
	data, err := wire.ReadFrame(bufio.NewReader(c), nil, maxControlFrame)
	if err != nil {
		return
	}
	var resp controlResponse
	if req, timeout, err := parseControlRequest(data); err != nil {
		resp.Error = err.Error()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_ = c.SetReadDeadline(time.Time{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			var b [1]byte
			_, _ = c.Read(b[:]) // returns when the connection ends
			cancel()
		}()
		resp = lx.doControl(ctx, req)
		_ = c.SetReadDeadline(time.Now()) // wake the watcher
		<-watched
		cancel()
	}
	_ = c.SetWriteDeadline(time.Now().Add(lx.cfg.ForwardTimeout))
	_ = writeJSONFrame(c, resp)
}

// parseControlRequest decodes and checks a control request: a known
// operation, a usable address where it needs one, and the time it may take
// (what the caller said, at most defaultControlTimeout).
func parseControlRequest(data []byte) (controlRequest, time.Duration, error) {
	var req controlRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return req, 0, fmt.Errorf("logx: malformed control request: %v", err)
	}
	switch req.Op {
	case "status", "commit":
	case "add", "remove", "removed":
		if err := checkAddr(req.Addr); err != nil {
			return req, 0, fmt.Errorf("logx: %s: %v", req.Op, err)
		}
	case "create-stream":
		if req.Stream == nil {
			return req, 0, errors.New("logx: create-stream: no stream")
		}
		if err := req.Stream.check(); err != nil {
			return req, 0, fmt.Errorf("logx: create-stream: %v", err)
		}
	case "delete-stream":
		if err := checkStreamName(req.Name); err != nil || req.Name == DefaultStream {
			return req, 0, fmt.Errorf("logx: delete-stream: cannot delete stream %q", req.Name)
		}
	case "set-level":
		if req.Level == nil {
			return req, 0, errors.New("logx: set-level: no level")
		}
		if err := checkClusterLevel(*req.Level); err != nil {
			return req, 0, fmt.Errorf("logx: set-level: %w", err)
		}
	case "truncate":
		if req.Seq == 0 {
			return req, 0, errors.New("logx: truncate: no sequence number")
		}
	case "grep":
		if req.Grep == nil {
			return req, 0, errors.New("logx: grep: no query")
		}
		if _, err := req.Grep.query(); err != nil {
			return req, 0, fmt.Errorf("logx: grep: %w", err)
		}
	default:
		return req, 0, fmt.Errorf("logx: unknown control operation %q", req.Op)
	}
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if req.TimeoutMS <= 0 || req.TimeoutMS > defaultControlTimeout.Milliseconds() {
		timeout = defaultControlTimeout
	}
	return req, timeout, nil
}

// doControl carries out a request on this node. The request was checked
// already: by parseControlRequest, or by AddNode and RemoveNode.
func (lx *Stream) doControl(ctx context.Context, req controlRequest) controlResponse {
	if req.Op == "status" {
		st := lx.Stats()
		want := lx.want
		resp := controlResponse{Status: &st, Settings: &want}
		if lx.hooks.otherStats != nil {
			resp.Streams = lx.hooks.otherStats()
		}
		return resp
	}
	if req.Op == "grep" {
		return lx.serveGrep(ctx, req.Grep) // any node: its own files
	}
	if req.Op == "removed" {
		// Anyone who can open a control connection can send this: it is
		// checked with the other members in the background (removal.go).
		if req.Addr != lx.cfg.Addr {
			return controlResponse{Error: fmt.Sprintf("logx: removed: %s is not this node (%s)", req.Addr, lx.cfg.Addr)}
		}
		lx.removalNotice()
		return controlResponse{}
	}
	if lx.raft.State() != raft.Leader {
		return controlResponse{NotLeader: true, Leader: lx.leaderHint()}
	}
	if lx.heldUp() {
		// Every change below waits for this node's apply (a command, a
		// barrier, a configuration): another node is to lead.
		return lx.controlAnswer(0, errApplyHeld)
	}
	var err error
	var idx uint64
	switch req.Op {
	case "set-level":
		idx, err = lx.proposeLevel(*req.Level)
	case "truncate":
		idx, err = lx.proposeTruncate(req.Seq)
	case "create-stream", "delete-stream":
		if lx.name != DefaultStream {
			return controlResponse{Error: "logx: " + req.Op + " goes to the default stream"}
		}
		if req.Op == "create-stream" {
			err = lx.proposeCatalogCmd(catalogCmd{Op: "create", Stream: req.Stream})
		} else if slices.ContainsFunc(lx.cfg.Streams, func(sc StreamConfig) bool { return sc.Name == req.Name }) {
			err = fmt.Errorf("logx: stream %q is declared in the Config of the default stream's leader", req.Name)
		} else {
			err = lx.proposeCatalogCmd(catalogCmd{Op: "delete", Name: req.Name})
		}
	case "commit":
		err = lx.passCommitIndex(ctx)
	case "add":
		err = lx.addNode(ctx, req.Addr)
	default:
		err = lx.removeNode(ctx, req.Addr)
	}
	return lx.controlAnswer(idx, outcomeOf(req, err))
}

// repeatable reports whether a control operation may be carried out again
// when it is not known whether it was: all but a cluster level (set again,
// it may undo a later one), a stream's deletion and a node's removal (then
// not found). A truncation point only rises, a stream created again with
// the same settings is left as it is, a node added again is where it was,
// and a status or a search changes nothing.
func repeatable(op string) bool {
	return op != "set-level" && op != "delete-stream" && op != "remove"
}

// outcomeOf is err, the failure of a control request this node carried
// out as the leader, as its sender is to see it: ErrOutcomeUnknown if req
// was proposed before the leadership was lost (it may yet commit under the
// next leader) and carrying it out again could change its result
// (repeatable); a sender asks the next leader otherwise.
func outcomeOf(req controlRequest, err error) error {
	if errors.Is(err, raft.ErrLeadershipLost) && !repeatable(req.Op) {
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	return err
}

// leaderHint is the leader this node knows, for an answer that says it
// does not lead: never itself, which it may still be in Raft's eyes while
// it refuses (heldUp) or steps down.
func (lx *Stream) leaderHint() string {
	leader, _ := lx.raft.LeaderWithID()
	if string(leader) == lx.cfg.Addr {
		return ""
	}
	return string(leader)
}

// controlAnswer is the answer to a control request that committed at idx,
// or failed with err.
func (lx *Stream) controlAnswer(idx uint64, err error) controlResponse {
	switch {
	case err == nil:
		return controlResponse{Index: idx}
	case errors.Is(err, ErrOutcomeUnknown):
		// errApplyBlocked, or a lost leadership (doControl): it may have
		// committed, and a repeat is not always the same (repeatable), so
		// the caller is told, not the new leader asked.
		return controlResponse{Unknown: true, Error: err.Error()}
	case errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return controlResponse{NotLeader: true, Leader: lx.leaderHint()}
	case errors.Is(err, ErrNotMember):
		return controlResponse{NotMember: true, Error: err.Error()}
	}
	return controlResponse{Error: err.Error()}
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
	timeout := time.Until(deadlineOr(ctx, defaultControlTimeout))
	// Nothing enters the configuration without saying what it runs: a
	// member that could not check the manifests it would be sent would
	// stay behind (sums.go), so a node that does not answer is not added,
	// and a non-voter that conflicts is taken out.
	st, want, err := lx.joinStatus(ctx, addr)
	if err != nil {
		return err
	}
	if err := lx.joinConflict(addr, st, want); err != nil {
		if ok {
			_ = lx.raft.RemoveServer(raft.ServerID(addr), 0, timeout).Error()
		}
		return err
	}
	if !ok {
		if err := lx.raft.AddNonvoter(raft.ServerID(addr), raft.ServerAddress(addr), 0, timeout).Error(); err != nil {
			return err
		}
		lx.logf("logx: added %s as a non-voter; waiting for it to catch up", addr)
	}
	// What this leader's files hold now (its commit index may end on
	// barriers, which no node's files show: commit.go).
	target := lx.fsm.appliedIndex()
	wait := 20 * time.Millisecond
	for {
		st, want, err := lx.remoteStatus(ctx, addr)
		if err == nil {
			if cerr := lx.joinConflict(addr, st, want); cerr != nil {
				_ = lx.raft.RemoveServer(raft.ServerID(addr), 0, timeout).Error()
				return cerr
			}
		}
		if err == nil && !st.CatchingUp && st.AppliedIndex >= target && st.WriteError == "" {
			break
		}
		if lx.raft.State() != raft.Leader {
			return raft.ErrNotLeader
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("applied index %d of %d", st.AppliedIndex, target)
			}
			return fmt.Errorf("logx: %s did not catch up: %w (%v)", addr, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
	if err := lx.raft.AddVoter(raft.ServerID(addr), raft.ServerAddress(addr), 0, time.Until(deadlineOr(ctx, defaultControlTimeout))).Error(); err != nil {
		return err
	}
	lx.logf("logx: %s caught up and is a voter", addr)
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
	if err := lx.raft.RemoveServer(raft.ServerID(addr), 0, time.Until(deadlineOr(ctx, defaultControlTimeout))).Error(); err != nil {
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
		return Stats{}, nil, fmt.Errorf("logx: %s sent no status: %v", addr, resp.err())
	}
	return *resp.Status, resp.Settings, nil
}

// joinConflict says why the node at addr, whose status is st and whose
// Config sets want of the cluster's settings, cannot join (nil if it can):
// settings that conflict with the cluster's, or a logx older than BLAKE3
// checksums, which could not check a manifest naming them (sums.go).
func (lx *Stream) joinConflict(addr string, st Stats, want *clusterSettings) error {
	if st.Version < sumsFeature {
		return fmt.Errorf("logx: %s cannot join: it runs a logx without BLAKE3 checksums (version %d), which the files of this cluster may name: upgrade it first", addr, st.Version)
	}
	return lx.settingsConflict(addr, want)
}

// settingsConflict says why the node at addr, whose Config sets want of
// the cluster's settings, cannot join (nil if it can, or if the cluster's
// settings are not recorded yet).
func (lx *Stream) settingsConflict(addr string, want *clusterSettings) error {
	cs := lx.fsm.clusterSettings()
	if cs == nil || want == nil {
		return nil
	}
	if err := cs.conflict(*want); err != nil {
		return fmt.Errorf("logx: %s cannot join: %w", addr, err)
	}
	return nil
}

func deadlineOr(ctx context.Context, d time.Duration) time.Time {
	if t, ok := ctx.Deadline(); ok {
		return t
	}
	return time.Now().Add(d)
}

func writeJSONFrame(c net.Conn, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	frame := wire.AppendFrameHeader(make([]byte, 0, wire.FrameHeader+len(data)), len(data))
	_, err = c.Write(append(frame, data...))
	return err
}
