package logx

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
)

// Forwarding: a follower sends each batch of its producer to the leader over
// a kept-open connection and waits for the answer before it sends the next
// (one batch in flight per producer keeps its entries in order, and makes a
// retry after an unknown outcome safe: the leader's apply drops entries it
// has seen). The frames are internal/wire's (forward.go there).

// forwardIdleTimeout drops a forwarding connection that carries nothing for
// this long; the follower dials again when it needs to.
const forwardIdleTimeout = 5 * time.Minute

// maxForwardFrame bounds the frame any valid sender can send: Validate caps
// MaxBatchBytes at 64 MiB, a batch's records pass MaxBatchBytes by at most
// one record's prefix, and compression is used only when it makes a batch
// smaller. A frame over the leader's own limit (nodes may be configured
// differently) but within this bound is read and discarded, so the sender
// gets its "rejected" answer instead of a broken pipe; beyond it the
// sender is not a logx node, and the connection is closed after the answer.
const maxForwardFrame = maxBatchBytes + 3*binary.MaxVarintLen64 + wire.HeaderMax

// serveForward answers forwarded batches on one connection, one at a time.
func (lx *Stream) serveForward(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	var cert *x509.Certificate
	if tc, ok := c.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			cert = certs[0]
		}
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(forwardIdleTimeout))
		n, err := wire.ReadFrameSize(r, lx.maxFrame)
		var data []byte
		if err == nil {
			// The body follows its header at once (a sender's try ends
			// within its ForwardTimeout): a peer that announces a
			// frame and holds it half-sent holds its bytes here, up to
			// maxFrame a connection, for frameBodyTimeout, not for
			// forwardIdleTimeout.
			_ = c.SetReadDeadline(time.Now().Add(lx.frameBodyTimeout()))
			// A new buffer per frame: Raft keeps the slice it applies.
			data, err = wire.ReadFrameBody(r, nil, n)
		}
		var tooLarge *wire.FrameSizeError
		if errors.As(err, &tooLarge) {
			msg := fmt.Sprintf("frame of %d bytes exceeds this leader's limit of %d bytes (its MaxBatchBytes %d plus one entry of its MaxEntrySize %d and headers)",
				tooLarge.N, tooLarge.Max, lx.cfg.MaxBatchBytes, lx.cfg.MaxEntrySize)
			lx.mux.m.peerNoise.logf(lx.logf, noiseFrame, "logx: forwarding connection from %s: rejected a %s", c.RemoteAddr(), msg)
			keep := tooLarge.N <= maxForwardFrame
			if keep {
				_ = c.SetReadDeadline(time.Now().Add(lx.cfg.ForwardTimeout))
				if _, err := io.CopyN(io.Discard, r, int64(tooLarge.N)); err != nil {
					return
				}
			}
			if lx.answer(c, wire.StatusRejected, 0, 0, msg) != nil || !keep {
				return
			}
			continue
		}
		if err != nil {
			// A reset is a sender that gave up on its try (abortConn).
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ECONNRESET) {
				lx.mux.m.peerNoise.logf(lx.logf, noiseFrame, "logx: forwarding connection from %s: %v", c.RemoteAddr(), err)
			}
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		status, idx, first, msg := lx.applyForwarded(data, cert)
		if lx.answer(c, status, idx, first, msg) != nil {
			return
		}
	}
}

// frameBodyTimeout bounds the arrival of a forwarded frame's body: this
// node's ForwardTimeout, and at least the default one, which a Client
// always uses and a follower does unless configured (nodes' timeouts may
// differ: a leader's shorter one cut a slower sender's every try).
func (lx *Stream) frameBodyTimeout() time.Duration {
	return max(lx.cfg.ForwardTimeout, defaultForwardTimeout)
}

// quietLog logs what a peer's connections can cause without bound (a
// Raft connection refused, a forwarded frame refused or cut off) at most
// once every refusedLogEvery of each kind on the node (the mux holds it,
// for every stream), saying how many were not: a peer reconnecting in a
// loop wrote thousands of lines a second to LogOutput.
type quietLog struct {
	last, skipped [noiseKinds]atomic.Int64
}

