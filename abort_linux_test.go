package logx

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// connPair is a connection to a listener on 127.0.0.1 and its accepted end.
func connPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// queued returns the bytes in c's kernel queue: SIOCOUTQ, those not yet
// acknowledged by the peer, or SIOCINQ, those not yet read; 0 once c is
// closed.
func queued(t *testing.T, c net.Conn, req uint) int {
	t.Helper()
	raw, err := innermost(c).(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	var n int
	var ierr error
	if raw.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), req) }) != nil {
		return 0 // closed
	}
	require.NoError(t, ierr)
	return n
}

// fillSendBuffer writes to c, whose peer does not read, until its kernel
// holds at least 256 KiB it has not sent; the returned function, called
// after c is closed, says how much the write handed the kernel.
func fillSendBuffer(t *testing.T, c net.Conn) (written func() int64) {
	t.Helper()
	done := make(chan int, 1)
	go func() {
		n, _ := c.Write(make([]byte, 32<<20)) // until c is closed
		done <- n
	}()
	require.Eventually(t, func() bool { return queued(t, c, unix.SIOCOUTQ) >= 256<<10 }, 10*time.Second, 5*time.Millisecond,
		"the sender's kernel holds what its peer's cannot take")
	return func() int64 { return int64(<-done) }
}

// TestAbortConn: a connection closed by abortConn delivers nothing more of
// what its kernel still held; one closed plainly delivers all of it after
// the close (on Linux, for tcp_orphan_retries if the peer is cut off), which
// is how a try its sender had given up on could reach a leader minutes
// later. Over TLS, abortConn resets the TCP connection under it.
func TestAbortConn(t *testing.T) {
	t.Run("plain close", func(t *testing.T) {
		c, s := connPair(t)
		written := fillSendBuffer(t, c)
		c.Close()
		n := written()
		got, err := io.Copy(io.Discard, s)
		require.NoError(t, err)
		require.Equal(t, n, got, "a plain close delivers what was written")
	})
	t.Run("abort", func(t *testing.T) {
		c, s := connPair(t)
		written := fillSendBuffer(t, c)
		abortConn(c)
		n := written()
		got, err := io.Copy(io.Discard, s)
		require.ErrorIs(t, err, syscall.ECONNRESET)
		require.Less(t, got, n, "the bytes the sender's kernel held are dropped")
	})
	t.Run("abort under TLS", func(t *testing.T) {
		ca := newTestCA(t, "abort CA")
		c, s := connPair(t)
		ts := tls.Server(s, ca.nodeTLS(t, "server"))
		handshook := make(chan error, 1)
		go func() { handshook <- ts.Handshake() }()
		tc, err := tlsClient(context.Background(), c, ca.nodeTLS(t, "client"), c.RemoteAddr().String(), 5*time.Second)
		require.NoError(t, err)
		require.NoError(t, <-handshook)
		wrapped := &trackedConn{Conn: tc, m: newMux(nil, Config{}, seams{}, nil)} // as dialWith returns it
		written := fillSendBuffer(t, wrapped)
		abortConn(wrapped)
		n := written()
		got, err := io.Copy(io.Discard, ts)
		require.ErrorIs(t, err, syscall.ECONNRESET)
		require.Less(t, got, n)
	})
}

// incompressible returns n records of about size bytes each that S2 does
// not shrink (so that a batch of them is larger than the kernel buffers
// between a sender and a peer that does not read).
func incompressible(t *testing.T, n, size int) []Record {
	t.Helper()
	recs := make([]Record, n)
	raw := make([]byte, size*3/4)
	for i := range recs {
		_, err := rand.Read(raw)
		require.NoError(t, err)
		recs[i] = Record{Level: LevelInfo, Msg: "abandoned " + base64.StdEncoding.EncodeToString(raw)}
	}
	return recs
}

// gatedListener hands out connections whose reads wait while its gate is
// shut: the kernel then holds what their peers send (at most a small
// receive buffer's worth).
type gatedListener struct {
	net.Listener
	mu    sync.Mutex
	open  chan struct{} // closed while reads may go on
	conns []*gatedConn
}

