package logxotel_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx"
	"github.com/logx-dev/logx/logxotel"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// A 3-node cluster whose nodes use ContextAttrs: entries logged with a
// context that holds a span of the OpenTelemetry SDK's tracer carry that
// span's ids, through Append, LogAttrs and the slog handler, in the text
// and the JSON format, on every node's file; entries without a span (a
// plain context, or a leveled call, which has none) carry none.
func TestTraceIDsOnEveryNode(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tracer := tp.Tracer("logxotel-test")

	addrs := make([]string, 3)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	base := t.TempDir()
	var nodes []*logx.Logx
	for i, addr := range addrs {
		lx, err := logx.New(logx.Config{NodeID: fmt.Sprintf("n%d", i+1), Addr: addr, Peers: addrs,
			Dir: filepath.Join(base, fmt.Sprintf("n%d", i+1)), File: "app.log", ElectionTimeout: 300 * time.Millisecond,
			Streams:      []logx.StreamConfig{{Name: "api", Format: logx.FormatJSON}},
			ContextAttrs: logxotel.ContextAttrs})
		require.NoError(t, err)
		t.Cleanup(func() { lx.Close() })
		nodes = append(nodes, lx)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, lx := range nodes {
		require.NoError(t, lx.WaitReady(ctx))
	}

	spanCtx, span := tracer.Start(ctx, "request")
	sc := span.SpanContext()
	require.True(t, sc.IsValid())
	tid, sid, flags := sc.TraceID().String(), sc.SpanID().String(), sc.TraceFlags().String()
	require.Len(t, flags, 2)

	_, err := nodes[1].Append(spanCtx, logx.LevelInfo, "append with span", "k", 1)
	require.NoError(t, err)
	nodes[2].LogAttrs(spanCtx, logx.LevelWarn, "logattrs with span", slog.Int("k", 2))
	slog.New(nodes[0].Handler()).WithGroup("g").InfoContext(spanCtx, "handler with span", "k", 3)
	_, err = nodes[0].Append(ctx, logx.LevelInfo, "append without span")
	require.NoError(t, err)
	nodes[1].Info("info has no context")
	api, err := nodes[2].Stream("api")
	require.NoError(t, err)
	_, err = api.Append(spanCtx, logx.LevelInfo, "json with span", "k", 4)
	require.NoError(t, err)
	span.End()
	for _, lx := range nodes {
		require.NoError(t, lx.Flush(ctx))
		s, err := lx.Stream("api")
		require.NoError(t, err)
		require.NoError(t, s.Flush(ctx))
	}

	want := map[string]string{
		"append with span":    "trace_id=" + tid + " span_id=" + sid + " trace_flags=" + flags + " k=1",
		"logattrs with span":  "trace_id=" + tid + " span_id=" + sid + " trace_flags=" + flags + " k=2",
		"handler with span":   "trace_id=" + tid + " span_id=" + sid + " trace_flags=" + flags + " g.k=3",
		"append without span": "",
		"info has no context": "",
	}
	wantJSON := `"msg":"json with span","trace_id":"` + tid + `","span_id":"` + sid + `","trace_flags":"` + flags + `","k":4}`
	for i := range nodes {
		dir := filepath.Join(base, fmt.Sprintf("n%d", i+1))
		var text []byte
		require.Eventually(t, func() bool { // a follower applies a moment after the commit
			text, err = os.ReadFile(filepath.Join(dir, "app.log"))
			return err == nil && strings.Count(string(text), "\n") >= len(want)
		}, 10*time.Second, 10*time.Millisecond)
		for msg, attrs := range want {
			line := lineWith(t, string(text), msg)
			if attrs == "" {
				require.NotContains(t, line, "trace_id", "node %d: %s", i+1, line)
			} else {
				require.True(t, strings.HasSuffix(line, attrs), "node %d: %q should end with %q", i+1, line, attrs)
			}
		}
		var js []byte
		require.Eventually(t, func() bool {
			js, err = os.ReadFile(filepath.Join(dir, "streams", "api", "api.log"))
			return err == nil && len(js) > 0
		}, 10*time.Second, 10*time.Millisecond)
		require.Contains(t, string(js), wantJSON, "node %d", i+1)
	}
}

func lineWith(t *testing.T, text, msg string) string {
	t.Helper()
	for line := range strings.Lines(text) {
		if strings.Contains(line, msg) {
			return strings.TrimSuffix(line, "\n")
		}
	}
	t.Fatalf("no line holds %q in:\n%s", msg, text)
	return ""
}

// A context without a span, or with an invalid one, adds nothing.
func TestNoSpan(t *testing.T) {
	require.Empty(t, logxotel.ContextAttrs(context.Background()))
}
