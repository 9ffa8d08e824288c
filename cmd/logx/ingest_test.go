package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/logx-dev/logx"
	"github.com/stretchr/testify/require"
)

// TestIngestSlowUploads: uploads that send their headers and part of a
// body and then stall do not hold up the other requests: a request reads
// its body before it waits for a turn to commit, and holds only the bytes
// it has read. (The turn came first: ingestAtOnce stalled uploads made
// every other request wait ingestWait and fail "busy", for as long as the
// server's ReadTimeout, a minute.) When the bodies read and not yet
// committed have spent the budget, a request fails "busy", nothing of it
// committed, and succeeds once the budget is given back; a body that does
// not arrive in time is refused; and a request whose body is in is not
// cut short by that deadline while it waits for a turn.
func TestIngestSlowUploads(t *testing.T) {
	nodes, cfgs := clusterWith(t, nil)
	nf := nodeFile{Config: cfgs[0]}
	in, err := newIngester(nodes[0], nf)
	require.NoError(t, err)
	defer in.close()
	in.wait = 2 * time.Second
	var serving atomic.Int32
	handler := nodeHandler(nodes[0], nf, in) // as logx node serves it
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serving.Add(1)
		defer serving.Add(-1)
		handler.ServeHTTP(w, r)
	}))
	defer srv.Close()
	stall := func(length int, body string) net.Conn { // sends a part of a body, then nothing
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		_, err = fmt.Fprintf(c, "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", length, body)
		require.NoError(t, err)
		return c
	}
	idle := func() {
		t.Helper()
		require.Eventually(t, func() bool { return serving.Load() == 0 }, 10*time.Second, 10*time.Millisecond)
	}
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	// More stalled uploads than turns, each saying it sends 4 MiB: 36 MiB
	// in all, more than the budget; they send nothing and hold nothing.
	for range 9 {
		c := stall(maxIngestBody, "")
		defer c.Close() // before the server's Close, which waits for their requests
		stalled = append(stalled, c)
	}
	require.Eventually(t, func() bool { return serving.Load() == 9 }, 10*time.Second, 10*time.Millisecond)
	code, r := postIngest(t, srv.URL+"/ingest", "text/plain", "not held up\n")
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.Equal(t, 1, r.Committed)
	for _, c := range stalled {
		c.Close()
	}
	stalled = nil
	idle()
	require.Equal(t, int64(ingestBudget), in.budget.free, "every byte given back")

	// A body over the bound is refused before it is read.
	code, r = postIngest(t, srv.URL+"/ingest", "text/plain", strings.Repeat("x\n", maxIngestBody/2+1))
	require.Equal(t, http.StatusRequestEntityTooLarge, code, "%+v", r)
	require.Contains(t, r.Error, "nothing committed")

	// A budget of 128 KiB: an upload that sent 100 KiB and stalls leaves
	// too little for a 64 KiB body, until it goes.
	in.budget = newByteBudget(128 << 10)
	in.wait = 300 * time.Millisecond
	line := "a hundred kilobytes of lines\n"
	holder := stall(1<<20, strings.Repeat(line, 100<<10/len(line)))
	defer holder.Close() // before the server's Close, which waits for its request
	require.Eventually(t, func() bool {
		in.budget.mu.Lock()
		defer in.budget.mu.Unlock()
		return in.budget.free < 64<<10
	}, 10*time.Second, 10*time.Millisecond)
	body := strings.Repeat("sixty-four kilobytes\n", 64<<10/21)
	code, r = postIngest(t, srv.URL+"/ingest", "text/plain", body)
	require.Equal(t, http.StatusServiceUnavailable, code, "%+v", r)
	require.Contains(t, r.Error, "busy")
	require.Contains(t, r.Error, "nothing committed")
	require.Zero(t, r.Committed)
	holder.Close()
	idle()
	code, r = postIngest(t, srv.URL+"/ingest", "text/plain", body)
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.Equal(t, 64<<10/21, r.Committed)
	idle()
	require.Equal(t, int64(128<<10), in.budget.free)

	// A body that does not arrive in time is refused (408), nothing of it
	// committed, and what it held given back.
	in.bodyTimeout = 300 * time.Millisecond
	slow := stall(12<<10, "a line that never ends")
	defer slow.Close()
	require.NoError(t, slow.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	require.True(t, resp.Close, "the connection closes after the answer")
	var late ingestReply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&late))
	require.Contains(t, late.Error, "did not arrive in time")
	require.Contains(t, late.Error, "nothing committed")
	idle()
	require.Equal(t, int64(128<<10), in.budget.free)

	// A request whose body is in waits for a turn past the body's
	// deadline, and is committed: the deadline does not outlive the body
	// (Go's server clears it when it starts its read watching for the
	// client leaving; a timeout there would end the request's context,
	// and the request would fail "busy"). A guard against a change of
	// either: it passes without a clear of ServeHTTP's own.
	in.wait = 5 * time.Second
	for range cap(in.turn) {
		in.turn <- struct{}{}
	}
	posted := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/ingest", "text/plain", strings.NewReader("after the deadline\n"))
		if err != nil {
			posted <- 0
			return
		}
		resp.Body.Close()
		posted <- resp.StatusCode
	}()
	require.Eventually(t, func() bool { return serving.Load() == 1 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(3 * in.bodyTimeout) // the body's deadline passes while the request waits: what is tested
	for range cap(in.turn) {
		<-in.turn
	}
	require.Equal(t, http.StatusOK, <-posted)
}

// A body that finds the budget spent partway is refused at once, taking
// nothing: it never waits while it holds part of the budget.
func TestBudgetReader(t *testing.T) {
	b := newByteBudget(10)
	r := &budgetReader{r: strings.NewReader("more than ten bytes"), b: b}
	_, err := io.ReadAll(r)
	require.ErrorIs(t, err, errIngestBusy)
	require.Zero(t, r.held)
	require.Equal(t, int64(10), b.free)
	r = &budgetReader{r: strings.NewReader("ten bytes!"), b: b}
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, "ten bytes!", string(got))
	require.Equal(t, int64(10), r.held)
	require.Zero(t, b.free)
	b.give(r.held)
	require.Equal(t, int64(10), b.free)
}

