package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/logx-dev/logx"
)

// cmdLevel prints a stream's level on the node at ADDR and its cluster
// level, or sets the cluster level (Stream.SetClusterLevel) through that
// node.
func cmdLevel(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("level", stderr)
	loadTLS := tlsFlags(fs)
	stream := fs.String("stream", logx.DefaultStream, "the stream whose level to read or set")
	if fs.Parse(args) != nil || fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(stderr, "usage: logx level [-stream S] [-ca F -cert F -key F] ADDR [LEVEL]")
		return 2
	}
	tlsConfig, err := loadTLS()
	if err != nil {
		return fail(stderr, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	addr := fs.Arg(0)
	if fs.NArg() == 2 {
		l, err := logx.ParseLevel(fs.Arg(1))
		if err != nil {
			return fail(stderr, "%v", err)
		}
		if err := logx.SetClusterLevel(ctx, addr, *stream, l, tlsConfig); err != nil {
			return fail(stderr, "%v", err)
		}
	}
	st, err := logx.QueryStreamStatus(ctx, addr, *stream, tlsConfig)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if st.Level == "" {
		return fail(stderr, "logx: %s runs a logx without the cluster level (version %d)", addr, st.Version)
	}
	cluster := st.ClusterLevel
	if cluster == "" {
		cluster = "none"
	}
	// The node's answer may hold terminal controls.
	fmt.Fprintf(stdout, "stream %s on %s: level %s, cluster level %s\n", termSafe(st.Stream), addr, termSafe(st.Level), termSafe(cluster))
	return 0
}
