package logxprom

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// readyNode starts a one-node cluster with the given streams beside the
// default one and waits until it is ready; it closes when the test ends.
func readyNode(t *testing.T, streams ...logx.StreamConfig) *logx.Logx {
	t.Helper()
	addr := freeAddr(t)
	lx, err := logx.New(logx.Config{NodeID: "n1", Addr: addr, Peers: []string{addr},
		Dir: filepath.Join(t.TempDir(), "n1"), File: "app.log", ElectionTimeout: 200 * time.Millisecond, Streams: streams})
	require.NoError(t, err)
	t.Cleanup(func() { lx.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, lx.WaitReady(ctx))
	return lx
}

// serve serves Handler for lx, with a registry holding its Collector, until
// the test ends.
func serve(t *testing.T, lx *logx.Logx) *httptest.Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(lx))
	srv := httptest.NewServer(Handler(lx, reg, Options{}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHandler(t *testing.T) {
	lx := readyNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for k := 0; k < 5; k++ {
		_, err := lx.Append(ctx, logx.LevelInfo, "hello", "k", k)
		require.NoError(t, err)
	}
	srv := serve(t, lx)

	code, body := get(t, srv.URL+"/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, body, `logx_seq{node="n1",stream="default"} 5`)
	require.Contains(t, body, `logx_entries_committed_total{node="n1",stream="default"} 5`)
	require.Contains(t, body, `logx_is_leader{node="n1",stream="default"} 1`)
	require.Contains(t, body, `logx_evicted_producers_total{node="n1",stream="default"} 0`)
	require.Contains(t, body, `logx_ignored_removals_total{node="n1",stream="default"} 0`)
	require.Regexp(t, `logx_log_clock_seconds\{node="n1",stream="default"\} \d`, body)
	require.Regexp(t, `logx_apply_rules\{node="n1",stream="default"\} [01]\n`, body)

	code, body = get(t, srv.URL+"/healthz")
	require.Equal(t, 200, code, body)
	code, body = get(t, srv.URL+"/readyz")
	require.Equal(t, 200, code, body)

	code, body = get(t, srv.URL+"/status")
	require.Equal(t, 200, code)
	var st logx.Stats
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Equal(t, uint64(5), st.Seq)
}

// TestReadyzNoLeader: a node whose peers are down is not ready, but alive.
func TestReadyzNoLeader(t *testing.T) {
	a, b := freeAddr(t), freeAddr(t)
	lx, err := logx.New(logx.Config{NodeID: "n1", Addr: a, Peers: []string{a, b},
		Dir: filepath.Join(t.TempDir(), "n1"), File: "app.log", ElectionTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer lx.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(lx))
	srv := httptest.NewServer(Handler(lx, reg, Options{}))
	defer srv.Close()
	code, body := get(t, srv.URL+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.True(t, strings.Contains(body, "no leader"), body)
	code, body = get(t, srv.URL+"/healthz")
	require.Equal(t, http.StatusOK, code, body)
}

// Every stream has its own series, and /status answers for any stream.
func TestStreamsMetrics(t *testing.T) {
	lx := readyNode(t, logx.StreamConfig{Name: "audit"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	audit, err := lx.Stream("audit")
	require.NoError(t, err)
	for k := 0; k < 3; k++ {
		_, err := audit.Append(ctx, logx.LevelInfo, "hello", "k", k)
		require.NoError(t, err)
	}
	srv := serve(t, lx)
	code, body := get(t, srv.URL+"/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, body, `logx_seq{node="n1",stream="audit"} 3`)
	require.Contains(t, body, `logx_is_leader{node="n1",stream="default"} 1`)
	code, body = get(t, srv.URL+"/status?stream=audit")
	require.Equal(t, 200, code)
	var st logx.Stats
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Equal(t, "audit", st.Stream)
	code, body = get(t, srv.URL+"/status?all=1")
	require.Equal(t, 200, code)
	var all []logx.Stats
	require.NoError(t, json.Unmarshal([]byte(body), &all))
	require.Len(t, all, 2)
	code, _ = get(t, srv.URL+"/status?stream=nope")
	require.Equal(t, http.StatusNotFound, code)
}
