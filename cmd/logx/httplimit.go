package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxHTTPConns bounds the connections logx node's HTTP server holds open
// at once. Past it a new connection is closed as soon as it is accepted
// (its client sees it closed and may try again): connections that someone
// opens and holds, with no request or a slow one, cannot take the file
// descriptors and memory the node's Raft needs. The server's timeouts
// (headers 10 s, request 1 minute, idle 2 minutes) end each one in time.
const maxHTTPConns = 512

// limitListener is a listener that holds at most cap(slots) connections
// open, and closes the ones past that as it accepts them.
type limitListener struct {
	net.Listener
	slots  chan struct{}
	shed   atomic.Uint64 // connections closed for want of a slot
	logged atomic.Int64  // when shedding was last reported, Unix nanoseconds
	log    io.Writer
}

func newLimitListener(l net.Listener, n int, log io.Writer) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), log: log}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, free: func() { <-l.slots }}, nil
		default:
		}
		c.Close()
		n := l.shed.Add(1)
		if now, last := time.Now().UnixNano(), l.logged.Load(); now-last >= int64(10*time.Second) && l.logged.CompareAndSwap(last, now) {
			fmt.Fprintf(l.log, "logx node: the HTTP server holds %d connections, its most; closing new ones (%d so far)\n", cap(l.slots), n)
		}
	}
}

// limitConn gives its slot back when it is closed, once.
type limitConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.free)
	return err
}
