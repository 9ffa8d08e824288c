package logx

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/wire"
	"github.com/stretchr/testify/require"
)

// TestConnLimits: a connection that sends nothing is dropped after the
// header timeout, and one IP address cannot hold more than maxConnsPerIP
// connections and connsPerStream per open stream; closing some makes room
// again, and more streams make more.
func TestConnLimits(t *testing.T) {
	t.Parallel()                                                                                 // its limits are its own node's (seams), not the package's
	lx := newSingleSeams(t, nil, seams{headerTimeout: 300 * time.Millisecond, maxConnsPerIP: 8}) // one node: no peer holds connections to it

	// Silent connection: dropped.
	c, err := net.Dial("tcp", lx.cfg.Addr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "a silent connection must be closed by the node")
	require.False(t, isTimeout(err), "the node should have closed it before our deadline")

	flood(t, lx, 8+connsPerStream) // the default stream
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"a", "b"} {
		require.NoError(t, lx.CreateStream(ctx, StreamConfig{Name: name}))
	}
	flood(t, lx, 8+3*connsPerStream)

	// Restarted, the node counts the streams it is to open before it has
	// opened them: peers connect to those first and wait.
	cfg := lx.node.cfg
	require.NoError(t, lx.Close())
	lx, err = newNode(cfg, seams{headerTimeout: 300 * time.Millisecond, maxConnsPerIP: 8})
	require.NoError(t, err)
	defer lx.Close()
	require.Equal(t, 3, lx.node.mux.startStreams)
	lx.node.mux.mu.Lock()
	require.Equal(t, 8+3*connsPerStream, lx.node.mux.perIPLimit())
	lx.node.mux.mu.Unlock()
}

// TestPendingLimitGrowsWithPeers: the pending bound grows to perIPLimit
// for each of Config.Peers (at least two), so that peers connecting all
// their streams at once do not push each other out.
func TestPendingLimitGrowsWithPeers(t *testing.T) {
	peers := func(n int) []string {
		var p []string
		for i := range n {
			p = append(p, fmt.Sprintf("127.0.0.%d:7000", i+1))
		}
		return p
	}
	for _, tc := range []struct{ peers, startStreams, want int }{
		{1, 0, 4},   // the fixed bound: 2 × 1 is less
		{5, 0, 5},   // 5 peers × 1
		{5, 2, 45},  // 5 peers × (1 + 2 streams × connsPerStream)
		{1, 2, 18},  // at least two: 2 × 9
		{0, 10, 82}, // no Peers (a Join): still two
	} {
		m := newMux(nil, Config{Peers: peers(tc.peers)}, seams{maxPendingConns: 4, maxConnsPerIP: 1}, nil)
		m.startStreams = tc.startStreams
		m.mu.Lock()
		got := m.pendingLimit()
		m.mu.Unlock()
		require.Equal(t, tc.want, got, "%d peers, %d streams", tc.peers, tc.startStreams)
	}
}

// TestPendingConnLimit: connections that have sent nothing yet (a TLS
// handshake not begun counts too) are bounded across all addresses, not
// only per address: past the bound a new one closes the oldest silent one,
// not itself, so silent connections from a few addresses cannot keep
// peers out; the places free as the silent ones go.
func TestPendingConnLimit(t *testing.T) {
	t.Parallel()
	// 12 pending at most: over twice the per-address limit (1, and 4 for
	// the default stream).
	lx := newSingleSeams(t, nil, seams{headerTimeout: time.Minute, maxPendingConns: 12, maxConnsPerIP: 1})
	pending := func() int {
		lx.node.mux.mu.Lock()
		defer lx.node.mux.mu.Unlock()
		return lx.node.mux.pending.Len()
	}
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	dial := func(i int) net.Conn { // each from an address of its own
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}}
		c, err := d.Dial("tcp", lx.cfg.Addr)
		require.NoError(t, err)
		return c
	}
	for i := range 12 {
		silent = append(silent, dial(i))
	}
	require.True(t, waitFor(10*time.Second, func() bool { return pending() == 12 }), "%d pending, want 12", pending())
	for i := 12; i < 14; i++ {
		silent = append(silent, dial(i))
	}
	closed := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !isTimeout(err)
	}
	require.True(t, closed(silent[0]), "the oldest silent connection was not closed for a new one")
	require.True(t, closed(silent[1]))
	require.Equal(t, 12, pending())
	// A status request gets through, pushing out another silent one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := lx.defaultStream.remoteStatus(ctx, lx.cfg.Addr)
	require.NoError(t, err, "a status request while the silent connections fill the bound")
	require.True(t, closed(silent[2]))
	for _, c := range silent {
		c.Close()
	}
	silent = nil
	require.True(t, waitFor(10*time.Second, func() bool { return pending() == 0 }), "closed connections must free their places")
}

