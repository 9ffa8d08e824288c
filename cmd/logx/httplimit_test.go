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

// TestLimitListenerClosesIdle: at the bound, a new connection closes the
// one idle longest (kept alive between requests) rather than being shed,
// so many clients' pooled connections leave room for a probe; only when
// every connection is in the middle of a request is the new one answered
// 503.
func TestLimitListenerClosesIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ll := newLimitListener(ln, 2, io.Discard)
	ll.minIdle = time.Hour // until the connections are idle (below)
	unblock := make(chan struct{})
	defer close(unblock)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			<-unblock
		}
		io.WriteString(w, "ok")
	}), ConnState: ll.connState, ReadHeaderTimeout: time.Minute}
	go srv.Serve(ll)
	defer srv.Close()
	addr := ln.Addr().String()
	// Two connections, each after one request: idle, kept alive.
	var kept []net.Conn
	for range 2 {
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
	}
	require.Eventually(t, func() bool {
		ll.mu.Lock()
		defer ll.mu.Unlock()
		return ll.idle.Len() == 2
	}, 5*time.Second, time.Millisecond)
	get := func() int {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + addr + "/healthz")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	shed := func() {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		answer, err := io.ReadAll(c) // no request sent: nothing unread to reset the close
		require.NoError(t, err)
		require.Contains(t, string(answer), "HTTP/1.1 503 Service Unavailable\r\n")
	}
	shed() // idle less than minIdle: not closed, their clients may be sending
	ll.mu.Lock()
	ll.minIdle = 0
	ll.mu.Unlock()
	require.Equal(t, http.StatusOK, get(), "a probe while idle connections fill the bound")
	require.NoError(t, kept[0].SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = kept[0].Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the connection idle longest was not closed")

	// Two requests in their handlers: nothing is idle, and a new
	// connection is shed. (A connection whose request headers have begun
	// but not ended is still idle to net/http: a slow header is closed
	// first.)
	for range 2 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		ll.mu.Lock()
		defer ll.mu.Unlock()
		return ll.idle.Len() == 0 && len(ll.slots) == 2
	}, 5*time.Second, time.Millisecond)
	shed()
}
