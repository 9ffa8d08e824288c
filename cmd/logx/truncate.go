package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/logx-dev/logx"
)

// cmdTruncate sets a stream's truncation point (Stream.TruncateBefore)
// through the node at ADDR: every node retires the rotated files whose
// lines are all below SEQ.
func cmdTruncate(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("truncate", stderr)
	loadTLS := tlsFlags(fs)
	stream := fs.String("stream", logx.DefaultStream, "the stream to truncate")
	if fs.Parse(args) != nil || fs.NArg() != 2 {
		fmt.Fprintln(stderr, "usage: logx truncate [-stream S] [-ca F -cert F -key F] ADDR SEQ")
		return 2
	}
	seq, err := strconv.ParseUint(fs.Arg(1), 10, 64)
	if err != nil || seq == 0 {
		return fail(stderr, "logx: truncate: %q is not a sequence number (1, 2, ...)", fs.Arg(1))
	}
	tlsConfig, err := loadTLS()
	if err != nil {
		return fail(stderr, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	addr := fs.Arg(0)
	if err := logx.TruncateBefore(ctx, addr, *stream, seq, tlsConfig); err != nil {
		return fail(stderr, "%v", err)
	}
	st, err := logx.QueryStreamStatus(ctx, addr, *stream, tlsConfig)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	note := ""
	if st.TruncatedBefore > seq {
		note = fmt.Sprintf(" (it was already past %d: the point only rises)", seq)
	}
	fmt.Fprintf(stdout, "stream %s: truncated before %d%s; every node retires the rotated files wholly before it\n", *stream, st.TruncatedBefore, note)
	return 0
}