const (
	noiseRaft = iota
	noiseFrame
	noiseKinds
)

func (q *quietLog) logf(logf func(string, ...any), kind int, format string, args ...any) {
	if _, ok := onceEvery(&q.last[kind], refusedLogEvery); !ok {
		q.skipped[kind].Add(1)
		return
	}
	if n := q.skipped[kind].Swap(0); n > 0 {
		format += fmt.Sprintf(" (and %d more like it, not logged, since the one before)", n)
	}
	logf(format, args...)
}

// answer writes one response frame.
func (lx *Stream) answer(c net.Conn, status byte, idx, first uint64, msg string) error {
	resp := wire.AppendAnswer(make([]byte, 0, wire.FrameHeader+wire.AnswerHeader+len(msg)), wire.Answer{Status: status, Index: idx, First: first, Msg: msg})
	_ = c.SetWriteDeadline(time.Now().Add(lx.cfg.ForwardTimeout))
	_, err := c.Write(resp)
	return err
}

// applyForwarded checks and commits one forwarded command: a batch, or a
// clock report. cert is the sender's certificate (nil without TLS); its
// identity is stamped on the Raft entry (dedup.go).
func (lx *Stream) applyForwarded(data []byte, cert *x509.Certificate) (status byte, idx, first uint64, msg string) {
	if lx.raft.State() == raft.Leader && lx.heldUp() {
		// It proposes nothing (applyLocal): spare the check.
		return wire.StatusNotLeader, 0, 0, lx.leaderHint()
	}
	clock := len(data) > 0 && data[0] == cmdClock
	var err error
	identity := certIdentity(cert) // a batch's: its producer's owner (dedup.go)
	// A batch's records, expanded to check them, go on to apply (expand.go).
	var recs *[]byte
	defer func() { putRecords(recs) }()
	if clock {
		err = lx.checkClockReport(data, cert)
		identity = subjectIdentity(cert) // a clock report's: the voter's (clock.go)
	} else {
		recs = getRecords()
		// A record may be as large as the MaxEntrySize of any valid node,
		// not only this one's: MaxEntrySize is the logging node's limit,
		// and a leader with a smaller one refused the whole batch, other
		// callers' entries with it, for what the same node committed
		// while it led. The frame limit (maxFrame) still bounds it.
		err = validateBatch(data, lx.cfg.Format, maxBatchBytes, lx.maxFrame, recs)
	}
	if err != nil {
		return wire.StatusRejected, 0, 0, err.Error()
	}
	if lx.raft.State() != raft.Leader {
		return wire.StatusNotLeader, 0, 0, lx.leaderHint()
	}
	if !clock {
		lx.proposeSettings() // a leader records the settings before any line
	}
	idx, first, err = lx.applyBatchLocal(data, identity, recs)
	recs = nil // lent, and dropped by now
	if err != nil {
		var rej *rejectedError
		switch {
		case unproposed(err):
			// Not proposed (a leader handing over refuses every
			// command): the follower may send it again as unsent.
			return wire.StatusNotLeader, 0, 0, lx.leaderHint()
		case errors.As(err, &rej):
			return wire.StatusRejected, 0, 0, rej.msg
		}
		return wire.StatusError, 0, 0, err.Error()
	}
	return wire.StatusOK, idx, first, ""
}

// forwarder is the follower's side: one connection to the current leader,
// used by the producer goroutine only.
type forwarder struct {
	lx   *Stream
	addr string
	conn net.Conn
	r    *bufio.Reader
	hdr  [wire.FrameHeader]byte
	resp []byte
	// tls is the TLS material this producer's batches are sent with: the
	// leader stamps a batch with the certificate of its connection, and a
	// producer id belongs to the first certificate that used it. Nil: the
	// node's current (or no TLS).
	tls *tls.Config
}

// errNotSent is a try that ended before any byte of the batch went out:
// its connection could not be made.
type errNotSent struct{ err error }

func (e errNotSent) Error() string { return e.err.Error() }
func (e errNotSent) Unwrap() error { return e.err }

// errNotLeaderHint carries the leader address a peer named.
type errNotLeaderHint struct{ leader string }

