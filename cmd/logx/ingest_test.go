package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestIngestSlowUploads: uploads that send their headers and part of a
// body and then stall do not hold up the other requests: a request reads
// its body before it waits for a turn to commit, and holds only the bytes
// it has read. (The turn came first: ingestAtOnce stalled uploads made
// every other request wait ingestWait and fail "busy", for as long as the
// server's ReadTimeout, a minute.) When the bodies read and not yet
// committed have spent the budget, a request fails "busy" after its wait,
// nothing of it committed, and succeeds once the budget is given back.
func TestIngestSlowUploads(t *testing.T) {
	nodes, cfgs := clusterWith(t, nil)
	in, err := newIngester(nodes[0], nodeFile{Config: cfgs[0]})
	require.NoError(t, err)
	defer in.close()
	in.wait = 2 * time.Second
	var serving atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serving.Add(1)
		defer serving.Add(-1)
		in.ServeHTTP(w, r)
	}))
	defer srv.Close()
	stall := func(length int, body string) net.Conn { // sends a part of a body, then nothing
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		_, err = fmt.Fprintf(c, "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", length, body)
		require.NoError(t, err)
		return c
	}
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	for range ingestAtOnce + 1 {
		stalled = append(stalled, stall(1<<20, "a stalled line\n"))
	}
	require.Eventually(t, func() bool { return serving.Load() == ingestAtOnce+1 }, 10*time.Second, 10*time.Millisecond)

	code, r := postIngest(t, srv.URL+"/ingest", "text/plain", "not held up\n")
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.Equal(t, 1, r.Committed)
	for _, c := range stalled {
		c.Close()
	}
	stalled = nil
	require.Eventually(t, func() bool { return serving.Load() == 0 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, int64(ingestBudget), in.budget.free, "every byte given back")

	// A budget of 16 KiB: one upload of 12 KiB that stalls leaves too
	// little for an 8 KiB body, until it goes.
	in.budget = newByteBudget(16 << 10)
	in.wait = 300 * time.Millisecond
	holder := stall(12<<10, "twelve kilobytes of lines, some\n")
	require.Eventually(t, func() bool {
		in.budget.mu.Lock()
		defer in.budget.mu.Unlock()
		return in.budget.free <= 4<<10
	}, 10*time.Second, 10*time.Millisecond)
	body := strings.Repeat("eight kilobytes\n", 8<<10/16)
	code, r = postIngest(t, srv.URL+"/ingest", "text/plain", body)
	require.Equal(t, http.StatusServiceUnavailable, code, "%+v", r)
	require.Contains(t, r.Error, "busy")
	require.Contains(t, r.Error, "nothing committed")
	require.Zero(t, r.Committed)
	holder.Close()
	require.Eventually(t, func() bool { return serving.Load() == 0 }, 10*time.Second, 10*time.Millisecond)
	code, r = postIngest(t, srv.URL+"/ingest", "text/plain", body)
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.Equal(t, 8<<10/16, r.Committed)
	require.Equal(t, int64(16<<10), in.budget.free)

	// A body that does not arrive in time is refused (408), nothing of it
	// committed, and its share given back.
	in.bodyTimeout = 300 * time.Millisecond
	slow := stall(12<<10, "a line that never ends")
	defer slow.Close()
	require.NoError(t, slow.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	var late ingestReply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&late))
	require.Contains(t, late.Error, "did not arrive in time")
	require.Contains(t, late.Error, "nothing committed")
	require.Eventually(t, func() bool { return serving.Load() == 0 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, int64(16<<10), in.budget.free)
}
