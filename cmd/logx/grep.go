package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/logx-dev/logx"
)

// cmdGrep prints the lines of a node's log that match.
func cmdGrep(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("grep", stderr)
	since := fs.String("since", "", "lines at or after this time (RFC 3339, or a duration ago)")
	until := fs.String("until", "", "lines before this time")
	level := fs.String("level", "", "only lines at or above this level")
	re := fs.Bool("E", false, "PATTERN is a regular expression (RE2 syntax)")
	file := fs.String("file", "", "the active file's name (default: found in DIR)")
	stream := fs.String("stream", logx.DefaultStream, "the stream to search")
	all := fs.Bool("all", false, "search every stream in DIR, merged by time; each line starts with its stream's name")
	if fs.Parse(args) != nil || fs.NArg() != 2 {
		fmt.Fprintln(stderr, "usage: logx grep [-since T] [-until T] [-level L] [-E] [-stream S | -all] [-file NAME] PATTERN DIR")
		return 2
	}
	if *all && (*file != "" || *stream != logx.DefaultStream) {
		return fail(stderr, "-all searches every stream: leave -stream and -file out")
	}
	pattern, dir := fs.Arg(0), fs.Arg(1)
	var q logx.Query
	var err error
	if q.Since, err = parseTime(*since); err != nil {
		return fail(stderr, "-since: %v", err)
	}
	if q.Until, err = parseTime(*until); err != nil {
		return fail(stderr, "-until: %v", err)
	}
	if q.Level, err = parseLevel(*level); err != nil {
		return fail(stderr, "-level: %v", err)
	}
	if *re {
		if q.Regexp, err = regexp.Compile(pattern); err != nil {
			return fail(stderr, "%v", err)
		}
	} else {
		q.Contains = pattern
	}
	w := bufio.NewWriterSize(stdout, 256<<10)
	found := false
	if *all {
		err = grepAll(ctx, dir, q, func(stream string, l logx.Line) error {
			found = true
			w.WriteString(stream)
			w.WriteString(": ")
			w.Write(l.Text)
			return w.WriteByte('\n')
		})
	} else {
		dir = logx.StreamDir(dir, *stream)
		var name string
		if name, err = fileFor(dir, *file); err != nil {
			return fail(stderr, "%v", err)
		}
		err = logx.Grep(ctx, dir, name, q, func(l logx.Line) error {
			found = true
			w.Write(l.Text)
			return w.WriteByte('\n')
		})
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if !found {
		return 1
	}
	return 0
}

// grepAll searches every stream of the node directory dir and calls fn
// with the matches merged by time: each stream's are searched on its own
// goroutine, and the earliest of their next lines goes first (a line
// without a time goes with its stream's previous one). Within a stream the
// lines keep their order.
func grepAll(ctx context.Context, dir string, q logx.Query, fn func(stream string, l logx.Line) error) error {
	names, err := logx.StreamNames(dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		line logx.Line
		err  error
	}
	chans := make([]chan result, len(names))
	for i, name := range names {
		sdir := logx.StreamDir(dir, name)
		file, err := detectFile(sdir)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		ch := make(chan result, 256)
		chans[i] = ch
		go func() {
			defer close(ch)
			err := logx.Grep(ctx, sdir, file, q, func(l logx.Line) error {
				l.Text = append([]byte(nil), l.Text...)
				select {
				case ch <- result{line: l}:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil && ctx.Err() == nil {
				select {
				case ch <- result{err: fmt.Errorf("stream %s: %w", name, err)}:
				case <-ctx.Done():
				}
			}
		}()
	}
	heads := make([]*result, len(names))
	last := make([]time.Time, len(names))
	next := func(i int) error {
		r, ok := <-chans[i]
		switch {
		case !ok:
			heads[i] = nil
		case r.err != nil:
			return r.err
		default:
			if r.line.Time.IsZero() {
				r.line.Time = last[i]
			}
			last[i] = r.line.Time
			heads[i] = &r
		}
		return nil
	}
	for i := range names {
		if err := next(i); err != nil {
			return err
		}
	}
	for {
		best := -1
		for i, h := range heads {
			if h != nil && (best < 0 || h.line.Time.Before(heads[best].line.Time)) {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		if err := fn(names[best], heads[best].line); err != nil {
			return err
		}
		if err := next(best); err != nil {
			return err
		}
	}
}
