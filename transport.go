package logx

import (
	"bufio"
	"cmp"
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logx-dev/logx/internal/wire"
)

// headerTimeout bounds how long a new connection may take to send its first
// byte; a peer that connects and says nothing is dropped.
const headerTimeout = 10 * time.Second

// maxConnsPerIP, plus connsPerStream for each stream the node has open,
// bounds the connections a node accepts from one IP address at a time;
// more are closed at once. A peer needs some for the node (control,
// catch-up, status), and some per stream: Raft keeps up to 3 pooled
// connections to each follower of every stream it leads (heartbeats and
// replication each hold one), and a follower one forwarding connection to
// each stream's leader. So a node restarted into a cluster whose other
// nodes lead its 256 streams (maxStreams) takes about 2 to 3 per stream
// from each; with a flat 256 the streams past about 100 lost their
// heartbeats, and held elections again and again.
const (
	maxConnsPerIP  = 256
	connsPerStream = 4
)

// maxPendingConns bounds the connections, from all addresses together,
// that have not yet sent their preface (their TLS handshake included): a
// client needs no certificate to hold one for headerTimeout, so a host
// with many addresses could otherwise hold as many file descriptors as it
// can open in that time, until the node's own files failed to open. When
// the bound is reached, a new connection closes the oldest that is still
// silent, not itself: a peer's handshake takes milliseconds, so a flood
// of silent connections cannot keep the peers out (refusing the new ones
// would let four addresses' silent connections refuse every peer). The
// bound grows to perIPLimit for each of Config.Peers (at least two), so
// that peers that connect all their streams' connections at once (a TLS
// cluster of many streams restarting) do not push each other out while
// their handshakes queue for the CPU.
const maxPendingConns = 1024

// refusedLogEvery bounds how often a refused connection is logged.
const refusedLogEvery = time.Minute

// mux accepts connections on the node's address and dispatches them by
// their first byte. It tracks every connection, accepted or dialed, so that
// close can end them all and no goroutine of a peer waits forever.
type mux struct {
	ln   net.Listener
	done chan struct{}
	wg   sync.WaitGroup
	// ctx ends when the mux closes: dials under way give up.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// peerCerts are the certificate chains the peers of TLS connections
	// presented, once their handshake is done (certcheck.go).
	peerCerts map[net.Conn]*peerCert
	inbound   map[net.Conn]string // accepted connections → remote IP
	perIP     map[string]int
	closed    bool
	// endpoints are the streams' ends of the mux, by stream name ("" for
	// the default stream); added is closed (and replaced) when one is
	// registered.
	endpoints map[string]*endpoint
	added     chan struct{}
	// expect says whether this node is to open stream name (declared, or
	// in the catalog): waitEndpoint waits the header timeout for those,
	// and unknownWait for others (the catalog may not have reached this
	// node yet). Set before start; nil: none is expected. startStreams
	// counts them as the node starts (perIPLimit).
	expect       func(name string) bool
	startStreams int
	unknownWait  time.Duration
	// starting, set before start, says whether this node is to open stream
	// name, which it has not begun to (ok), and whether the stream's
	// directory holds Raft state: a status request for it is answered so
	// (answerStarting, bootstrap.go). addr is the node's Addr, which the
	// answer names; answered, a test's, is called after each answer.
	starting func(name string) (raftState, ok bool)
	addr     string
	answered func()
	// states are the streams this node is opening, by name, and whether
	// each has Raft state (noteState; under mu). asking counts this node's
	// streams asking their peers whether to bootstrap (clusterRuns).
	states map[string]bool
	asking atomic.Int32

	tlsConf func() *tls.Config // mutual TLS for dials (nil config: none); the listener does its own
	diag    *log.Logger        // the node's diagnostics (Config.LogOutput)

	headerTimeout time.Duration // headerTimeout, or a test's
	maxPerIP      int           // maxConnsPerIP, or a test's
	maxPending    int           // maxPendingConns, or a test's
	// pending holds the accepted connections whose preface is not read
	// yet, oldest first (mu); peers is len(Config.Peers).
	pending       *list.List
	pendingAt     map[net.Conn]*list.Element
	peers         int
	refusedLogged atomic.Int64 // monoNanos of the last refused connection logged
	peerNoise     quietLog     // what peers' connections cause, logged sparingly, for every stream (forward.go)

	// advertise is the address Raft tells its peers: Addr, whatever the
	// listener's (ListenAddr may be ":port", and Addr a DNS name).
	advertise net.Addr
	// Test hooks (seams): the local address of dials, and a stand-in for
	// DNS. Both nil normally.
	dialFrom net.Addr
	resolve  func(host string) (string, error)
}

