package main

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The HTTP server's listener holds at most its bound of connections open:
// one past it is answered 503 and closed at once (and reported), a
// connection that closes gives its place to the next, and one closed
// twice gives back one place. (The server bounded nothing: connections
// held open took file descriptors and memory without end.)
func TestLimitListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var log syncBuffer
	ll := newLimitListener(ln, 2, &log)
	defer ll.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ll.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, as a server holds a slow client's
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	first, second := <-accepted, <-accepted
	third := dial()
	require.NoError(t, third.SetReadDeadline(time.Now().Add(5*time.Second)))
	answer, err := io.ReadAll(third)
	require.NoError(t, err, "a connection past the bound is answered and closed")
	require.Contains(t, string(answer), "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n")
	require.Eventually(t, func() bool {
		return strings.Contains(log.String(), "holds 2 connections, its most; closing new ones (1 so far)")
	}, 5*time.Second, time.Millisecond, "reported")
	require.Empty(t, accepted)

	first.Close()
	first.Close() // a second Close gives back nothing more: second still holds its place
	require.Len(t, ll.slots, 1)
	fourth := dial()
	c := <-accepted // a place was free again
	_, err = fourth.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.NoError(t, err, "the fourth connection is served")
	require.Len(t, ll.slots, 2)
	second.Close()
	c.Close()
	require.Len(t, ll.slots, 0)
}