// ingestCluster starts a 3-node cluster and node 1's ingester, served by
// an httptest server whose requests' base context is base (nil: the
// server's own); tweak, if set, changes the ingester before it serves.
func ingestCluster(t *testing.T, base context.Context, tweak func(*ingester)) ([]*logx.Logx, *ingester, *httptest.Server) {
	t.Helper()
	nodes, cfgs := clusterWith(t, nil)
	nf := nodeFile{Config: cfgs[0]}
	in, err := newIngester(nodes[0], nf)
	require.NoError(t, err)
	t.Cleanup(in.close)
	if tweak != nil {
		tweak(in)
	}
	srv := httptest.NewUnstartedServer(nodeHandler(nodes[0], nf, in))
	if base != nil {
		srv.Config.BaseContext = func(net.Listener) context.Context { return base }
	}
	srv.Start()
	t.Cleanup(srv.Close) // before in.close: the server waits for its requests
	return nodes, in, srv
}

// TestIngestDeletedStream: a request for a stream that was deleted is
// refused (404) and drops the Client /ingest kept for it, with its
// connection; each deleted stream kept one until the node stopped.
func TestIngestDeletedStream(t *testing.T) {
	nodes, in, srv := ingestCluster(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, nodes[0].CreateStream(ctx, logx.StreamConfig{Name: "temp"}))
	code, r := postIngest(t, srv.URL+"/ingest?stream=temp", "text/plain", "one\n")
	require.Equal(t, http.StatusOK, code, "%+v", r)
	clients := func() int {
		in.mu.Lock()
		defer in.mu.Unlock()
		return len(in.clients)
	}
	require.Equal(t, 1, clients())

	require.NoError(t, nodes[0].DeleteStream(ctx, "temp"))
	code, r = postIngest(t, srv.URL+"/ingest?stream=temp", "text/plain", "two\n")
	require.Equal(t, http.StatusNotFound, code, "%+v", r)
	require.Zero(t, clients(), "the deleted stream's Client is kept")

	// A deleted stream no request names again: its Client goes when the
	// next stream's is made.
	require.NoError(t, nodes[0].CreateStream(ctx, logx.StreamConfig{Name: "temp2"}))
	code, r = postIngest(t, srv.URL+"/ingest?stream=temp2", "text/plain", "one\n")
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.NoError(t, nodes[0].DeleteStream(ctx, "temp2"))
	code, r = postIngest(t, srv.URL+"/ingest", "text/plain", "default\n")
	require.Equal(t, http.StatusOK, code, "%+v", r)
	in.mu.Lock()
	_, kept := in.clients["temp2"]
	in.mu.Unlock()
	require.False(t, kept, "the deleted stream's Client is kept")
	require.Equal(t, 1, clients())
}

// TestIngestRenderedTooLarge: a line short enough to read but too large
// once rendered (its head, and a `"` written as `\"`) commits nothing of
// its request, as a line too long to read does: before, the chunks before
// it were committed and the answer said "nothing was sent".
func TestIngestRenderedTooLarge(t *testing.T) {
	_, _, srv := ingestCluster(t, nil, nil)
	code, r := postIngest(t, srv.URL+"/ingest", "text/plain", "before\n")
	require.Equal(t, http.StatusOK, code, "%+v", r)
	before := r.First
	body := strings.Repeat(strings.Repeat("a", 1000)+"\n", 200) + strings.Repeat(`"`, 40000) + "\n"
	require.Less(t, 40000, maxIngestLine)
	code, r = postIngest(t, srv.URL+"/ingest", "text/plain", body)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, "%+v", r)
	require.Zero(t, r.Committed)
	require.Contains(t, r.Error, "entry 200 of 201")
	code, r = postIngest(t, srv.URL+"/ingest", "text/plain", "after\n")
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.Equal(t, before+1, r.First, "lines of the refused request were committed")
}