// newMux returns the mux of the node whose Config is cfg, listening on ln.
func newMux(ln net.Listener, cfg Config, sm seams, tlsConf func() *tls.Config) *mux {
	ctx, cancel := context.WithCancel(context.Background())
	m := &mux{ln: ln, done: make(chan struct{}), conns: map[net.Conn]struct{}{},
		inbound: map[net.Conn]string{}, perIP: map[string]int{}, peerCerts: map[net.Conn]*peerCert{}, endpoints: map[string]*endpoint{}, added: make(chan struct{}), states: map[string]bool{},
		headerTimeout: cmp.Or(sm.headerTimeout, headerTimeout), maxPerIP: cmp.Or(sm.maxConnsPerIP, maxConnsPerIP), maxPending: cmp.Or(sm.maxPendingConns, maxPendingConns),
		pending: list.New(), pendingAt: map[net.Conn]*list.Element{}, peers: len(cfg.Peers),
		tlsConf: tlsConf, addr: cfg.Addr, answered: sm.startingAnswered, advertise: advertisedAddr(cfg.Addr), resolve: sm.resolve, ctx: ctx, cancel: cancel,
		unknownWait: max(cfg.ElectionTimeout, 500*time.Millisecond),
		diag:        log.New(cfg.withDefaults().LogOutput, "", log.LstdFlags|log.Lmicroseconds)}
	if ip := net.ParseIP(sm.dialFrom); ip != nil {
		m.dialFrom = &net.TCPAddr{IP: ip}
	}
	return m
}

// track registers c; it returns false (and closes c) once the mux is closed.
func (m *mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		c.Close()
		return false
	}
	m.conns[c] = struct{}{}
	m.noteCertsLocked(c) // dialed: the handshake is done
	return true
}

func (m *mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	delete(m.peerCerts, c)
	if ip, ok := m.inbound[c]; ok {
		delete(m.inbound, c)
		if m.perIP[ip]--; m.perIP[ip] <= 0 {
			delete(m.perIP, ip)
		}
	}
	m.mu.Unlock()
}

// perIPLimit is how many connections one IP address may hold open:
// maxConnsPerIP, and connsPerStream more for each stream open here, or to
// be opened as the node starts (peers connect to those before they open,
// and wait for them). m.mu is held.
func (m *mux) perIPLimit() int {
	return m.maxPerIP + connsPerStream*max(len(m.endpoints), m.startStreams)
}

// pendingLimit is the pending bound: maxPendingConns, or perIPLimit for
// each of Config.Peers (at least two) when that is more. m.mu is held.
func (m *mux) pendingLimit() int { return max(m.maxPending, max(2, m.peers)*m.perIPLimit()) }

// admit tracks an accepted connection, unless its IP already has
// perIPLimit open or the mux is closed; then it closes c. An admitted
// connection is pending until dispatch has read its preface; past the
// pending bound (maxPendingConns), the oldest pending one is closed.
func (m *mux) admit(c net.Conn) (ok, closed bool) {
	ip := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		c.Close()
		return false, true
	}
	if limit := m.perIPLimit(); m.perIP[ip] >= limit {
		c.Close()
		if _, ok := onceEvery(&m.refusedLogged, refusedLogEvery); ok {
			m.diag.Printf("logx: refused a connection from %s: it has %d open, the most one address may (%d, and %d per stream open here)", ip, limit, m.maxPerIP, connsPerStream)
		}
		return false, false
	}
	if limit := m.pendingLimit(); m.pending.Len() >= limit {
		old := m.pending.Remove(m.pending.Front()).(net.Conn)
		delete(m.pendingAt, old)
		m.wg.Add(1)
		go func() { // its dispatch, reading, sees it closed; a TLS close may write
			defer m.wg.Done()
			old.Close()
		}()
		if _, ok := onceEvery(&m.refusedLogged, refusedLogEvery); ok {
			m.diag.Printf("logx: closed a connection from %s that had not sent its first bytes: %d were waiting, the most the node waits for at once", old.RemoteAddr(), limit)
		}
	}
	m.pendingAt[c] = m.pending.PushBack(c)
	m.perIP[ip]++
	m.inbound[c] = ip
	m.conns[c] = struct{}{}
	return true, false
}

