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

// fillSendBuffer writes to c, whose peer does not read, until the kernel's
// buffers are full and the write times out; it returns what was written.
func fillSendBuffer(t *testing.T, c net.Conn) int {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := c.Write(make([]byte, 16<<20))
	require.True(t, isTimeout(err), "a 16 MiB write to a peer that does not read: %d bytes, %v", n, err)
	require.Positive(t, n)
	return n
}

// TestAbortConn: a connection closed by abortConn delivers nothing more of
// what its kernel still held; one closed plainly delivers all of it after
// the close (on Linux, for up to tcp_retries2 if the peer is cut off), which
// is how a try its sender had given up on could reach a leader minutes
// later. Over TLS, abortConn resets the TCP connection under it.
func TestAbortConn(t *testing.T) {
	t.Run("plain close", func(t *testing.T) {
		c, s := connPair(t)
		n := fillSendBuffer(t, c)
		c.Close()
		got, err := io.Copy(io.Discard, s)
		require.NoError(t, err)
		require.Equal(t, int64(n), got, "a plain close delivers what was written")
	})
	t.Run("abort", func(t *testing.T) {
		c, s := connPair(t)
		n := fillSendBuffer(t, c)
		abortConn(c)
		got, err := io.Copy(io.Discard, s)
		require.ErrorIs(t, err, syscall.ECONNRESET)
		require.Less(t, got, int64(n), "the bytes the sender's kernel held are dropped")
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
		n := fillSendBuffer(t, wrapped)
		abortConn(wrapped)
		got, err := io.Copy(io.Discard, ts)
		require.ErrorIs(t, err, syscall.ECONNRESET)
		require.Less(t, got, int64(n))
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
// shut: the kernel then holds what their peers send.
type gatedListener struct {
	net.Listener
	mu   sync.Mutex
	open chan struct{} // closed while reads may go on
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

func (g *gatedListener) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
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
	return &gatedConn{Conn: c, g: g}, nil
}

type gatedConn struct {
	net.Conn
	g *gatedListener
}

func (c *gatedConn) Read(p []byte) (int, error) {
	<-c.g.gate()
	return c.Conn.Read(p)
}

// TestAbandonedTryNotDelivered: a batch whose try a node's producer or a
// Client gave up on does not reach the leader afterwards. The leader stops
// reading its connections while the batch (1 MiB, more than the kernel
// buffers between them hold) is sent; the sender gives up (ErrOutcomeUnknown
// after half the dedup window), and only then does the leader read again.
// (A try's connection was closed plainly, so the kernel went on to deliver
// the whole batch, which the leader then committed: after a partition, that
// can be minutes later, past the dedup window.)
func TestAbandonedTryNotDelivered(t *testing.T) {
	gates := make([]*gatedListener, 3)
	c := newTestClusterSeams(t, 3, func(cfg *Config, sm *seams) {
		cfg.ForwardTimeout = 500 * time.Millisecond
		cfg.DedupWindow = 2 * time.Second
		i := int(cfg.NodeID[1] - '1')
		sm.listener = func(l net.Listener) net.Listener {
			gates[i] = newGatedListener(l)
			return gates[i]
		}
	})
	c.logAppend("before", 3)
	leader := c.leaderIndex()
	follower := (leader + 1) % 3
	var released atomic.Bool
	release := func() {
		if released.CompareAndSwap(false, true) {
			gates[leader].release()
		}
	}
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodeBatch := incompressible(t, 15, 64000)
	gates[leader].shut()
	_, err := c.nodes[follower].AppendBatch(ctx, nodeBatch)
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

	release()
	// The leader reads what its kernel held, then the resets: nothing of
	// either batch is complete. A marker from the leader, once on every
	// node, comes after anything the leader read before it.
	_, err = c.nodes[leader].Append(ctx, LevelInfo, "marker")
	require.NoError(t, err)
	c.flushAll()
	last := c.waitSameSeq(1)
	for i, cfg := range c.cfgs {
		lines := readLines(t, cfg.Dir, "app.log")
		require.Equal(t, last, uint64(len(lines)), "node %d", i+1)
		for _, l := range lines {
			require.False(t, bytes.Contains(l, []byte("abandoned ")), "node %d holds an entry of a batch given up on: %.120s", i+1, l)
		}
	}
}

// TestTryLastsItsTimeout: a Client's try, its TLS handshake included, is
// over by its timeout after it starts. A node that takes 0.6 s to
// handshake and never answers sees the next try 1 s after the first.
// (The handshake had a timeout of its own and the batch's round trip a
// fresh one after it: the next try came 1.6 s later, and a try's batch
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
				time.Sleep(600 * time.Millisecond) // a slow handshake, not a wait for anything
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
	require.ErrorIs(t, <-sent, ErrOutcomeUnknown)
	gap := second.Sub(first)
	t.Logf("the second try %v after the first", gap.Round(time.Millisecond))
	require.GreaterOrEqual(t, gap, 900*time.Millisecond, "the first try gave up before its timeout")
	require.Less(t, gap, 1350*time.Millisecond, "the first try outlasted its timeout")
}
