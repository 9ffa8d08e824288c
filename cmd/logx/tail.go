package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/logx-dev/logx"
)

// cmdTail prints a node's log: the last 10 lines, or with -f everything
// from there on as it is written.
func cmdTail(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("tail", stderr)
	follow := fs.Bool("f", false, "keep printing lines as they are written")
	n := fs.Int("n", 10, "start this many lines before the end")
	level := fs.String("level", "", "only lines at or above this level")
	file := fs.String("file", "", "the active file's name (default: found in DIR)")
	stream := fs.String("stream", logx.DefaultStream, "the stream to read")
	if fs.Parse(args) != nil || fs.NArg() != 1 || *n < 0 {
		fmt.Fprintln(stderr, "usage: logx tail [-f] [-n N] [-level L] [-stream S] [-file NAME] DIR")
		return 2
	}
	dir := logx.StreamDir(fs.Arg(0), *stream)
	lv, err := parseLevel(*level)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	name, err := fileFor(dir, *file)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	r, err := logx.OpenReader(dir, name)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	defer r.Close()
	// n lines before the end, found from the end of the newest file.
	if err := r.SeekLast(uint64(*n)); err != nil {
		return fail(stderr, "%v", err)
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	var buf []byte
	for {
		l, err := r.Next()
		if errors.Is(err, io.EOF) {
			if !*follow {
				return 0
			}
			if err := w.Flush(); err != nil {
				return 2
			}
			select {
			case <-ctx.Done():
				return 0
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if errors.Is(err, logx.ErrBadLine) {
			w.Flush()                                                         // the lines before it first
			fmt.Fprintf(stderr, "logx: skipping %s\n", termSafe(err.Error())) // damage; the next line follows
			continue
		}
		if err != nil {
			return fail(stderr, "%v", err)
		}
		if lv == nil || l.Level >= lv.Level() {
			buf = appendTermSafe(buf[:0], l.Text)
			w.Write(buf)
			w.WriteByte('\n')
		}
	}
}
