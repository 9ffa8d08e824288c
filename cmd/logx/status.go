package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/logx-dev/logx"
)

// cmdStatus prints a node's Stats as JSON.
func cmdStatus(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	loadTLS := tlsFlags(fs)
	stream := fs.String("stream", logx.DefaultStream, "the stream whose status to print")
	all := fs.Bool("all", false, "print every stream's status, as a JSON array")
	if fs.Parse(args) != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: logx status [-stream S | -all] [-ca F -cert F -key F] ADDR")
		return 2
	}
	tlsConfig, err := loadTLS()
	if err != nil {
		return fail(stderr, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var v any
	if *all {
		v, err = logx.QueryStreams(ctx, fs.Arg(0), tlsConfig)
	} else {
		v, err = logx.QueryStreamStatus(ctx, fs.Arg(0), *stream, tlsConfig)
	}
	if err != nil {
		return fail(stderr, "%v", err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fail(stderr, "%v", err)
	}
	// A node's answer (its ID, its errors) may hold terminal controls.
	if _, err := stdout.Write(append(jsonTermSafe(b), '\n')); err != nil {
		return 2
	}
	return 0
}
