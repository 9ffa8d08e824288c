package logx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One address per node. Every connection starts with one byte that says what
// it carries; the mux hands it to the matching protocol:
const (
	protoRaft    byte = 1 // hashicorp/raft's NetworkTransport
	protoForward byte = 2 // follower → leader batches (forward.go)
	protoFetch   byte = 3 // file ranges for catch-up (catchup.go)
	protoControl byte = 4 // membership changes and status (membership.go)
)

// headerTimeout bounds how long a new connection may take to send its first
// byte; a peer that connects and says nothing is dropped. A variable for
// tests.
var headerTimeout = 10 * time.Second

// maxConnsPerIP bounds the connections a node accepts from one IP address
// at a time; more are closed at once. Peers need a handful each (Raft's
// pool, forwarding, catch-up, control). A variable for tests.
var maxConnsPerIP = 256

// mux accepts connections on the node's address and dispatches them by
// their first byte. It tracks every connection, accepted or dialed, so that
// close can end them all and no goroutine of a peer waits forever.
type mux struct {
	ln      net.Listener
	forward func(net.Conn) // serves a forwarding connection; runs on its own goroutine
	fetch   func(net.Conn) // serves a fetch connection
	control func(net.Conn) // serves a control connection
	raftCh  chan net.Conn
	done    chan struct{}
	wg      sync.WaitGroup
	// ctx ends when the mux closes: dials under way give up.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	inbound map[net.Conn]string // accepted connections → remote IP
	perIP   map[string]int
	closed  bool

	tls *tls.Config // mutual TLS for dials (the listener does its own)

	// raftPeer, if set, decides whether an accepted connection may speak
	// Raft (Logx.raftPeerOK); others are closed unread.
	raftPeer func(net.Conn) bool

	headerTimeout time.Duration // headerTimeout when the mux was made
	maxPerIP      int           // maxConnsPerIP when the mux was made

	// Test hooks (Config.listenAddr, Config.dialFrom): the address Raft
	// advertises when it is not the listener's, and the local address of
	// dials. Both nil normally.
	advertise net.Addr
	dialFrom  net.Addr
}

func newMux(ln net.Listener) *mux {
	ctx, cancel := context.WithCancel(context.Background())
	return &mux{ln: ln, raftCh: make(chan net.Conn), done: make(chan struct{}), conns: map[net.Conn]struct{}{},
		inbound: map[net.Conn]string{}, perIP: map[string]int{}, headerTimeout: headerTimeout, maxPerIP: maxConnsPerIP,
		ctx: ctx, cancel: cancel}
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
	return true
}

func (m *mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	if ip, ok := m.inbound[c]; ok {
		delete(m.inbound, c)
		if m.perIP[ip]--; m.perIP[ip] <= 0 {
			delete(m.perIP, ip)
		}
	}
	m.mu.Unlock()
}

// admit tracks an accepted connection, unless its IP already has
// maxConnsPerIP open or the mux is closed; then it closes c.
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
	if m.perIP[ip] >= m.maxPerIP {
		c.Close()
		return false, false
	}
	m.perIP[ip]++
	m.inbound[c] = ip
	m.conns[c] = struct{}{}
	return true, false
}

// serve runs the accept loop until close.
func (m *mux) start() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, err := m.ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return // closed
			}
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
	var b [1]byte
	_ = c.SetReadDeadline(time.Now().Add(m.headerTimeout))
	if _, err := c.Read(b[:]); err != nil {
		m.closeConn(c)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		if m.raftPeer != nil && !m.raftPeer(c) {
			m.closeConn(c)
			return
		}
		select {
		case m.raftCh <- &trackedConn{Conn: c, m: m}:
		case <-m.done:
			m.closeConn(c)
		}
	case protoForward:
		m.forward(c)
		m.closeConn(c)
	case protoFetch:
		m.fetch(c)
		m.closeConn(c)
	case protoControl:
		m.control(c)
		m.closeConn(c)
	default:
		m.closeConn(c)
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

// shut stops accepting and closes every connection, without waiting.
func (m *mux) shut() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	close(m.done)
	m.cancel()
	m.ln.Close()
	for c := range m.conns {
		c.Close()
	}
}

// testHooks applies the test hooks of cfg.
func (m *mux) testHooks(cfg Config) {
	if cfg.listenAddr != "" {
		m.advertise = hookAddr(cfg.Addr)
	}
	if ip := net.ParseIP(cfg.dialFrom); ip != nil {
		m.dialFrom = &net.TCPAddr{IP: ip}
	}
}

// hookAddr is an advertised address (test hook).
type hookAddr string

func (a hookAddr) Network() string { return "tcp" }
func (a hookAddr) String() string  { return string(a) }

// dial opens a connection to addr for protocol proto.
func (m *mux) dial(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	return m.dialContext(context.Background(), addr, proto, timeout)
}

// dialContext is dial that gives up when ctx ends (or the mux closes).
func (m *mux) dialContext(ctx context.Context, addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()
	d := net.Dialer{Timeout: timeout, LocalAddr: m.dialFrom}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if m.tls != nil {
		if c, err = tlsClient(ctx, c, m.tls, addr, timeout); err != nil {
			return nil, err
		}
	}
	if !m.track(c) {
		return nil, errClosed
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{proto}); err != nil {
		m.closeConn(c)
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	return &trackedConn{Conn: c, m: m}, nil
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

// trackedConn untracks itself when closed.
type trackedConn struct {
	net.Conn
	m    *mux
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.m.untrack(c.Conn) })
	return err
}

// raftLayer is the raft.StreamLayer over the mux.
type raftLayer struct {
	m *mux
}

var _ raft.StreamLayer = raftLayer{}

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftCh:
		return c, nil
	case <-l.m.done:
		return nil, errClosed
	}
}

// Close is a no-op: the mux belongs to the Logx, which closes it after Raft.
func (l raftLayer) Close() error { return nil }

func (l raftLayer) Addr() net.Addr {
	if l.m.advertise != nil {
		return l.m.advertise
	}
	return l.m.ln.Addr()
}

func (l raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.m.dial(string(address), protoRaft, timeout)
}
