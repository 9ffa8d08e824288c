package logx

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// faultNet is the network between the nodes of a process cluster, with
// faults the test controls. Node i listens on listen(i), but advertises
// addr(i), where a proxy of faultNet forwards to it. Node i dials its peers
// from its own loopback IP, from(i), so a proxy can tell which node a
// connection comes from and cut the pairs the test partitions.
//
// Cutting a pair works in one of two ways:
//   - reset: its connections are closed, and new ones closed at once (the
//     peer sees errors right away);
//   - blackhole: its connections stay open but carry nothing, and new ones
//     are accepted and never forwarded (the peer sees silence and times
//     out). Heal closes them, since bytes were lost in between.
type faultNet struct {
	t      testing.TB
	lns    []net.Listener // node i's proxy, at its advertised address
	listen []string       // node i's real address
	ips    []string       // node i's loopback IP: its dials come from there
	wg     sync.WaitGroup

	// delay and jitter, set before the nodes start, hold back every chunk
	// a proxy forwards, each way, by delay ± jitter (order kept): a
	// network's latency, in userspace (latency_test.go).
	delay, jitter time.Duration

	mu     sync.Mutex
	cut    map[[2]int]bool // directed (from, to) pairs that carry nothing
	mode   cutMode
	conns  map[*proxyConn]struct{}
	closed bool
}

type cutMode int

const (
	cutReset cutMode = iota
	cutBlackhole
)

func (m cutMode) String() string { return [...]string{"reset", "blackhole"}[m] }

// proxyConn is one forwarded connection from node from (-1: not a node) to
// node to.
type proxyConn struct {
	from, to int
	client   net.Conn // accepted from the dialling node
	server   net.Conn // dialled to the node's real address; nil while held
	frozen   bool     // cut in blackhole mode: bytes are dropped; under faultNet.mu
	once     sync.Once
}

func (pc *proxyConn) close() {
	pc.once.Do(func() {
		pc.client.Close()
		if pc.server != nil {
			pc.server.Close()
		}
	})
}

// faultNetIP is node i's loopback IP: 127.0.0.11, 127.0.0.12, ...
func faultNetIP(i int) string { return fmt.Sprintf("127.0.0.%d", 11+i) }

// newFaultNet starts a proxy for each of n nodes. The test's cleanup closes
// it.
func newFaultNet(t testing.TB, n int) *faultNet {
	t.Helper()
	f := &faultNet{t: t, cut: map[[2]int]bool{}, conns: map[*proxyConn]struct{}{}}
	for i := 0; i < n; i++ {
		ip := faultNetIP(i)
		ln, err := net.Listen("tcp", ip+":0")
		require.NoError(t, err, "listening on %s (needs 127.0.0.0/8 on lo)", ip)
		f.lns = append(f.lns, ln)
		f.ips = append(f.ips, ip)
		// The node's real port: reserved, then freed for the node, which
		// listens there on every start.
		rl, err := net.Listen("tcp", ip+":0")
		require.NoError(t, err)
		f.listen = append(f.listen, rl.Addr().String())
		rl.Close()
	}
	for i, ln := range f.lns {
		f.wg.Add(1)
		go f.accept(i, ln)
	}
	t.Cleanup(f.close)
	return f
}

func (f *faultNet) addr(i int) string       { return f.lns[i].Addr().String() }
func (f *faultNet) listenAddr(i int) string { return f.listen[i] }
func (f *faultNet) from(i int) string       { return f.ips[i] }

func (f *faultNet) addrs() []string {
	var out []string
	for i := range f.lns {
		out = append(out, f.addr(i))
	}
	return out
}

// nodeOf returns the node whose IP a connection comes from, or -1.
func (f *faultNet) nodeOf(a net.Addr) int {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return -1
	}
	for i, ip := range f.ips {
		if ta.IP.String() == ip {
			return i
		}
	}
	return -1
}

func (f *faultNet) accept(to int, ln net.Listener) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		pc := &proxyConn{from: f.nodeOf(c.RemoteAddr()), to: to, client: c}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		f.conns[pc] = struct{}{}
		cut, mode := f.cut[[2]int{pc.from, to}], f.mode
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.drop(pc)
			switch {
			case cut && mode == cutReset:
			case cut && mode == cutBlackhole:
				_, _ = io.Copy(io.Discard, c) // until heal or close closes it
			default:
				f.forward(pc)
			}
		}()
	}
}

func (f *faultNet) drop(pc *proxyConn) {
	pc.close()
	f.mu.Lock()
	delete(f.conns, pc)
	f.mu.Unlock()
}