func newGatedListener(l net.Listener) *gatedListener {
	g := &gatedListener{Listener: l, open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gatedListener) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

// release opens the gate and returns the connections that held part of
// a batch unread then (16 KiB or more: a clock report, which a node sends
// every quarter second until its first one commits, is about a hundred
// bytes, and its connection, answered, stays open): they read on, to the
// end of what their peers sent.
func (g *gatedListener) release(t *testing.T) (carrying []*gatedConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		if !c.ended.Load() && queued(t, c.Conn, unix.SIOCINQ) >= 16<<10 {
			carrying = append(carrying, c)
		}
	}
	select {
	case <-g.open:
	default:
		close(g.open)
	}
	return carrying
}

func (g *gatedListener) gate() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

func (g *gatedListener) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_ = c.(*net.TCPConn).SetReadBuffer(64 << 10) // whatever the host's default
	gc := &gatedConn{Conn: c, g: g}
	g.mu.Lock()
	g.conns = append(g.conns, gc)
	g.mu.Unlock()
	return gc, nil
}

type gatedConn struct {
	net.Conn
	g     *gatedListener
	ended atomic.Bool // a read failed: the peer is gone
}

func (c *gatedConn) Read(p []byte) (int, error) {
	<-c.g.gate()
	n, err := c.Conn.Read(p)
	if err != nil {
		c.ended.Store(true)
	}
	return n, err
}

// gatedCluster is a 3-node cluster whose nodes' connections can be held
// unread (tweak changes each node's Config), with a few entries logged;
// it returns the leader's gate, the leader and a follower. The gate opens
// before the cluster closes.
func gatedCluster(t *testing.T, tweak func(*Config)) (c *testCluster, gate *gatedListener, leader, follower int) {
	gates := make([]*gatedListener, 3)
	c = newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		tweak(cfg)
		sm.clockEvery = time.Hour // few clock reports (release)
		i := int(cfg.NodeID[1] - '1')
		sm.listener = func(l net.Listener) net.Listener {
			gates[i] = newGatedListener(l)
			return gates[i]
		}
	})
	c.logAppend("before", 3)
	leader = c.leaderIndex()
	gate = gates[leader]
	t.Cleanup(func() { gate.release(t) })
	return c, gate, leader, (leader + 1) % 3
}