// start runs the accept loop until close. An error of Accept other than
// the listener's close (out of file descriptors or memory) is logged and
// Accept tried again after a pause, 5 ms doubling to 1 s: a node that
// stopped accepting would hang every peer's connection in its backlog
// until restarted.
func (m *mux) start() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		var pause time.Duration
		for {
			c, err := m.ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				if pause == 5*time.Millisecond || pause == time.Second { // an episode's first, then each second
					m.diag.Printf("logx: accepting connections: %v; trying again in %v", err, pause)
				}
				select {
				case <-m.done:
					return
				case <-time.After(pause):
				}
				continue
			}
			pause = 0
			ok, closed := m.admit(c)
			if closed {
				return
			}
			if !ok {
				continue // too many from that address
			}
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.dispatch(c)
			}()
		}
	}()
}

func (m *mux) dispatch(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(m.headerTimeout))
	name, proto, err := wire.ReadPreface(c, validStreamName, DefaultStream)
	m.mu.Lock()
	if el, ok := m.pendingAt[c]; ok {
		m.pending.Remove(el)
		delete(m.pendingAt, c)
	}
	m.mu.Unlock()
	if err != nil {
		m.closeConn(c)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	m.noteCerts(c)   // the preface came after the handshake
	h := net.Conn(c) // what the handler reads from
	if proto == wire.ProtoControl && !m.isOpen(name) {
		// A stream still starting answers a status request at once
		// (bootstrap.go).
		var answered bool
		if h, answered = m.answerStarting(c, name); answered {
			m.closeConn(c)
			return
		}
	}
	stream := cmp.Or(name, DefaultStream)
	wait := m.headerTimeout
	if proto == wire.ProtoControl {
		// Within half an asker's try (controlTry): it gets "not open"
		// rather than no answer, which for a change would be "unknown".
		wait = min(wait, controlTry/2)
	}
	e := m.waitEndpoint(name, wait)
	if e == nil {
		if name == "" || m.expect != nil && m.expect(name) {
			m.refuseControl(h, proto, false, "logx: stream %q is not open on %s yet", stream, m.addr)
		} else {
			m.refuseControl(h, proto, true, "logx: %s has no stream %q", m.addr, stream)
		}
		m.closeConn(c) // no such stream here
		return
	}
	ok, done := e.serving(c)
	if !ok {
		m.refuseControl(h, proto, false, "logx: stream %q is closing on %s", stream, m.addr)
		m.closeConn(c) // it is closing
		return
	}
	defer done()
	if proto != wire.ProtoRaft && !e.waitOpen(wait) {
		m.refuseControl(h, proto, false, "logx: stream %q is not open on %s (closing, or not started in time)", stream, m.addr)
		proto = 0 // the stream closed, or did not start in time: drop c
	}
	switch proto {
	case wire.ProtoRaft:
		if e.raftPeer == nil || e.raftPeer(c) {
			if e.raftPeer != nil {
				m.keepVetting(c, e.raftPeer)
			}
			select {
			case e.raftCh <- &trackedConn{Conn: c, m: m, e: e}:
				return // Raft's transport owns it now
			case <-e.done:
			}
		}
	case wire.ProtoForward:
		e.forward(c)
	case wire.ProtoFetch:
		e.fetch(c)
	case wire.ProtoControl:
		e.control(h)
	}
	e.drop(c)
	m.closeConn(c)
}

