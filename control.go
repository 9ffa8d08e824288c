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
	"unicode/utf8"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
)

// The control protocol (protocol byte 4): one request, one answer, each a
// uint32 length and a JSON object (controlRequest, then controlResponse).
// It carries membership changes (membership.go), stream creation and
// deletion (catalog.go), cluster levels and truncations, status, remote
// grep and the leader's barriers; a change goes to the leader, following
// "not the leader" answers.
// maxControlFrame bounds a control frame, request or response.
const maxControlFrame = 1 << 20

// defaultControlTimeout bounds a membership change whose caller's context
// has no deadline.
const defaultControlTimeout = 10 * time.Minute

type controlRequest struct {
	Op        string `json:"op"` // "add", "remove", "status", "commit" (follower → leader, commit.go), "removed" (leader → removed node; checked, see removal.go), "create-stream" or "delete-stream" (catalog.go), "set-level" (clusterlevel.go), "truncate" (truncate.go), "set-retention" (setretention.go), "grep" (grepremote.go)
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
	// Retention is what a set-retention sets (setretention.go).
	Retention *retentionCmd `json:"retention,omitempty"`
	// Grep is what a grep asks for (grepremote.go).
	Grep *grepRequest `json:"grep,omitempty"`
}

type controlResponse struct {
	Error     string `json:"error,omitempty"`
	NotMember bool   `json:"not_member,omitempty"`
	NotLeader bool   `json:"not_leader,omitempty"`
	// NoStream: the node does not hold the request's stream (Error says
	// so); nothing was carried out (refuseControl).
	NoStream bool `json:"no_stream,omitempty"`
	// Unknown: the command may or may not have been committed
	// (ErrOutcomeUnknown); Error says why.
	Unknown bool `json:"unknown,omitempty"`
	// Proposed, with NotLeader: the node proposed the change and lost the
	// leadership before it committed, so the next leader may commit it.
	// The asker tries that leader (the change is repeatable), and if no
	// answer comes, reports ErrOutcomeUnknown rather than a failure.
	Proposed bool   `json:"proposed,omitempty"`
	Leader   string `json:"leader,omitempty"` // a hint with NotLeader
	Status   *Stats `json:"status,omitempty"`
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
	// Starting answers a status request for a stream the node has not
	// opened yet as it starts, with Error saying so (bootstrap.go).
	Starting *startingStatus `json:"starting,omitempty"`
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
	// Bounded as a forwarded request is (sendControl), also when this
	// node leads and carries it out itself.
	ctx, cancel := context.WithDeadline(ctx, deadlineOr(ctx, cmp.Or(lx.seams.controlTimeout, defaultControlTimeout)))
	defer cancel()
	stop := context.AfterFunc(lx.closingCtx, cancel) // Close ends a change in progress
	defer stop()
	wait := 20 * time.Millisecond
	var lastErr error
	lost := false // a try went out and got no answer (maybeMade)
	for {
		if lx.raft.State() == raft.Leader {
			resp := lx.doControl(ctx, req)
			if !resp.NotLeader {
				err := resp.err()
				if resp.Unknown && ctx.Err() != nil {
					// It gave up as ctx ended: say which end.
					err = fmt.Errorf("%w: %w", err, lx.endOf(ctx))
				}
				return resp, maybeMade(req, lost, err)
			}
			lost = lost || resp.Proposed
		} else {
			for _, target := range lx.controlTargets() {
				resp, err := lx.sendControl(ctx, target, req)
				if err == nil && resp.NotLeader && resp.Leader != "" && resp.Leader != target && resp.Leader != lx.cfg.Addr {
					lost = lost || resp.Proposed
					target = resp.Leader // follow the hint once
					resp, err = lx.sendControl(ctx, target, req)
				}
				switch {
				case err != nil:
					lost = lost || errors.As(err, new(answerLost))
					lastErr = fmt.Errorf("%s: %w", target, err)
				case resp.NotLeader:
					lost = lost || resp.Proposed
					lastErr = fmt.Errorf("%s: not the leader", target)
				case resp.NoStream: // not yet, perhaps: the catalog is late there
					lastErr = fmt.Errorf("%s: %w", target, resp.err())
				default:
					return resp, maybeMade(req, lost, resp.err())
				}
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(lx.endOf(ctx), ErrClosed) {
				return controlResponse{}, maybeMade(req, lost, ErrClosed)
			}
			what := strings.TrimSpace(req.Op + " " + req.Addr) // Addr: add and remove only
			if lastErr != nil {
				return controlResponse{}, maybeMade(req, lost, fmt.Errorf("logx: %s: %w (last: %v)", what, ctx.Err(), lastErr))
			}
			return controlResponse{}, maybeMade(req, lost, fmt.Errorf("logx: %s: %w", what, ctx.Err()))
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// endOf is why ctx, a change's context that ends when Close begins
// (controlResp), ended: ErrClosed if Close began, ctx's error otherwise.
func (lx *Stream) endOf(ctx context.Context) error {
	select {
	case <-lx.closing:
		return ErrClosed
	default:
		return ctx.Err()
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

// answerLost is the error of a control request that went out and got no
// answer by its deadline or before the asker's context ended, the node
// holding the connection: a change may have been made. For a change, once no try says otherwise,
// it is reported as ErrOutcomeUnknown (maybeMade).
type answerLost struct{ err error }

func (e answerLost) Error() string { return "no answer: " + e.err.Error() }
func (e answerLost) Unwrap() error { return e.err }

// maybeMade wraps err, the failure of change req, in ErrOutcomeUnknown if
// a try of it went out and lost its answer (lost); status, grep and the
// leader's barrier ("commit") change nothing.
func maybeMade(req controlRequest, lost bool, err error) error {
	switch req.Op {
	case "status", "grep", "commit":
		return err
	}
	if !lost || err == nil || errors.Is(err, ErrOutcomeUnknown) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
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
// ctx ends. An answer still not come by then, on a connection the node
// keeps open, is an answerLost error: the node may be acting on it. A
// connection the node closes unanswered is not: a node drops unread a
// request past its connection limit (and, before this release, one for a
// stream it does not have: refuseControl answers that now), and the
// protocol has no acknowledgement that would tell those from a request
// carried out before the node was cut off (docs/design.md).
func controlExchange(ctx context.Context, c net.Conn, req controlRequest, deadline time.Time) (controlResponse, error) {
	var resp controlResponse
	_ = c.SetDeadline(deadline) // first: a cancel from here on is not overwritten
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if err := writeJSONFrame(c, req); err != nil {
		return resp, err
	}
	data, err := wire.ReadFrame(bufio.NewReader(c), nil, maxControlFrame)
	if err != nil {
		if ctx.Err() != nil {
			return resp, answerLost{ctx.Err()}
		}
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			return resp, answerLost{err}
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
		// It may quote the request: at most a line of it goes back.
		resp.Error = clipText(err.Error(), maxControlError)
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
	if err := writeJSONFrame(c, resp); errors.Is(err, errFrameTooLarge) {
		// Nothing was written: an answer the asker can read, rather
		// than a connection that ends without one.
		_ = writeJSONFrame(c, controlResponse{Error: err.Error()})
	}
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
	case "status", "commit", "voters":
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
	case "set-retention":
		if req.Retention == nil {
			return req, 0, errors.New("logx: set-retention: no retention")
		}
		if err := req.Retention.check(); err != nil {
			return req, 0, fmt.Errorf("logx: set-retention: %w", err)
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
		idx, err = lx.proposeLevel(ctx, *req.Level)
	case "truncate":
		idx, err = lx.proposeTruncate(ctx, req.Seq)
	case "set-retention":
		idx, err = lx.proposeRetention(ctx, *req.Retention)
	case "create-stream", "delete-stream":
		if lx.name != DefaultStream {
			return controlResponse{Error: "logx: " + req.Op + " goes to the default stream"}
		}
		if req.Op == "create-stream" {
			err = lx.proposeCatalogCmd(ctx, catalogCmd{Op: "create", Stream: req.Stream})
		} else if slices.ContainsFunc(lx.cfg.Streams, func(sc StreamConfig) bool { return sc.Name == req.Name }) {
			err = fmt.Errorf("logx: stream %q is declared in the Config of the default stream's leader", req.Name)
		} else {
			err = lx.proposeCatalogCmd(ctx, catalogCmd{Op: "delete", Name: req.Name})
		}
	case "commit":
		err = lx.passCommitIndex(ctx)
	case "voters":
		err = lx.recommitVoters(ctx)
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
	return op != "set-level" && op != "set-retention" && op != "delete-stream" && op != "remove"
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
		return controlResponse{NotLeader: true, Leader: lx.leaderHint(), Proposed: errors.Is(err, raft.ErrLeadershipLost)}
	case errors.Is(err, ErrNotMember):
		return controlResponse{NotMember: true, Error: err.Error()}
	}
	return controlResponse{Error: err.Error()}
}

// maxControlError bounds the text of a refused request's answer.
const maxControlError = 1 << 10

// clipText returns s cut to at most n bytes, at a character's start, with
// "…" in place of the rest.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

var errFrameTooLarge = errors.New("logx: a control frame too large to send")

// writeJSONFrame writes v as one control frame; one over maxControlFrame,
// which no reader takes, is not written.
func writeJSONFrame(c net.Conn, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(data) > maxControlFrame {
		return fmt.Errorf("%w: %d bytes, more than %d", errFrameTooLarge, len(data), maxControlFrame)
	}
	frame := wire.AppendFrameHeader(make([]byte, 0, wire.FrameHeader+len(data)), len(data))
	_, err = c.Write(append(frame, data...))
	return err
}

// awaitFuture waits for f, a change this node proposed as the leader (a
// configuration, a barrier), or until ctx ends: the change may then still
// commit (ErrOutcomeUnknown with ctx's error). Raft answers a proposal
// only once it commits or the leadership is lost, and a leader whose
// followers answer its heartbeats but store nothing keeps it.
func awaitFuture(ctx context.Context, f raft.Future) error { return awaitAnswer(ctx, f, nil) }

// answerGrace is how long awaitAnswer still waits for an answer once its
// context has ended.
const answerGrace = 10 * time.Millisecond

// awaitAnswer waits for Raft's answer to f, or until ctx ends
// (ErrOutcomeUnknown with ctx's error), or until giveUp, when not nil and
// asked every applyCheckEvery, returns an error; an answer that came
// meanwhile wins, and so does one that comes within answerGrace of ctx's
// end (a future Raft failed as it was made, ErrEnqueueTimeout with an
// enqueue timeout as long as ctx: it was never proposed). Raft's future
// offers no channel to wait on beside another, so a goroutine waits for
// it; given up on, it ends with Raft's answer, which a proposal still in
// Raft's apply channel when Raft stops never gets (hashicorp/raft v1.8.0
// does not drain it): one goroutine left per such give-up.
func awaitAnswer(ctx context.Context, f raft.Future, giveUp func() error) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	var tick <-chan time.Time
	if giveUp != nil {
		t := time.NewTicker(applyCheckEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		var stop error
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			t := time.NewTimer(answerGrace)
			select {
			case err := <-done:
				t.Stop()
				return err
			case <-t.C:
			}
			stop = fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
		case <-tick:
			stop = giveUp()
		}
		if stop != nil {
			select {
			case err := <-done: // answered meanwhile
				return err
			default:
			}
			return stop
		}
	}
}
