package logx

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/logx-dev/logx/internal/wire"
)

// A Client logs into a cluster from a process that is not one of its nodes
// (cmd/logx forward uses it). It sends batches to the leader over the
// nodes' address, like a follower does, with its own producer id, so a
// batch retried after a lost answer or a leader change is written once.
// A Client is not safe for concurrent use.
type Client struct {
	addrs    []string
	node     string
	format   Format
	timeout  time.Duration
	producer uint64
	pseq     uint64
	// dedupWindow is the cluster's (Stats.DedupWindow): a batch that may
	// have been sent is tried again only within half of it from the first
	// try's start (retryFits). Asked again before a batch gives up on it:
	// a node that did not know the cluster's settings yet (a new cluster)
	// names the shortest window there is.
	dedupWindow time.Duration

	conn   net.Conn
	r      *bufio.Reader
	target string
	// base is the caller's TLS configuration (nil without TLS); tls is
	// what the Client dials with: base, or base with the certificate of
	// the current producer id pinned (pinCert).
	base, tls *tls.Config
	certDER   []byte // the pinned certificate's leaf
	stream    string // DefaultStream, or the stream the entries go to
}

// ClientEntry is one entry a Client sends.
type ClientEntry struct {
	Time  time.Time // zero: now
	Level slog.Level
	Msg   string
	Attrs []slog.Attr
}

// NewClient returns a Client that logs as node (the node= field of its
// lines) into the cluster whose nodes listen at addrs. It asks the nodes
// for the cluster's line format and dedup window (the window again
// before it gives up on a batch), and fails if none answers within ctx.
func NewClient(ctx context.Context, node string, addrs ...string) (*Client, error) {
	return NewClientTLS(ctx, nil, node, addrs...)
}

// NewClientTLS is NewClient for a cluster that uses mutual TLS: tlsConfig
// holds a certificate from the cluster's CA and the CA as RootCAs.
func NewClientTLS(ctx context.Context, tlsConfig *tls.Config, node string, addrs ...string) (*Client, error) {
	return NewStreamClient(ctx, tlsConfig, DefaultStream, node, addrs...)
}