// flood opens more connections to lx than one address may hold, and checks
// that limit of them stay open, then closes them and checks that their
// places are free again.
func flood(t *testing.T, lx *Logx, limit int) {
	t.Helper()
	// Each says it carries forwarded batches, so that the header timeout
	// does not close it meanwhile.
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	n := limit + 12
	for range n {
		c, err := net.Dial("tcp", lx.cfg.Addr)
		require.NoError(t, err)
		_, _ = c.Write([]byte{wire.ProtoForward})
		open = append(open, c)
	}
	perIP := func() int {
		lx.node.mux.mu.Lock()
		defer lx.node.mux.mu.Unlock()
		return lx.node.mux.perIP["127.0.0.1"]
	}
	require.True(t, waitFor(10*time.Second, func() bool { return perIP() == limit }), "%d open, want %d", perIP(), limit)
	closedByNode := 0
	for _, c := range open {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closedByNode++
		}
	}
	// The 12 over the limit were closed at once (now and then one more
	// reads as closed: its reset raced our read).
	require.GreaterOrEqual(t, closedByNode, n-limit)
	for _, c := range open {
		c.Close()
	}
	open = nil
	require.True(t, waitFor(10*time.Second, func() bool { return perIP() == 0 }), "closed connections must free their places")
}

// failingListener's Accept fails with EMFILE while fail is above zero.
type failingListener struct {
	net.Listener
	fail atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fail.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	l.fail.Store(0)
	return l.Listener.Accept()
}

