package main

import (
	"container/list"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxHTTPConns bounds the connections logx node's HTTP server holds open
// at once: connections that someone opens and holds cannot take the file
// descriptors and memory the node's Raft needs. At the bound a new
// connection first closes an idle one (between requests, or accepted
// with no request read yet, as net/http's ConnState says; closeIdle):
// kept-alive connections of many clients (a shipper on each of 600 hosts,
// one pooled connection each) then leave room for a liveness probe, which
// a 503 would fail until the orchestrator restarted the node. Only when
// every connection is in the middle of a request is the new one answered
// 503 (if its client reads it before the close resets it) and closed. It
// is not a bound per client: one that keeps 512 requests going holds them
// all.
const maxHTTPConns = 512

// limitListener is a listener that holds at most cap(slots) connections
// open, and closes the ones past that as it accepts them.
type limitListener struct {
	net.Listener
	slots  chan struct{}
	shed   atomic.Uint64 // connections closed for want of a slot
	logged atomic.Int64  // when shedding was last reported, Unix nanoseconds
	log    io.Writer

	// idle holds the connections between requests (or before their
	// first), longest idle first; ConnState keeps it.
	mu     sync.Mutex
	idle   *list.List
	idleAt map[*limitConn]*list.Element
}

// idleConn is an entry of limitListener.idle: its connection, whether it
// is kept alive after a request (http.StateIdle) rather than new, and how
// many bytes it had read when it became so.
type idleConn struct {
	c    *limitConn
	kept bool
	read int64
}

func newLimitListener(l net.Listener, n int, log io.Writer) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), log: log, idle: list.New(), idleAt: map[*limitConn]*list.Element{}}
}

// connState is the server's http.Server.ConnState: it tracks which
// connections are idle.
func (l *limitListener) connState(c net.Conn, s http.ConnState) {
	lc, ok := c.(*limitConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.idleAt[lc]; ok {
		l.idle.Remove(el)
		delete(l.idleAt, lc)
	}
	if s == http.StateNew || s == http.StateIdle {
		l.idleAt[lc] = l.idle.PushBack(idleConn{lc, s == http.StateIdle, lc.read.Load()})
	}
}

// closeIdle closes an idle connection, which gives its slot back, and
// reports whether there was one: the one kept alive longest that has read
// nothing since its last request, else the one idle longest, new or kept.
// net/http reports a request only once it has read it whole, so an idle
// connection that has read bytes may be carrying one; a kept-alive one that
// has read nothing is waiting for its client. A new one that has read
// nothing may not have been read yet at all (its goroutine not yet run), so
// it is not preferred: a flood of connections sending a byte each would
// otherwise have every probe closed first. Refusing the newcomer instead
// would let such a flood keep every newcomer out.
func (l *limitListener) closeIdle() bool {
	l.mu.Lock()
	var pick *list.Element
	for el := l.idle.Front(); el != nil; el = el.Next() {
		if ic := el.Value.(idleConn); ic.kept && ic.c.read.Load() == ic.read {
			pick = el
			break
		}
	}
	if pick == nil {
		pick = l.idle.Front()
	}
	if pick == nil {
		l.mu.Unlock()
		return false
	}
	ic := l.idle.Remove(pick).(idleConn)
	delete(l.idleAt, ic.c)
	l.mu.Unlock()
	ic.c.Close()
	return true
}

// take takes a slot if one is free.
func (l *limitListener) take() bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// free gives a slot back (never waiting: a connection gives back the one
// it holds, once).
func (l *limitListener) free() {
	select {
	case <-l.slots:
	default:
	}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.take() || l.closeIdle() && l.take() {
			return &limitConn{Conn: c, free: l.free}, nil
		}
		// A short answer rather than a bare close, for probes and
		// scrapers to read; no request is read.
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		c.Close()
		n := l.shed.Add(1)
		// Time since start, on the monotonic clock: a clock stepped back
		// does not silence it.
		if now, last := int64(time.Since(processStart))+1, l.logged.Load(); (last == 0 || now-last >= int64(10*time.Second)) && l.logged.CompareAndSwap(last, now) {
			fmt.Fprintf(l.log, "logx node: the HTTP server holds %d connections, its most; closing new ones (%d so far)\n", cap(l.slots), n)
		}
	}
}

// processStart is the origin of the monotonic times kept as integers.
var processStart = time.Now()

// limitConn gives its slot back when it is closed, once.
type limitConn struct {
	net.Conn
	once sync.Once
	free func()
	read atomic.Int64 // bytes read
}

func (c *limitConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.free)
	return err
}

// CloseWrite passes a half close on (net/http sends a FIN before it
// closes a connection whose request it did not read to its end, so that
// the client reads the answer).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
