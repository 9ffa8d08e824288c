package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/logx-dev/logx"
)

// cmdRetention sets a stream's retention (Stream.SetRetention) through the
// node at ADDR: every node then keeps at most -max-files rotated files and
// none older than -max-age (0: no limit), and retires the others at once.
func cmdRetention(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("retention", stderr)
	loadTLS := tlsFlags(fs)
	stream := fs.String("stream", logx.DefaultStream, "the stream whose retention to set")
	maxFiles := fs.Int("max-files", 0, "keep at most this many rotated files (0: no limit)")
	maxAge := fs.Duration("max-age", 0, "keep no rotated file whose newest line is older than this (0: no limit)")
	if fs.Parse(args) != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: logx retention [-stream S] [-ca F -cert F -key F] -max-files N -max-age D ADDR")
		return 2
	}
	// Both, always: the command sets both, and one left out would lift a
	// limit in force without a word.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["max-files"] || !set["max-age"] {
		fmt.Fprintln(stderr, "logx retention: give both -max-files and -max-age (0: no limit); the command sets both")
		return 2
	}
	tlsConfig, err := loadTLS()
	if err != nil {
		return fail(stderr, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := logx.SetRetention(ctx, fs.Arg(0), *stream, *maxFiles, *maxAge, tlsConfig); err != nil {
		return fail(stderr, "%v", err)
	}
	fmt.Fprintf(stdout, "stream %s: retention set to max-files %d, max-age %v (0: no limit) on every node; the rotated files it leaves out are retired\n", *stream, *maxFiles, *maxAge)
	return 0
}