// TestAcceptErrorRetried: an Accept that fails for want of file
// descriptors is logged and tried again; the node goes on answering.
// (The accept loop took any error but a timeout for the listener's close
// and returned: the node then never accepted a connection again, its
// peers' dials hanging in the backlog.)
func TestAcceptErrorRetried(t *testing.T) {
	t.Parallel()
	var ln *failingListener
	diag := &syncBuffer{}
	lx := newSingleSeams(t, func(cfg *Config) { cfg.LogOutput = diag }, seams{listener: func(l net.Listener) net.Listener {
		ln = &failingListener{Listener: l}
		return ln
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln.fail.Store(12) // pauses of 5 ms doubling to 1 s: about 5 s in all
	// The loop waits in Accept: one connection lets it call again.
	c, err := net.Dial("tcp", lx.cfg.Addr)
	require.NoError(t, err)
	c.Close()
	require.True(t, waitFor(10*time.Second, func() bool { return strings.Contains(diag.String(), "too many open files") }), "logged: %s", diag.String())
	st, _, err := lx.defaultStream.remoteStatus(ctx, lx.cfg.Addr)
	require.NoError(t, err, "a status request after the failures")
	require.Equal(t, lx.cfg.Addr, st.Addr)
	require.LessOrEqual(t, ln.fail.Load(), int32(0), "answered once the failures ended")
	require.Contains(t, diag.String(), "logx: accepting connections: accept tcp: accept4: too many open files; trying again in 5ms")
	require.Contains(t, diag.String(), "trying again in 1s", "and once a second while they last")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A control request for a stream that is not open is answered within half
// an asker's try (controlTry), whatever the header timeout: "not open" in
// time, where no answer would make a change's outcome unknown. (The node
// waited the header timeout, 10 s, which was as long as the try.)
func TestRefuseControlWithinTry(t *testing.T) {
	defer func(d time.Duration) { controlTry = d }(controlTry)
	controlTry = time.Second
	addr := unopenedStreams(t, 5*time.Second)
	for _, stream := range []string{"expected", "unopened"} {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_, err = conn.Write(wire.Preface(stream, wire.ProtoControl))
		require.NoError(t, err)
		resp, err := controlExchange(t.Context(), conn, controlRequest{Op: "set-level"}, time.Now().Add(controlTry))
		conn.Close()
		require.NoError(t, err, "%s: answered within the try", stream)
		require.True(t, resp.NotLeader, stream)
		require.Contains(t, resp.Error, "is not open", stream)
	}
}

// A stream's endpoint is registered before its Raft exists (Raft's
// transport needs it), so a control, forward or fetch connection may
// arrive first: its handler waits until the stream opens the endpoint, and
// a connection for an endpoint that closes without opening is dropped
// unserved. (Without the wait, a status request read the stream's Raft
// while NewRaft was still setting it: CI's race detector saw it in
// TestAddNodeLearnsStreams.)
func TestEndpointWaitsUntilOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m := newMux(ln, Config{Addr: ln.Addr().String()}, seams{headerTimeout: 5 * time.Second}, func() *tls.Config { return nil })
	m.expect = func(name string) bool { return name == "later" } // as if declared, or in the catalog
	m.start()
	defer m.close()
	served := make(chan string, 4)
	handler := func(what string) func(net.Conn) { return func(net.Conn) { served <- what } }
	e, err := m.endpoint("audit", handler("forward"), handler("fetch"), handler("control"), nil)
	require.NoError(t, err)

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(wire.Preface("audit", wire.ProtoControl))
	require.NoError(t, err)
	select {
	case what := <-served:
		t.Fatalf("the %s handler ran before the endpoint opened", what)
	case <-time.After(300 * time.Millisecond):
	}
	e.open()
	select {
	case what := <-served:
		require.Equal(t, "control", what)
	case <-time.After(5 * time.Second):
		t.Fatal("the control handler did not run once the endpoint opened")
	}

	// An endpoint that closes before it opens drops the waiting connection.
	e2, err := m.endpoint("access", handler("forward"), handler("fetch"), handler("control"), nil)
	require.NoError(t, err)
	c2, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c2.Close()
	_, err = c2.Write(wire.Preface("access", wire.ProtoFetch))
	require.NoError(t, err)
	require.True(t, waitFor(5*time.Second, func() bool {
		e2.mu.Lock()
		defer e2.mu.Unlock()
		return len(e2.conns) == 1
	}), "the fetch connection should be waiting on its endpoint")
	e2.shut()
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c2.Read(make([]byte, 1))
	require.Error(t, err)
	require.False(t, isTimeout(err), "the connection should be closed, not left waiting")
	require.Empty(t, served, "no handler may run for an endpoint that never opened")

	// A connection for a stream this node is to open but has not yet
	// waits for it: a peer that opened it first calls its first election
	// while this node is still opening it. A control request for a stream
	// the node knows nothing of is answered, after a short wait
	// (unknownWait), that it has no such stream: not carried out.
	c4, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c4.Close()
	_, err = c4.Write(wire.Preface("unknown", wire.ProtoControl))
	require.NoError(t, err)
	resp, err := controlExchange(t.Context(), c4, controlRequest{Op: "set-level"}, time.Now().Add(3*time.Second))
	require.NoError(t, err, "a request for an unknown stream should be answered within unknownWait")
	require.Contains(t, resp.Error, `has no stream "unknown"`)

	c3, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c3.Close()
	_, err = c3.Write(wire.Preface("later", wire.ProtoControl))
	require.NoError(t, err)
	require.True(t, waitFor(5*time.Second, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.perIP["127.0.0.1"] >= 1 && len(m.endpoints) == 2 // c3 is in, and waits
	}))
	e3, err := m.endpoint("later", handler("forward"), handler("fetch"), handler("control"), nil)
	require.NoError(t, err)
	e3.open()
	select {
	case what := <-served:
		require.Equal(t, "control", what)
	case <-time.After(5 * time.Second):
		t.Fatal("the connection for a stream registered later was not served")
	}
}

// A control request no stream will carry out is answered so: "not the
// leader" (ask again, elsewhere or later) for a stream this node is to
// open but has not yet, or whose endpoint does not open in time; "no such
// stream" for one it knows nothing of. Before, the connection was closed
// unanswered, which a sender cannot tell from a request carried out whose
// unopenedStreams starts a mux with the given header timeout that is to
// open stream "expected" and has registered "unopened", opening neither;
// it returns its address.
func unopenedStreams(t *testing.T, headerTimeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m := newMux(ln, Config{Addr: ln.Addr().String()}, seams{headerTimeout: headerTimeout}, func() *tls.Config { return nil })
	m.expect = func(name string) bool { return name == "expected" }
	m.start()
	t.Cleanup(m.close)
	noop := func(net.Conn) {}
	_, err = m.endpoint("unopened", noop, noop, noop, nil) // registered, never opened
	require.NoError(t, err)
	return ln.Addr().String()
}

// answer was lost.
func TestRefuseControl(t *testing.T) {
	addr := unopenedStreams(t, 300*time.Millisecond)
	for _, c := range []struct {
		stream    string
		notLeader bool
		noStream  bool
		says      string
	}{
		{"expected", true, false, `stream "expected" is not open`},
		{"unopened", true, false, `stream "unopened" is not open`},
		{"unknown", false, true, `has no stream "unknown"`},
	} {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_, err = conn.Write(wire.Preface(c.stream, wire.ProtoControl))
		require.NoError(t, err)
		resp, err := controlExchange(t.Context(), conn, controlRequest{Op: "set-level"}, time.Now().Add(5*time.Second))
		conn.Close()
		require.NoError(t, err, c.stream)
		require.Equal(t, c.notLeader, resp.NotLeader, c.stream)
		require.Equal(t, c.noStream, resp.NoStream, c.stream)
		require.Contains(t, resp.Error, c.says, c.stream)
	}
}

// blockingConn is a connection whose Close returns only once every
// connection of its group is closing: closed one after another, the first
// never returns.
type blockingConn struct {
	net.Conn
	closing *sync.WaitGroup
	once    sync.Once
}

func (c *blockingConn) Close() error {
	c.once.Do(c.closing.Done)
	c.closing.Wait()
	return nil
}

// A stream's endpoint closes its connections at once, as the mux does: a
// TLS close whose peer reads nothing takes up to 5 s (its close_notify),
// so closed one after another, a peer's idle connections could hold a
// stream's Close (and the node's) for 5 s each.
func TestEndpointClosesConnsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m := newMux(ln, Config{Addr: ln.Addr().String()}, seams{headerTimeout: 5 * time.Second}, func() *tls.Config { return nil })
	m.start()
	defer m.close()
	noop := func(net.Conn) {}
	e, err := m.endpoint("audit", noop, noop, noop, nil)
	require.NoError(t, err)
	e.open()
	const n = 8
	var closing sync.WaitGroup
	closing.Add(n)
	for range n {
		a, b := net.Pipe()
		defer b.Close()
		require.True(t, e.adopt(&blockingConn{Conn: a, closing: &closing}))
	}
	shut := make(chan struct{})
	go func() { e.shut(); close(shut) }()
	select {
	case <-shut:
	case <-time.After(20 * time.Second):
		t.Fatal("the endpoint closed its connections one after another")
	}
}
