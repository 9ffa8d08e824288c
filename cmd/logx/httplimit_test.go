package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
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

// TestLimitListenerClosesIdle: at the bound, a new connection closes an
// idle one (kept alive between requests) rather than being shed, so many
// clients' pooled connections leave room for a probe: the one idle longest
// that has read nothing since, before an older one that has (its request
// may be on its way); only when every connection is in the middle of a
// request is the new one answered 503.
func TestLimitListenerClosesIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ll := newLimitListener(ln, 2, io.Discard)
	unblock := make(chan struct{})
	defer close(unblock)
	blocked := make(chan struct{}, 2) // a request entered /block
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			blocked <- struct{}{}
			<-unblock
		}
		io.WriteString(w, "ok")
	}), ConnState: ll.connState, ReadHeaderTimeout: time.Minute}
	go srv.Serve(ll)
	defer srv.Close()
	addr := ln.Addr().String()
	idle := func() int {
		ll.mu.Lock()
		defer ll.mu.Unlock()
		return ll.idle.Len()
	}
	// Two connections, each after one request: idle, kept alive. The
	// older then sends the start of its next request.
	var kept []net.Conn
	for i := range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		kept = append(kept, c)
		require.Eventually(t, func() bool { return idle() == i+1 }, 5*time.Second, time.Millisecond)
	}
	_, err = io.WriteString(kept[0], "GET / HT")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ll.mu.Lock()
		defer ll.mu.Unlock()
		ic := ll.idle.Front().Value.(idleConn)
		return ic.c.read.Load() > ic.read
	}, 5*time.Second, time.Millisecond, "the server did not read the start of the request")
	get := func() int {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + addr + "/healthz")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get(), "a probe while idle connections fill the bound")
	require.NoError(t, kept[1].SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = kept[1].Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the silent idle connection was not the one closed")
	_, err = io.WriteString(kept[0], "TP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(kept[0]), nil)
	require.NoError(t, err, "the connection whose request was on its way was closed")
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// The server marks it idle again, and closes the probe's connection
	// (giving its slot back), only after the client may have read the
	// answers: until then the connections below could find no slot and
	// none to close (one of them shed), or find the probe's slot free
	// after the check below (the last one served instead of shed).
	require.Eventually(t, func() bool { return idle() == 1 && len(ll.slots) == 1 }, 5*time.Second, time.Millisecond)

	// Two requests in their handlers: nothing is idle, and a new
	// connection is shed.
	for range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
	}
	// Both in their handlers (the state below also holds for an instant
	// while the second is being accepted, before it is read: a new
	// connection then closed it as idle).
	for range 2 {
		select {
		case <-blocked:
		case <-time.After(5 * time.Second):
			t.Fatal("a request did not reach its handler")
		}
	}
	require.Eventually(t, func() bool { return idle() == 0 && len(ll.slots) == 2 }, 5*time.Second, time.Millisecond)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	answer, err := io.ReadAll(c) // no request sent: nothing unread to reset the close
	require.NoError(t, err)
	require.Contains(t, string(answer), "HTTP/1.1 503 Service Unavailable\r\n")
}

// TestCloseIdleOrder: closeIdle closes the kept-alive connection that has
// read nothing since its last request first; among the rest the oldest,
// so that a new connection that has read nothing yet (a probe whose
// request the server has not read) outlives older connections that each
// sent a byte (a flood keeping the slots).
func TestCloseIdleOrder(t *testing.T) {
	ll := newLimitListener(nil, 8, io.Discard)
	conn := func(s http.ConnState, read int64) *limitConn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		c := &limitConn{Conn: a, free: func() {}}
		ll.connState(c, s)
		c.read.Add(read)
		return c
	}
	open := func(c *limitConn) bool {
		ll.mu.Lock()
		defer ll.mu.Unlock()
		_, ok := ll.idleAt[c]
		return ok
	}
	flood1 := conn(http.StateNew, 1)
	flood2 := conn(http.StateNew, 1)
	kept := conn(http.StateIdle, 0)
	probe := conn(http.StateNew, 0)
	require.True(t, ll.closeIdle())
	require.False(t, open(kept), "the kept-alive connection waiting for its client first")
	require.True(t, ll.closeIdle())
	require.False(t, open(flood1), "then the oldest")
	require.True(t, ll.closeIdle())
	require.False(t, open(flood2))
	require.True(t, open(probe), "the probe outlives the older connections")
	require.True(t, ll.closeIdle())
	require.False(t, ll.closeIdle(), "none left")
}
