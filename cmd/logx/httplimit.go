package main

import (
	"net"
	"sync"
)

// Bounds of the connections the HTTP server keeps open: each holds a file
// descriptor, which the node shares with its log files, Raft and peers; a
// client that opened them without end (slow headers, idle keep-alives)
// would otherwise leave the node unable to open a file. Ordinary clients
// (Prometheus, probes, a few operators' browsers, shippers) use a handful.
const (
	httpConnsPerIP = 64
	httpConns      = 256
)

// limitListener accepts at most perIP connections from one IP address and
// total in all at once; one more is closed as soon as it is accepted.
type limitListener struct {
	net.Listener
	perIP, total int

	mu   sync.Mutex
	open map[string]int
	n    int
}

func newLimitListener(ln net.Listener, perIP, total int) *limitListener {
	return &limitListener{Listener: ln, perIP: perIP, total: total, open: map[string]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, _, err := net.SplitHostPort(c.RemoteAddr().String())
		if err != nil {
			ip = c.RemoteAddr().String()
		}
		l.mu.Lock()
		if l.n >= l.total || l.open[ip] >= l.perIP {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.n++
		l.open[ip]++
		l.mu.Unlock()
		return &limitConn{Conn: c, release: sync.OnceFunc(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.n--
			if l.open[ip]--; l.open[ip] <= 0 {
				delete(l.open, ip)
			}
		})}, nil
	}
}

// limitConn gives its place back when it closes.
type limitConn struct {
	net.Conn
	release func()
}

func (c *limitConn) Close() error {
	c.release()
	return c.Conn.Close()
}