// forward dials node pc.to and copies both ways until either side ends or
// the pair is cut.
func (f *faultNet) forward(pc *proxyConn) {
	s, err := net.DialTimeout("tcp", f.listen[pc.to], 5*time.Second)
	if err != nil {
		return // the node is down: the dialer sees its connection closed
	}
	f.mu.Lock()
	pc.server = s
	alive := !f.closed && !f.cut[[2]int{pc.from, pc.to}]
	f.mu.Unlock()
	if !alive {
		s.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		write := dst.Write
		if f.delay > 0 {
			w := newDelayWriter(dst, f.delay, f.jitter)
			defer w.close()
			write = w.write
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				f.mu.Lock()
				frozen := pc.frozen
				f.mu.Unlock()
				if !frozen {
					if _, werr := write(buf[:n]); werr != nil {
						break
					}
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(s, pc.client)
	go pipe(pc.client, s)
	<-done
	pc.close() // ends the other direction
	<-done
}

// newFaultCluster starts a cluster of fn's nodes, each listening behind its
// proxy and dialling from its own IP, with tweak applied to every Config
// (nil: none), and waits until it is ready; it heals fn and closes the
// nodes when the test ends.
func newFaultCluster(t *testing.T, fn *faultNet, tweak func(*Config)) *testCluster {
	t.Helper()
	base := t.TempDir()
	c := &testCluster{t: t}
	for i := range fn.lns {
		cfg := testConfig(t, i, fn.addrs(), filepath.Join(base, fmt.Sprint(i)))
		cfg.ListenAddr = fn.listenAddr(i)
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.seams = append(c.seams, seams{dialFrom: fn.from(i)})
		c.nodes = append(c.nodes, nil)
		c.start(i)
	}
	t.Cleanup(func() { fn.heal(); c.closeAll() })
	c.waitReady()
	return c
}

// isolate cuts node i off from every other node, both ways, in mode m.
func (f *faultNet) isolate(i int, m cutMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode = m
	for j := range f.lns {
		if j != i {
			f.cut[[2]int{i, j}] = true
			f.cut[[2]int{j, i}] = true
		}
	}
	for pc := range f.conns {
		if !f.cut[[2]int{pc.from, pc.to}] {
			continue
		}
		if m == cutReset {
			pc.close()
		} else {
			pc.frozen = true
		}
	}
}

// heal restores every pair. Connections that lost bytes while cut (and
// connections held since) are closed: the nodes dial again.
func (f *faultNet) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for pc := range f.conns {
		if pc.frozen || f.cut[[2]int{pc.from, pc.to}] {
			pc.close()
		}
	}
	clear(f.cut)
}

// close stops every proxy and connection and waits for their goroutines.
func (f *faultNet) close() {
	f.mu.Lock()
	f.closed = true
	for _, ln := range f.lns {
		ln.Close()
	}
	for pc := range f.conns {
		pc.close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// TestFaultNet: the proxy forwards, tells nodes apart by their source IP,
// and cuts an isolated node off both ways in either mode.
func TestFaultNet(t *testing.T) {
	f := newFaultNet(t, 3)
	// Echo servers at the nodes' real addresses.
	var wg sync.WaitGroup
	var lns []net.Listener
	defer func() {
		f.close() // closes the echo servers' connections
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	}()
	for i := 0; i < 3; i++ {
		ln, err := net.Listen("tcp", f.listenAddr(i))
		require.NoError(t, err)
		lns = append(lns, ln)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() { defer wg.Done(); io.Copy(c, c); c.Close() }()
			}
		}()
	}
	dial := func(from, to int) net.Conn {
		d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(f.from(from))}}
		c, err := d.Dial("tcp", f.addr(to))
		require.NoError(t, err)
		return c
	}
	// echo reports whether a round trip on c works within d.
	echo := func(c net.Conn, d time.Duration) bool {
		_ = c.SetDeadline(time.Now().Add(d))
		if _, err := c.Write([]byte("ping")); err != nil {
			return false
		}
		b := make([]byte, 4)
		_, err := io.ReadFull(c, b)
		return err == nil && string(b) == "ping"
	}
	for _, m := range []cutMode{cutReset, cutBlackhole} {
		t.Run(m.String(), func(t *testing.T) {
			c01, c12 := dial(0, 1), dial(1, 2)
			defer c01.Close()
			defer c12.Close()
			require.True(t, echo(c01, 5*time.Second))
			require.True(t, echo(c12, 5*time.Second))
			f.isolate(1, m)
			require.False(t, echo(c01, 200*time.Millisecond), "0→1 is cut")
			require.False(t, echo(c12, 200*time.Millisecond), "1→2 is cut")
			n := dial(2, 1) // accepted by the proxy, never forwarded
			require.False(t, echo(n, 200*time.Millisecond))
			n.Close()
			c02 := dial(0, 2)
			require.True(t, echo(c02, 5*time.Second), "0→2 is not cut")
			c02.Close()
			f.heal()
			c := dial(2, 1)
			require.True(t, echo(c, 5*time.Second), "healed")
			c.Close()
		})
	}
}

// delayWriter writes each chunk to dst once delay ± jitter has passed since
// it was given, in the order given.
type delayWriter struct {
	ch   chan delayed
	done chan struct{}
	err  atomic.Pointer[error]
}

type delayed struct {
	due time.Time
	b   []byte
}

func newDelayWriter(dst net.Conn, delay, jitter time.Duration) *delayWriter {
	w := &delayWriter{ch: make(chan delayed, 1024), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var last time.Time
		for d := range w.ch {
			due := d.due.Add(delay)
			if jitter > 0 {
				due = due.Add(time.Duration(rand.Int64N(int64(2*jitter))) - jitter)
			}
			if due.Before(last) { // a link keeps order
				due = last
			}
			last = due
			if wait := time.Until(due); wait > 0 {
				time.Sleep(wait) // the network's latency itself, not a synchronization
			}
			if _, err := dst.Write(d.b); err != nil {
				w.err.Store(&err)
				for range w.ch { // drain: the pipe sees the error on its next write
				}
				return
			}
		}
	}()
	return w
}

func (w *delayWriter) write(b []byte) (int, error) {
	if e := w.err.Load(); e != nil {
		return 0, *e
	}
	w.ch <- delayed{due: time.Now(), b: bytes.Clone(b)}
	return len(b), nil
}

func (w *delayWriter) close() {
	close(w.ch)
	<-w.done
}