// TestIngestSlowStreamHoldsNoTurn: requests waiting behind an earlier
// request of their stream (here a stream whose Client the test holds, as
// a commit slow to end does) hold none of the ingestAtOnce turns, so
// another stream's requests still commit at once: before, each took a
// turn first and then waited, and the other stream's requests waited
// for them (503 "busy" after ingestWait). Once the stream is free its
// requests commit, one after another.
func TestIngestSlowStreamHoldsNoTurn(t *testing.T) {
	// in.wait: longer than the other stream's request may take.
	nodes, in, srv := ingestCluster(t, nil, func(in *ingester) { in.wait = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, nodes[0].CreateStream(ctx, logx.StreamConfig{Name: "slow"}))

	held := in.client("slow")
	held.slot <- struct{}{} // a request of "slow" still committing
	release := sync.OnceFunc(func() { <-held.slot })
	defer release() // before the server closes, which waits for the requests
	var wg sync.WaitGroup
	codes := make(chan int, ingestAtOnce)
	for range ingestAtOnce {
		wg.Go(func() {
			code, _ := postIngest(t, srv.URL+"/ingest?stream=slow", "text/plain", "x\n")
			codes <- code
		})
	}
	// Their bodies are read (the budget holds them): they wait.
	require.Eventually(t, func() bool {
		in.budget.mu.Lock()
		defer in.budget.mu.Unlock()
		return in.budget.free == in.budget.size-2*ingestAtOnce
	}, 10*time.Second, 5*time.Millisecond)
	// Another stream's request is not held up by them: it ends well
	// within the minute they may wait, or the test fails.
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	req, err := http.NewRequestWithContext(rctx, "POST", srv.URL+"/ingest", strings.NewReader("another stream\n"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "another stream's request waited behind the held stream's")
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	release()
	wg.Wait()
	close(codes)
	for code := range codes {
		require.Equal(t, http.StatusOK, code, "a request of the stream once free")
	}
}

// TestIngestCommitsThroughClose: an /ingest request whose lines have
// started to commit commits them all when the node begins to close
// (SIGTERM cancels the requests' base context, as here between its first
// and second chunk): before, the rest failed, and the answer said 1,000
// committed, the rest not, or perhaps (outcome unknown).
func TestIngestCommitsThroughClose(t *testing.T) {
	reqCtx, cancelReqs := context.WithCancel(context.Background())
	defer cancelReqs()
	_, _, srv := ingestCluster(t, reqCtx, func(in *ingester) {
		in.sending = func(committed int) {
			if committed > 0 {
				cancelReqs()
			}
		}
	})
	var body strings.Builder
	for i := range 3 * ingestChunk {
		fmt.Fprintf(&body, "line %d\n", i)
	}
	code, r := postIngest(t, srv.URL+"/ingest", "text/plain", body.String())
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.Equal(t, 3*ingestChunk, r.Committed)
	require.Error(t, reqCtx.Err(), "the close did not begin mid-request")
}

// TestIngestChargesParsedMembers: a JSON body's members are taken from the
// byte budget as well as its bytes, so a body of many tiny members, which
// parsed holds some ten times its bytes, is refused (busy) by a budget that
// holds its bytes; the budget is whole again after. A body of as many
// bytes in few members goes through.
func TestIngestChargesParsedMembers(t *testing.T) {
	_, in, srv := ingestCluster(t, nil, func(in *ingester) { in.budget = newByteBudget(4 << 20) })
	var many, few strings.Builder
	for l := range 16 {
		many.WriteString("{")
		for i := range 6000 {
			if i > 0 {
				many.WriteString(",")
			}
			fmt.Fprintf(&many, `"%d":0`, i)
		}
		many.WriteString("}\n")
		fmt.Fprintf(&few, "{\"msg\":\"line %d\",\"pad\":%q}\n", l, strings.Repeat("x", 60000))
	}
	require.Less(t, many.Len(), 2<<20, "the body's bytes alone fit the budget")
	code, r := postIngest(t, srv.URL+"/ingest", "application/json", many.String())
	require.Equal(t, http.StatusServiceUnavailable, code, "%+v", r)
	require.Zero(t, r.Committed)
	code, r = postIngest(t, srv.URL+"/ingest", "application/json", few.String())
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.Equal(t, 16, r.Committed)
	require.Eventually(t, func() bool {
		in.budget.mu.Lock()
		defer in.budget.mu.Unlock()
		return in.budget.free == in.budget.size
	}, 10*time.Second, 10*time.Millisecond, "the budget is given back")
}
