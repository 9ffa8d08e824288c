package logx

import (
	"net"
	"sync"
)

// trackedConn untracks itself when closed.
type trackedConn struct {
	net.Conn
	m    *mux
	e    *endpoint // nil if none
	once sync.Once
	// raftTo is the address Raft dialed this connection to ("" for
	// any other connection; endpoint.raftTo).
	raftTo string
}

// NetConn is the connection c tracks (abortConn).
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// abortConn closes c with a reset (SO_LINGER 0) of its TCP connection, for
// a try its sender has given up on: what the kernel still holds of the
// try's bytes is dropped, not sent on after the sender has gone, when a
// partition heals or a stalled leader reads again (Linux goes on
// retransmitting a closed connection's data for tcp_orphan_retries: 8
// tries by default, about 100 s at the smallest retransmission timeout
// and minutes on a slow link), where it could arrive at a leader that
// has forgotten its producer and be written twice. Bytes the peer's
// kernel has already received are not recalled. It skips a TLS
// close_notify, which could wait 5 s on a full send buffer.
func abortConn(c net.Conn) {
	raw := innermost(c)
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
	_ = c.Close()
}

// innermost is the connection under c's wrappers (trackedConn, tls.Conn:
// each gives its own by NetConn).
func innermost(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = u.NetConn()
	}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.m.untrack(c.Conn)
		if c.e != nil {
			c.e.drop(c.Conn)
			if c.raftTo != "" {
				c.e.raftClosed(c.raftTo)
			}
		}
	})
	return err
}

// cutAtOnce calls cut for every connection of conns, each with its value,
// all at once, and waits for them: a TLS close whose peer reads nothing
// waits up to 5 s for its close_notify to go out (crypto/tls), so closed
// one after another, a peer's idle connections would hold a Close 5 s each.
func cutAtOnce[V any](conns map[net.Conn]V, cut func(net.Conn, V)) {
	var wg sync.WaitGroup
	for c, v := range conns {
		wg.Go(func() { cut(c, v) })
	}
	wg.Wait()
}

// cutConn closes c, which the node accepted (inbound) or dialed, as a
// shut does: one it accepted plainly, so that an answer it queued still
// goes out; one it dialed with a reset (abortConn), so that what it was
// sending (a forwarded batch whose try the shut ends) is dropped, not
// delivered after. Not under the mux's lock: a TLS close can wait seconds.
func cutConn(c net.Conn, inbound bool) {
	if inbound {
		c.Close()
	} else {
		abortConn(c)
	}
}