// refuseControl answers a control request (proto) that no stream will
// carry out with an error saying why (format, args), so that its sender
// knows it was not carried out: a connection closed unanswered could also
// be a request carried out and its answer lost (controlExchange). A
// stream closing or not open yet is "not the leader" (NotLeader: the
// sender asks again, elsewhere or later, as it did when such a connection
// was closed); a stream this node does not hold (noStream), NoStream
// (definitive for the node the caller named; a node asking its peers goes
// on to the next). Other protocols' connections are only closed, as
// before.
func (m *mux) refuseControl(h net.Conn, proto byte, noStream bool, format string, args ...any) {
	if proto != wire.ProtoControl {
		return
	}
	resp := controlResponse{NotLeader: !noStream, NoStream: noStream, Error: fmt.Sprintf(format, args...)}
	_ = h.SetReadDeadline(time.Now().Add(m.headerTimeout))
	if _, err := wire.ReadFrame(bufio.NewReader(h), nil, maxControlFrame); err != nil {
		return
	}
	_ = h.SetWriteDeadline(time.Now().Add(m.headerTimeout))
	_ = writeJSONFrame(h, resp)
}

// waitEndpoint returns the endpoint of stream name. A stream this node is
// to open (m.expect; the default stream, while the node starts) but has
// not opened yet is waited for, up to limit (the header timeout; less for
// a control request): peers open a stream at slightly different moments,
// and the first to open it calls its first election while the others are
// still opening it. Any other stream is waited for a little (unknownWait,
// an ElectionTimeout, at most limit): its creation may not have reached
// this node's catalog yet. nil if it does not come in time, or the mux
// closes.
func (m *mux) waitEndpoint(name string, limit time.Duration) *endpoint {
	var timeout <-chan time.Time
	for {
		m.mu.Lock()
		e, added := m.endpoints[name], m.added
		m.mu.Unlock()
		if e != nil {
			return e
		}
		if timeout == nil {
			wait := min(m.unknownWait, limit)
			if name == "" || m.expect != nil && m.expect(name) {
				wait = limit // the default stream: the node is starting
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-added:
		case <-timeout:
			return nil
		case <-m.done:
			return nil
		}
	}
}

func (m *mux) closeConn(c net.Conn) {
	c.Close()
	m.untrack(c)
}

// close stops accepting, closes every connection and waits for the
// goroutines the mux started.
func (m *mux) close() {
	m.shut()
	m.wg.Wait()
}

// shut stops accepting and closes every connection (cut), without
// waiting.
func (m *mux) shut() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.done)
	m.cancel()
	m.ln.Close()
	conns := make(map[net.Conn]bool, len(m.conns))
	for c := range m.conns {
		_, in := m.inbound[c]
		conns[c] = in
	}
	m.mu.Unlock()
	cutAtOnce(conns, cutConn)
}

// cut closes c as a shut does, and untracks it.
func (m *mux) cut(c net.Conn) {
	m.mu.Lock()
	_, in := m.inbound[c]
	m.mu.Unlock()
	cutConn(c, in)
	m.untrack(c)
}

// advertisedAddr is the address Raft advertises: Config.Addr.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// dialContext opens a connection to addr that starts with pre (see
// preface), and gives up when ctx ends or the mux closes.
func (m *mux) dialContext(ctx context.Context, tlsCfg *tls.Config, addr string, pre []byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()
	d := net.Dialer{Timeout: timeout, LocalAddr: m.dialFrom}
	target := addr
	if m.resolve != nil {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		ip, err := m.resolve(host)
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return nil, dnsErr // as a resolver says it: a timeout, say
		}
		if err != nil {
			return nil, &net.DNSError{Err: err.Error(), Name: host, IsNotFound: true}
		}
		target = net.JoinHostPort(ip, port)
	}
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if tlsCfg == nil {
		tlsCfg = m.tlsConf()
	}
	if tlsCfg != nil {
		if c, err = tlsClient(ctx, c, tlsCfg, addr, timeout); err != nil {
			return nil, err
		}
	}
	if !m.track(c) {
		return nil, errClosed
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(pre); err != nil {
		m.closeConn(c)
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// tlsClient runs the client side of a TLS handshake on c, naming the peer
// after addr's host unless cfg names it. It closes c on failure.
func tlsClient(ctx context.Context, c net.Conn, cfg *tls.Config, addr string, timeout time.Duration) (net.Conn, error) {
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("logx: TLS with %s: %w", addr, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
