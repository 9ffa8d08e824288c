package logx

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/wire"
)

// endpoint is one stream's end of the node's mux: the handlers of its
// protocols, and the connections it dialed or was handed, so that the
// stream can cut them off without touching the other streams'.
type endpoint struct {
	m      *mux
	name   string // "" for the default stream
	raftCh chan net.Conn
	done   chan struct{} // closed by shut
	// ready is closed by open once the stream's Raft exists: the forward,
	// fetch and control handlers use it, so their connections wait.
	ready   chan struct{}
	opened  sync.Once
	ctx     context.Context
	cancel  context.CancelFunc // ends ctx, by shut: dials under way give up
	forward func(net.Conn)     // serves a forwarding connection; runs on its own goroutine
	fetch   func(net.Conn)     // serves a fetch connection
	control func(net.Conn)     // serves a control connection
	// raftPeer, if set, decides whether an accepted connection may speak
	// Raft (Stream.raftPeerOK); others are closed unread.
	raftPeer func(net.Conn) bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the handlers serving its connections
	// raftTo counts the open connections Raft dialed, by the address
	// dialed (Stream.pruneRaftPool).
	raftTo map[string]int
}

// endpoint registers the end of stream name ("" for the default stream):
// connections for it reach these handlers from now on.
func (m *mux) endpoint(name string, forward, fetch, control func(net.Conn), raftPeer func(net.Conn) bool) (*endpoint, error) {
	e := &endpoint{m: m, name: name, raftCh: make(chan net.Conn), done: make(chan struct{}), ready: make(chan struct{}), conns: map[net.Conn]struct{}{},
		forward: forward, fetch: fetch, control: control, raftPeer: raftPeer}
	e.ctx, e.cancel = context.WithCancel(m.ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	if m.endpoints[name] != nil {
		return nil, fmt.Errorf("logx: stream %q is already open on this node", name)
	}
	m.endpoints[name] = e
	close(m.added) // connections waiting for it (waitEndpoint)
	m.added = make(chan struct{})
	return e, nil
}

// open lets connections reach the forward, fetch and control handlers,
// which wait until then (Raft's connections need not: its transport takes
// them).
func (e *endpoint) open() { e.opened.Do(func() { close(e.ready) }) }

// waitOpen waits until open, for at most limit; false if e
// closed first or did not open in time.
func (e *endpoint) waitOpen(limit time.Duration) bool {
	select {
	case <-e.ready:
		return true
	default:
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-e.ready:
		return true
	case <-e.done:
	case <-t.C:
	}
	return false
}

// adopt records c as one of e's connections, unless e is shut.
func (e *endpoint) adopt(c net.Conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.conns[c] = struct{}{}
	return true
}

// serving is adopt for an accepted connection, which a handler of e's
// serves until it calls done.
func (e *endpoint) serving(c net.Conn) (ok bool, done func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false, nil
	}
	e.conns[c] = struct{}{}
	e.wg.Add(1)
	return true, e.wg.Done
}

func (e *endpoint) drop(c net.Conn) {
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
}

// dial opens a connection to the same stream on the node at addr, for
// protocol proto.
func (e *endpoint) dial(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	return e.dialContext(context.Background(), addr, proto, timeout)
}

// dialContext is dial that gives up when ctx ends (or the mux or the
// endpoint closes).
func (e *endpoint) dialContext(ctx context.Context, addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	return e.dialWith(ctx, nil, addr, proto, timeout)
}

// dialWith is dialContext with the TLS material tlsCfg (nil: the node's
// current, if it uses TLS).
func (e *endpoint) dialWith(ctx context.Context, tlsCfg *tls.Config, addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()
	c, err := e.m.dialContext(ctx, tlsCfg, addr, wire.Preface(e.name, proto), timeout)
	if err != nil {
		return nil, err
	}
	if !e.adopt(c) {
		e.m.closeConn(c)
		return nil, errClosed
	}
	return &trackedConn{Conn: c, m: e.m, e: e}, nil
}

// shut closes e's connections and makes it refuse new ones, without
// waiting for its handlers; the other streams' are untouched. Its
// connections close at once (cutAtOnce).
func (e *endpoint) shut() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	close(e.done)
	e.cancel()
	conns := e.conns
	e.conns = nil
	e.mu.Unlock()
	cutAtOnce(conns, func(c net.Conn, _ struct{}) { e.m.cut(c) })
}

// close shuts e, waits for its handlers to return, and removes it from
// the mux: the stream's name is free again.
func (e *endpoint) close() {
	e.shut()
	e.wg.Wait()
	e.m.mu.Lock()
	if e.m.endpoints[e.name] == e {
		delete(e.m.endpoints, e.name)
	}
	e.m.mu.Unlock()
}

// raftLayer is the raft.StreamLayer over a stream's endpoint. While
// refuse returns an error, Raft's dials fail with it (a leader waiting to
// read its Raft log, raftRefused: it sends nothing, so that another node
// leads; the connections it holds are closed meanwhile, waitingToRead).
type raftLayer struct {
	e      *endpoint
	refuse func() error
	// decided, if not nil, holds Accept until it is closed: a stream
	// whose Raft state is empty takes no Raft connection until it has
	// decided whether to bootstrap (bootstrap.go); they wait meanwhile.
	decided <-chan struct{}
}

var _ raft.StreamLayer = raftLayer{}

func (l raftLayer) Accept() (net.Conn, error) {
	if l.decided != nil {
		select {
		case <-l.decided:
		case <-l.e.done:
			return nil, errClosed
		case <-l.e.m.done:
			return nil, errClosed
		}
	}
	select {
	case c := <-l.e.raftCh:
		return c, nil
	case <-l.e.done:
		return nil, errClosed
	case <-l.e.m.done:
		return nil, errClosed
	}
}

// Close is a no-op: the endpoint belongs to the stream, which closes it
// after Raft.
func (l raftLayer) Close() error { return nil }

func (l raftLayer) Addr() net.Addr { return l.e.m.advertise }

func (l raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if err := l.refuse(); err != nil {
		return nil, err
	}
	c, err := l.e.dial(string(address), wire.ProtoRaft, timeout)
	if tc, ok := c.(*trackedConn); ok {
		l.e.mu.Lock()
		if l.e.raftTo == nil {
			l.e.raftTo = map[string]int{}
		}
		l.e.raftTo[string(address)]++
		tc.raftTo = string(address) // before Raft has it: Close reads it
		l.e.mu.Unlock()
	}
	return c, err
}

// raftClosed notes that a connection Raft dialed to addr was closed.
func (e *endpoint) raftClosed(addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.raftTo[addr]--; e.raftTo[addr] <= 0 {
		delete(e.raftTo, addr)
	}
}

// raftTargets are the addresses Raft holds connections it dialed to.
func (e *endpoint) raftTargets() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Collect(maps.Keys(e.raftTo))
}