// NewStreamClient is NewClientTLS for the cluster's stream called stream
// (tlsConfig is nil without TLS): the Client's entries go to that stream,
// in its format.
func NewStreamClient(ctx context.Context, tlsConfig *tls.Config, stream, node string, addrs ...string) (*Client, error) {
	if stream != DefaultStream {
		if err := checkStreamName(stream); err != nil {
			return nil, fmt.Errorf("logx: NewStreamClient: %w", err)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("logx: NewClient: no address")
	}
	for _, a := range addrs {
		if err := checkAddr(a); err != nil {
			return nil, fmt.Errorf("logx: NewClient: %w", err)
		}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	c := &Client{addrs: addrs, node: node, timeout: defaultForwardTimeout, producer: binary.BigEndian.Uint64(b[:]), base: tlsConfig, tls: tlsConfig,
		dedupWindow: defaultDedupWindow, stream: stream}
	var errs []error
	for _, a := range addrs {
		st, _, err := queryStatus(ctx, a, stream, tlsConfig)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Format == FormatJSON.String() {
			c.format = FormatJSON
		}
		if st.DedupWindow > 0 { // however short: a longer one could outlive the cluster's memory
			c.dedupWindow = st.DedupWindow
		}
		return c, nil
	}
	return nil, fmt.Errorf("logx: no node answered: %w", errors.Join(errs...))
}

// askWindow asks every node at once for the cluster's DedupWindow again,
// and takes the first answer, within the Client's timeout (a node may
// hold the ask unanswered, and all may be down: the batch is given up on
// no later than that).
func (c *Client) askWindow(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	answers := make(chan time.Duration, len(c.addrs))
	for _, a := range c.addrs {
		go func() {
			st, _, err := queryStatus(ctx, a, c.stream, c.tls)
			if err != nil {
				st.DedupWindow = 0
			}
			answers <- st.DedupWindow
		}()
	}
	for range c.addrs {
		if w := <-answers; w > 0 {
			c.dedupWindow = w
			return // the others end with ctx
		}
	}
}

// Close closes the Client's connection.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// The bounds of a Client's entries and batches: those of DefaultConfig, so
// that a leader with the default limits accepts every batch.
const (
	clientMaxEntrySize    = 64 << 10 // DefaultConfig().MaxEntrySize
	clientMaxBatchBytes   = 1 << 20  // DefaultConfig().MaxBatchBytes
	clientMaxBatchEntries = 4096     // DefaultConfig().MaxBatchEntries
)

// Send commits entries, in order, and returns the sequence number of the
// first. An entry whose rendered body exceeds 64 KiB (the default
// MaxEntrySize) fails the call with ErrEntryTooLarge before anything is
// sent. The entries go out as consecutive batches of at most 4096 entries
// and 1 MiB of records (the default MaxBatchEntries and MaxBatchBytes), one
// after another: each batch's entries get consecutive sequence numbers,
// and entries from other nodes may come between two batches. A leader
// configured with smaller limits rejects a batch.
//
// Each batch is retried across leader changes until ctx ends; then the
// error wraps ErrOutcomeUnknown if that batch may have been committed. On
// any error, the entries before the failing batch are committed and the
// error says how many; the failing batch and those after it are not
// (except as ErrOutcomeUnknown says).
func (c *Client) Send(ctx context.Context, entries []ClientEntry) (first uint64, err error) {
	if len(entries) == 0 {
		return 0, nil
	}
	// Render every entry first, so that one too large sends nothing.
	bodies, nanos, err := c.render(entries)
	if err != nil {
		return 0, err
	}
	var recs []byte
	for done := 0; done < len(entries); {
		n, size := 0, 0
		for done+n < len(entries) && n < clientMaxBatchEntries {
			rs := wire.RecordSize(len(bodies[done+n]))
			if n > 0 && size+rs > clientMaxBatchBytes {
				break
			}
			size += rs
			n++
		}
		recs = recs[:0]
		for i := done; i < done+n; i++ {
			recs = wire.AppendRecord(recs, entries[i].Level, nanos[i], bodies[i])
		}
		f, err := c.sendBatch(ctx, recs, n)
		if err != nil {
			return 0, fmt.Errorf("logx: %d of %d entries committed, then a batch of %d failed: %w", done, len(entries), n, err)
		}
		if done == 0 {
			first = f
		}
		done += n
	}
	return first, nil
}

// Check reports whether Send would refuse entries before sending any: an
// entry whose rendered body exceeds 64 KiB (ErrEntryTooLarge, naming the
// first). Entries without a Time are rendered with the time now, as Send
// does: give them one first for Check to render them exactly as Send will.
func (c *Client) Check(entries []ClientEntry) error {
	_, _, err := c.render(entries)
	return err
}

// render renders entries as Send sends them: their bodies and record
// times, or ErrEntryTooLarge for the first too large.
func (c *Client) render(entries []ClientEntry) (bodies [][]byte, nanos []int64, err error) {
	bodies, nanos = make([][]byte, len(entries)), make([]int64, len(entries))
	for i, e := range entries {
		t := e.Time
		if t.IsZero() {
			t = time.Now()
		}
		var unixNano int64
		if t = recordTime(t); !t.IsZero() {
			unixNano = t.UnixNano()
		}
		body := appendBodyStart(nil, c.format, t, e.Level, c.node, "", e.Msg)
		for _, a := range e.Attrs {
			if c.format == FormatJSON {
				body = appendAttrJSON(body, a, 1)
			} else {
				body = appendAttrText(body, "", a)
			}
		}
		if len(body) > clientMaxEntrySize {
			return nil, nil, fmt.Errorf("%w: entry %d of %d: %d bytes rendered, the limit is %d; nothing was sent",
				ErrEntryTooLarge, i, len(entries), len(body), clientMaxEntrySize)
		}
		bodies[i], nanos[i] = body, unixNano
	}
	return bodies, nanos, nil
}

// sendBatch commits the n records recs as one batch and returns its first
// sequence number. It retries across leader changes until ctx ends.
func (c *Client) sendBatch(ctx context.Context, recs []byte, n int) (first uint64, err error) {
	c.pinCert()
	encode := func() []byte {
		h := wire.Header{Producer: c.producer, FirstPSeq: c.pseq + 1, Count: n}
		c.pseq += uint64(n)
		return wire.NewBatch(h, recs, true)
	}
	batch := encode()
	sent := false
	var firstSent time.Time
	wait := 20 * time.Millisecond
	next, hops := 0, 0 // hops: hints followed since the last pause
	conflicts := 0
	asked := false // the window asked again (askWindow)
	var lastErr error
	for {
		if !sent && c.pinCert() {
			// Nothing of it reached a node, and the certificate changed
			// (the nodes may refuse the one pinned: a CA rotated): again,
			// under the new producer id.
			batch = encode()
		}
		target := c.target
		if target == "" {
			target = c.addrs[next%len(c.addrs)]
			next++
		}
		if sent && !retryFits(firstSent, c.dedupWindow) && !asked {
			asked = true
			c.askWindow(ctx)
		}
		if sent && !retryFits(firstSent, c.dedupWindow) {
			// Retrying longer could outlive the cluster's memory of this
			// producer and write the batch twice.
			return 0, fmt.Errorf("%w: tried for half the cluster's dedup window (%v) since the first try; last error: %v", ErrOutcomeUnknown, c.dedupWindow/2, lastErr)
		}
		sentBefore, dialed := sent, c.conn == nil
		tryStart := time.Now()
		status, first, msg, wrote, err := c.roundTrip(ctx, target, batch, tryBy(tryStart, firstSent, c.timeout, c.dedupWindow))
		switch {
		case err != nil:
			// Sent if the whole frame went out, unless the node refused
			// this try's own connection at its handshake (it read nothing).
			sent = sent || wrote && !(dialed && refusedAtHandshake(err))
			c.abort()
			c.target = ""
			lastErr = fmt.Errorf("%s: %w", target, err)
		case status == wire.StatusOK:
			return first, nil
		case status == wire.StatusNotLeader:
			c.Close()
			c.target = msg // "" if the node knows no leader
			lastErr = fmt.Errorf("%s: not the leader", target)
			if msg == target {
				c.target = "" // a node that names itself: wait, then ask around
			} else if msg != "" && hops < 3 {
				hops++
				continue // nodes naming each other (an election) get a pause
			}
		case status == wire.StatusRejected:
			err := fmt.Errorf("%w: batch rejected by %s: %s", ErrRejected, target, msg)
			if !isProducerConflict(&rejectedError{msg: msg}) {
				if sentBefore {
					// An earlier try may have been committed (by a leader
					// whose answer was lost); this node refusing it (its
					// limits may differ) does not say otherwise.
					return 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
				}
				return 0, err
			}
			// Another sender used this producer id: go on under a new one.
			c.producer, c.pseq = newProducerID(), 0
			if sentBefore {
				return 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			}
			batch = encode() // nothing of it was written: again, renumbered
			lastErr = err
			if conflicts++; conflicts == 1 {
				continue // a fresh id: at once
			}
			// A node that calls every id taken: pause, as after any failure,
			// until ctx ends.
		default:
			sent = true
			lastErr = fmt.Errorf("%s: %s", target, msg)
		}
		if sent && firstSent.IsZero() {
			firstSent = tryStart
		}
		select {
		case <-ctx.Done():
			if sent {
				return 0, fmt.Errorf("%w: %w (last error: %v)", ErrOutcomeUnknown, ctx.Err(), lastErr)
			}
			return 0, fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
		case <-time.After(wait):
		}
		hops = 0
		wait = min(2*wait, time.Second)
	}
}

// refusedAtHandshake reports whether err is a TLS alert the node sent (a
// certificate it refused): TLS 1.3 tells the client so only at its first
// read, after it has written, but the node read nothing of what came after
// the handshake. crypto/tls reports a received alert (but close_notify,
// an EOF) as a *net.OpError whose Op is "remote error".
func refusedAtHandshake(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// pinCert pins the certificate the caller's TLS configuration gives now
// (GetClientCertificate: ReloadingTLS, which follows rotated files) for
// the batches of this producer id, so that every try of a batch presents
// the same one: a leader refuses a producer id under another certificate
// (dedup.go), and a retry that redialled after a rotation was refused and
// reported ErrOutcomeUnknown, where the same certificate gets the answer
// of the try that was committed. Called before each new batch: once the
// certificate has changed, the Client goes on under a new producer id,
// over a new connection, as a node does (Stream.useCurrentTLS). A
// configuration with fixed Certificates has nothing to pin. It also runs
// before each try of a batch that has reached no node yet (sendBatch). It
// reports whether the producer id changed.
func (c *Client) pinCert() (renewed bool) {
	if c.base == nil || c.base.GetClientCertificate == nil {
		return false
	}
	cert, err := c.base.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return false // the pinned one stays; a dial with none reports it
	}
	if c.certDER != nil && bytes.Equal(cert.Certificate[0], c.certDER) {
		return false
	}
	cfg := c.base.Clone()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	if renewed = c.certDER != nil; renewed {
		c.producer, c.pseq = newProducerID(), 0
		c.Close()
	}
	c.tls, c.certDER = cfg, cert.Certificate[0]
	return renewed
}

// abort resets the connection of a try that failed (abortConn).
func (c *Client) abort() {
	if c.conn != nil {
		abortConn(c.conn)
		c.conn = nil
	}
}

// roundTrip sends one batch to addr and reads the answer, by by (tryBy)
// or ctx's end, whichever comes first, its dial and handshake included.
func (c *Client) roundTrip(ctx context.Context, addr string, batch []byte, by time.Time) (status byte, first uint64, msg string, wrote bool, err error) {
	ctx, cancel := context.WithDeadline(ctx, by)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if c.conn == nil {
		conn, err := dialProto(ctx, addr, c.stream, wire.ProtoForward, time.Until(deadline), c.tls)
		if err != nil {
			return 0, 0, "", false, err
		}
		c.conn, c.r, c.target = conn, bufio.NewReader(conn), addr
	}
	_ = c.conn.SetDeadline(deadline)
	conn, cut := c.conn, make(chan struct{})
	stop := context.AfterFunc(ctx, func() { // a cancel ends the wait too
		_ = conn.SetDeadline(time.Now())
		close(cut)
	})
	defer func() {
		if !stop() {
			<-cut // its deadline is set before the next call sets its own
		}
	}()
	if err := wire.WriteFrame(c.conn, new([wire.FrameHeader]byte), batch); err != nil {
		// Not all of the frame went out (a write that fails has not
		// handed all its bytes to the kernel), so no node read all of
		// it: the batch was not sent.
		return 0, 0, "", false, err
	}
	a, err := answerOf(wire.ReadFrame(c.r, nil, wire.MaxAnswer))
	return a.Status, a.First, a.Msg, true, err
}

// dialProto opens a connection to a node's address for protocol proto of
// stream ("" or DefaultStream: the default stream).
func dialProto(ctx context.Context, addr, stream string, proto byte, timeout time.Duration, tlsConfig *tls.Config) (net.Conn, error) {
	if stream == DefaultStream {
		stream = ""
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil {
		if conn, err = tlsClient(ctx, conn, tlsConfig, addr, timeout); err != nil {
			return nil, err
		}
	}
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(wire.Preface(stream, proto)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// QueryStatus asks the node at addr for its Stats.
func QueryStatus(ctx context.Context, addr string) (Stats, error) {
	return QueryStatusTLS(ctx, addr, nil)
}

// QueryStatusTLS is QueryStatus for a cluster that uses mutual TLS.
func QueryStatusTLS(ctx context.Context, addr string, tlsConfig *tls.Config) (Stats, error) {
	st, _, err := queryStatus(ctx, addr, DefaultStream, tlsConfig)
	return st, err
}

// QueryStreams asks the node at addr for the Stats of each of its streams,
// the default stream first; tlsConfig is nil without TLS.
func QueryStreams(ctx context.Context, addr string, tlsConfig *tls.Config) ([]Stats, error) {
	st, others, err := queryStatus(ctx, addr, DefaultStream, tlsConfig)
	if err != nil {
		return nil, err
	}
	return append([]Stats{st}, others...), nil
}

// QueryStreamStatus asks the node at addr for the Stats of its stream
// name; tlsConfig is nil without TLS.
func QueryStreamStatus(ctx context.Context, addr, stream string, tlsConfig *tls.Config) (Stats, error) {
	if stream != DefaultStream {
		if err := checkStreamName(stream); err != nil {
			return Stats{}, fmt.Errorf("logx: stream: %w", err)
		}
	}
	st, _, err := queryStatus(ctx, addr, stream, tlsConfig)
	return st, err
}

// SetClusterLevel sets the cluster level of stream (Stream.SetClusterLevel)
// through the node at addr, or through the stream's leader if that node
// names it; tlsConfig is nil without TLS. It returns once the node at addr
// applied the change, so that its status shows it. While no leader answers
// (an election, a leader handing over) it asks again until ctx ends, or
// for a minute if ctx has no deadline; addr not answering is an error at
// once. A request that went out and got no answer within ctx may have been
// committed: that error wraps ErrOutcomeUnknown (asking again is safe: the
// change sets a value).
func SetClusterLevel(ctx context.Context, addr, stream string, level slog.Level, tlsConfig *tls.Config) error {
	if err := checkClusterLevel(level); err != nil {
		return err
	}
	return changeVia(ctx, addr, stream, controlRequest{Op: "set-level", Level: &level}, tlsConfig)
}

// TruncateBefore sets the truncation point of stream (Stream.TruncateBefore)
// through the node at addr, as SetClusterLevel does.
func TruncateBefore(ctx context.Context, addr, stream string, seq uint64, tlsConfig *tls.Config) error {
	if seq == 0 {
		return errors.New("logx: TruncateBefore: sequence numbers start at 1")
	}
	return changeVia(ctx, addr, stream, controlRequest{Op: "truncate", Seq: seq}, tlsConfig)
}

// changeVia has the stream's leader commit req, asking the node at addr
// and then the leader it names, and returns once the node at addr applied
// it. Without a deadline in ctx it gives up after changeTimeout.
func changeVia(ctx context.Context, addr, stream string, req controlRequest, tlsConfig *tls.Config) error {
	if stream != DefaultStream {
		if err := checkStreamName(stream); err != nil {
			return fmt.Errorf("logx: stream: %w", err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, changeTimeout)
		defer cancel()
	}
	idx, err := commitVia(ctx, addr, stream, req, tlsConfig)
	if err != nil {
		return err
	}
	for {
		st, err := QueryStreamStatus(ctx, addr, stream, tlsConfig)
		if err != nil {
			return fmt.Errorf("logx: %s is committed, but %s did not say it applied it: %w", req.Op, addr, err)
		}
		if st.AppliedIndex >= idx {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logx: %s is committed, but %s has not applied it yet: %w", req.Op, addr, ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling a peer's status
		}
	}
}

// changeTimeout bounds SetClusterLevel and TruncateBefore when their
// context has no deadline.
const changeTimeout = time.Minute

// commitVia sends req to the node at addr, then to the leader it names
// (which may just have lost the leadership), and returns the Raft index
// of what the leader committed. While no leader answers (an election, a
// leader handing over, a named leader that cannot be reached) it asks
// again, from addr, until ctx ends; addr itself failing is an error at
// once.
func commitVia(ctx context.Context, addr, stream string, req controlRequest, tlsConfig *tls.Config) (uint64, error) {
	target, hops := addr, 0
	wait := 20 * time.Millisecond
	var lastErr error
	lost := false // a try went out and got no answer (maybeMade)
	for {
		resp, err := askHop(ctx, target != addr, target, stream, req, tlsConfig)
		lost = lost || errors.As(err, new(answerLost)) || err == nil && resp.Proposed
		switch {
		case err != nil && target == addr:
			return 0, maybeMade(req, lost, err)
		case err != nil:
			lastErr = err // a leader named, gone since: ask addr again
		case resp.NoStream && target != addr:
			lastErr = resp.err() // a leader named that does not hold it: ask addr again
		case !resp.NotLeader:
			return resp.Index, maybeMade(req, lost, resp.err())
		case resp.Leader != "" && resp.Leader != target && hops < 3:
			target, hops = resp.Leader, hops+1
			continue
		default:
			lastErr = fmt.Errorf("logx: %s: not the leader of stream %q", target, stream)
			if resp.Leader == "" {
				lastErr = fmt.Errorf("%w, and no leader known", lastErr)
			}
			if resp.Error != "" { // the stream not open there (refuseControl)
				lastErr = fmt.Errorf("%w (%s)", lastErr, resp.Error)
			}
		}
		select {
		case <-ctx.Done():
			return 0, maybeMade(req, lost, fmt.Errorf("%w: %w", lastErr, ctx.Err()))
		case <-time.After(wait):
		}
		target, hops = addr, 0
		wait = min(2*wait, time.Second)
	}
}

// controlTry bounds a status request of the Client's, and a change's try
// whose context has no later deadline.
var controlTry = 10 * time.Second

// askHop is askControl; a hop to a leader that another node named gets
// half of what is left of ctx, or controlTry if that is longer, so that
// one gone silent leaves time to ask the first node again.
func askHop(ctx context.Context, hop bool, addr, stream string, req controlRequest, tlsConfig *tls.Config) (controlResponse, error) {
	if d, ok := ctx.Deadline(); ok && hop {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(time.Until(d)/2, controlTry))
		defer cancel()
	}
	return askControl(ctx, addr, stream, req, tlsConfig)
}

// askControl sends req to the node at addr and reads its answer, by
// controlTry; a change, as long as ctx allows (it may take longer: voters
// slow to say which version they run, a slow disk), up to
// defaultControlTimeout.
func askControl(ctx context.Context, addr, stream string, req controlRequest, tlsConfig *tls.Config) (controlResponse, error) {
	if err := checkAddr(addr); err != nil {
		return controlResponse{}, fmt.Errorf("logx: %w", err)
	}
	conn, err := dialProto(ctx, addr, stream, wire.ProtoControl, controlTry, tlsConfig)
	if err != nil {
		return controlResponse{}, fmt.Errorf("logx: %s: %w", addr, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(controlTry)
	if d, ok := ctx.Deadline(); ok && req.Op != "status" && d.After(deadline) {
		deadline = d
		if limit := time.Now().Add(defaultControlTimeout); d.After(limit) {
			deadline = limit
		}
	}
	req.TimeoutMS = time.Until(deadline).Milliseconds()
	resp, err := controlExchange(ctx, conn, req, deadline)
	if err != nil {
		return resp, fmt.Errorf("logx: %s: %w", addr, err)
	}
	return resp, nil
}

// queryStatus asks the node at addr for the status of stream; with the
// default stream's come the other streams'.
func queryStatus(ctx context.Context, addr, stream string, tlsConfig *tls.Config) (Stats, []Stats, error) {
	var st Stats
	resp, err := askControl(ctx, addr, stream, controlRequest{Op: "status"}, tlsConfig)
	if err != nil {
		if stream != DefaultStream && isEOFish(err) {
			err = fmt.Errorf("%w (does the node have stream %q?)", err, stream)
		}
		return st, nil, err
	}
	if resp.Status == nil {
		return st, nil, fmt.Errorf("logx: %s: no status: %v", addr, resp.err())
	}
	return *resp.Status, resp.Streams, nil
}

// isEOFish reports whether err is what reading from a connection the peer
// closed unread returns.
func isEOFish(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}