func (e errNotLeaderHint) Error() string {
	return fmt.Sprintf("logx: not the leader (leader: %q)", e.leader)
}

// send forwards one batch to addr and returns the Raft index and first
// sequence number it was committed at. The try, its dial, handshake and
// answer included, is over by by (tryBy); one that fails leaves no
// connection, reset so that nothing of the batch is sent after it.
func (f *forwarder) send(addr string, batch []byte, by time.Time) (idx, first uint64, err error) {
	if f.conn != nil && f.addr != addr {
		f.reset()
	}
	if f.conn == nil {
		// With the TLS material the producer's id belongs to (tlsreload.go).
		if h := f.lx.seams.forwardDial; h != nil {
			if err := h(addr); err != nil {
				return 0, 0, errNotSent{err}
			}
		}
		ctx, cancel := context.WithDeadline(context.Background(), by)
		c, err := f.lx.mux.dialWith(ctx, f.tls, addr, wire.ProtoForward, time.Until(by))
		cancel()
		if err != nil {
			return 0, 0, errNotSent{err}
		}
		f.conn, f.addr, f.r = c, addr, bufio.NewReader(c)
	}
	_ = f.conn.SetDeadline(by)
	if err := wire.WriteFrame(f.conn, &f.hdr, batch); err != nil {
		f.abort()
		return 0, 0, err
	}
	if err := f.awaitAnswer(addr, by); err != nil {
		f.abort()
		return 0, 0, err
	}
	resp, err := wire.ReadFrame(f.r, f.resp, wire.MaxAnswer)
	if err == nil {
		f.resp = resp[:0]
	}
	a, err := answerOf(resp, err)
	if err != nil {
		f.abort()
		return 0, 0, err
	}
	switch a.Status {
	case wire.StatusOK:
		return a.Index, a.First, nil
	case wire.StatusNotLeader:
		return 0, 0, errNotLeaderHint{leader: a.Msg}
	case wire.StatusRejected:
		return 0, 0, &rejectedError{msg: a.Msg}
	default:
		return 0, 0, fmt.Errorf("logx: leader %s: %s", addr, a.Msg)
	}
}

// forwardPoll is how often a follower waiting for the leader's answer checks
// whether Raft has meanwhile elected someone else.
const forwardPoll = 50 * time.Millisecond

// awaitAnswer waits until the first byte of the answer from addr arrives,
// by deadline. It gives up early when Raft names another leader:
// a leader that went silent (paused, or cut off) would otherwise hold the
// producer for the whole timeout after its successor was elected. The batch
// is then resent to the new leader; if the old one did commit it, apply
// drops the repeat.
func (f *forwarder) awaitAnswer(addr string, deadline time.Time) error {
	for {
		poll := time.Now().Add(forwardPoll)
		if poll.After(deadline) {
			poll = deadline
		}
		_ = f.conn.SetReadDeadline(poll)
		_, err := f.r.Peek(1)
		if err == nil {
			_ = f.conn.SetReadDeadline(deadline)
			return nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !time.Now().Before(deadline) {
			return err
		}
		if leader, _ := f.lx.raft.LeaderWithID(); leader != "" && string(leader) != addr {
			return fmt.Errorf("logx: %s did not answer and Raft now names %s as leader", addr, leader)
		}
	}
}

// reset closes the connection, between tries.
func (f *forwarder) reset() {
	if f.conn != nil {
		f.conn.Close()
	}
	f.conn, f.r, f.addr = nil, nil, ""
}

// abort resets the connection of a try that failed (abortConn).
func (f *forwarder) abort() {
	if f.conn != nil {
		abortConn(f.conn)
	}
	f.conn, f.r, f.addr = nil, nil, ""
}

// answerOf decodes the answer frame resp that reading returned with err.
func answerOf(resp []byte, err error) (wire.Answer, error) {
	if err != nil {
		return wire.Answer{}, err
	}
	return wire.ParseAnswer(resp)
}

// rejectedError is a batch the leader refused as malformed; retrying cannot
// help.
type rejectedError struct{ msg string }

func (e *rejectedError) Error() string { return "logx: leader rejected batch: " + e.msg }