// releaseAndCheck opens the leader's gate, waits until it has read what
// its kernel held to the end (every such connection then fails: the
// senders reset them), and checks that no node holds an entry of an
// abandoned batch.
func releaseAndCheck(t *testing.T, c *testCluster, gate *gatedListener, leader int) {
	t.Helper()
	carrying := gate.release(t)
	require.NotEmpty(t, carrying, "the leader held the senders' bytes unread")
	require.Eventually(t, func() bool {
		for _, gc := range carrying {
			if !gc.ended.Load() {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond,
		"the leader read its connections to their end: each ends in its sender's reset (one closed plainly may deliver a batch instead)")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.nodes[leader].Append(ctx, LevelInfo, "marker")
	require.NoError(t, err)
	c.flushAllLosing(true) // the abandoned batches' entries
	last := c.waitSameSeq(1)
	for i, lx := range c.nodes {
		if lx == nil {
			continue
		}
		lines := readLines(t, c.cfgs[i].Dir, "app.log")
		require.Equal(t, last, uint64(len(lines)), "node %d", i+1)
		for _, l := range lines {
			require.False(t, bytes.Contains(l, []byte("abandoned ")), "node %d holds an entry of a batch given up on: %.120s", i+1, l)
		}
	}
}

// TestAbandonedTryNotDelivered: a batch whose try a node's producer or a
// Client gave up on does not reach the leader afterwards. The leader stops
// reading its connections while the batch (1 MiB: more than its receive
// buffer) is sent; the sender gives up (ErrOutcomeUnknown after half the
// dedup window), and only then does the leader read again, to the end of
// each connection. (A try's connection was closed plainly, and the
// sender's kernel went on to deliver the whole batch, which the leader
// then committed: after a partition, that can be minutes later, past the
// dedup window.)
func TestAbandonedTryNotDelivered(t *testing.T) {
	t.Parallel()
	c, gate, leader, follower := gatedCluster(t, func(cfg *Config) {
		cfg.ForwardTimeout = 500 * time.Millisecond
		cfg.DedupWindow = 2 * time.Second
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gate.shut()
	_, err := c.nodes[follower].AppendBatch(ctx, incompressible(t, 15, 64000))
	require.ErrorIs(t, err, ErrOutcomeUnknown, "the node's producer")

	// A Client with the cluster's window, sending to the leader itself.
	cl := &Client{addrs: []string{c.cfgs[leader].Addr}, node: "cl", timeout: 500 * time.Millisecond, producer: newProducerID(), dedupWindow: 2 * time.Second}
	defer cl.Close()
	var ents []ClientEntry
	for _, r := range incompressible(t, 15, 64000) {
		ents = append(ents, ClientEntry{Level: LevelInfo, Msg: r.Msg})
	}
	_, err = cl.Send(ctx, ents)
	require.ErrorIs(t, err, ErrOutcomeUnknown, "the Client")
	require.NoError(t, ctx.Err())

	releaseAndCheck(t, c, gate, leader)
}

// TestCloseResetsTry: a node closed while its try of a batch waits on a
// leader that has stopped reading resets the try's connection (Close cuts
// the connections it dialed with a reset, those it accepted plainly), so
// the leader, reading again, gets nothing of the batch. (Close closed
// them plainly, and the kernel delivered the batch after the node had
// gone and its caller had been told the outcome was unknown.)
func TestCloseResetsTry(t *testing.T) {
	t.Parallel()
	c, gate, leader, follower := gatedCluster(t, func(cfg *Config) { cfg.CloseTimeout = 500 * time.Millisecond })

	gate.shut()
	forwarded := c.nodes[follower].Stats().Forwarded
	appended := make(chan error, 1)
	go func() {
		_, err := c.nodes[follower].AppendBatch(context.Background(), incompressible(t, 15, 64000))
		appended <- err
	}()
	// The try has gone out: the leader's kernel holds part of the batch.
	require.Eventually(t, func() bool {
		if c.nodes[follower].Stats().Forwarded == forwarded {
			return false
		}
		gate.mu.Lock()
		defer gate.mu.Unlock()
		for _, gc := range gate.conns {
			if queued(t, gc.Conn, unix.SIOCINQ) >= 16<<10 {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond)
	_ = c.nodes[follower].Close() // within ForwardTimeout (10 s) of the try's start
	c.nodes[follower] = nil
	require.Error(t, <-appended)

	releaseAndCheck(t, c, gate, leader)
}

// TestTryLastsItsTimeout: a Client's try, its TLS handshake included, is
// over by its timeout after it starts. A node that takes 0.7 s to
// handshake and never answers sees the next try 1 s after the first.
// (The handshake had a timeout of its own and the batch's round trip a
// fresh one after it: the next try came 1.7 s later, and a try's batch
// could reach a leader up to three timeouts after the try started, not
// one, past the dedup window retryFits reckons with.)
func TestTryLastsItsTimeout(t *testing.T) {
	ca := newTestCA(t, "try CA")
	serverTLS := ca.nodeTLS(t, "node")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	accepted := make(chan time.Time, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- time.Now()
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(700 * time.Millisecond) // a slow handshake, not a wait for anything
				tc := tls.Server(c, serverTLS)
				if tc.Handshake() != nil {
					return
				}
				_, _ = io.Copy(io.Discard, tc) // takes the batch, never answers
			}()
		}
	}()
	cl := &Client{addrs: []string{ln.Addr().String()}, node: "cl", timeout: time.Second, producer: newProducerID(),
		dedupWindow: time.Minute, tls: ca.nodeTLS(t, "client")}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		_, err := cl.Send(ctx, []ClientEntry{{Level: LevelInfo, Msg: "slow node"}})
		sent <- err
	}()
	first, second := <-accepted, <-accepted
	cancel()
	require.Error(t, <-sent) // unknown if a try sent the batch before the cancel, else the cancel
	gap := second.Sub(first)
	t.Logf("the second try %v after the first", gap.Round(time.Millisecond))
	require.GreaterOrEqual(t, gap, 800*time.Millisecond, "the first try gave up before its timeout")
	require.Less(t, gap, 1500*time.Millisecond, "the first try outlasted its timeout")
}
