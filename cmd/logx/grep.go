package main

import (
	"bufio"
	"context"
	"encoding/json"
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
	after := fs.Int("A", 0, "print N lines after each match")
	before := fs.Int("B", 0, "print N lines before each match")
	around := fs.Int("C", 0, "print N lines before and after each match")
	count := fs.Bool("c", false, "print only how many lines match")
	newest := fs.Bool("r", false, "newest matches first")
	limit := fs.Int("limit", 0, "stop after N matching lines (with -r: the N newest; with -all: N in all, without -A, -B, -C)")
	asJSON := fs.Bool("json", false, "print each line as a JSON object: seq, time, level, context, line (and stream, with -all)")
	addr := fs.String("addr", "", "ask the node at HOST:PORT to search its files, instead of reading DIR")
	loadTLS := tlsFlags(fs)
	if fs.Parse(args) != nil || fs.NArg() != 2 && *addr == "" || fs.NArg() != 1 && *addr != "" {
		fmt.Fprintln(stderr, "usage: logx grep [-since T] [-until T] [-level L] [-E] [-A N] [-B N] [-C N] [-c] [-r] [-limit N] [-json] [-stream S | -all] [-file NAME] PATTERN DIR\n       logx grep [same options but -all and -file] -addr HOST:PORT [-ca F -cert F -key F] PATTERN")
		return 2
	}
	if *addr != "" && (*all || *file != "") {
		return fail(stderr, "-addr searches one stream's files on the node: leave -all and -file out")
	}
	if *all && (*file != "" || *stream != logx.DefaultStream) {
		return fail(stderr, "-all searches every stream: leave -stream and -file out")
	}
	if *after < 0 || *before < 0 || *around < 0 || *limit < 0 {
		return fail(stderr, "-A, -B, -C and -limit take a count of 0 or more")
	}
	if *all && *newest {
		return fail(stderr, "-all merges the streams oldest first: not with -r")
	}
	pattern, dir := fs.Arg(0), fs.Arg(1) // dir is "" with -addr
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
	q.Before, q.After = max(*before, *around), max(*after, *around)
	q.Limit, q.Newest = *limit, *newest
	if *all && q.Limit > 0 && (q.Before > 0 || q.After > 0) {
		// Merged by time, the streams' context lines would part from
		// their matches at the limit.
		return fail(stderr, "-all with -limit: not with context lines (-A, -B, -C)")
	}
	if q.Newest && (q.Before > 0 || q.After > 0) {
		return fail(stderr, "context lines (-A, -B, -C) come in log order: not with -r")
	}
	w := bufio.NewWriterSize(stdout, 256<<10)
	out := &grepOutput{w: w, json: *asJSON, count: *count, separate: q.Before > 0 || q.After > 0}
	switch {
	case *addr != "":
		tlsConfig, terr := loadTLS()
		if terr != nil {
			return fail(stderr, "%v", terr)
		}
		var truncated bool
		truncated, err = logx.GrepAt(ctx, *addr, *stream, q, tlsConfig, func(l logx.Line) error { return out.line("", l) })
		if truncated {
			defer fmt.Fprintf(stderr, "logx: %s stopped its answer at its bound (%d lines here): narrow the search (-since, -until, -limit)\n", *addr, out.printed)
		}
	case *all:
		err = grepAll(ctx, dir, q, out.line)
	default:
		dir = logx.StreamDir(dir, *stream)
		var name string
		if name, err = fileFor(dir, *file); err != nil {
			return fail(stderr, "%v", err)
		}
		err = logx.Grep(ctx, dir, name, q, func(l logx.Line) error { return out.line("", l) })
	}
	if err == nil && *count {
		_, err = fmt.Fprintln(w, out.matches)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if out.matches == 0 {
		return 1
	}
	return 0
}

// grepOutput prints grep's lines: as they are (after "stream: " with
// -all), or as JSON objects; "--" between groups of context lines that are
// not contiguous, as grep does; or nothing but the count.
type grepOutput struct {
	w                     *bufio.Writer
	json, count, separate bool
	matches, printed      int
	last                  map[string]uint64 // the last sequence number printed, by stream
	buf                   []byte
}

func (o *grepOutput) line(stream string, l logx.Line) error {
	o.printed++
	if !l.Context {
		o.matches++
	}
	if o.count {
		return nil
	}
	if o.separate && !o.json {
		if o.last == nil {
			o.last = map[string]uint64{}
		}
		if prev, ok := o.last[stream]; ok && l.Seq != prev+1 {
			o.w.WriteString("--\n")
		}
		o.last[stream] = l.Seq
	}
	if o.json {
		v := struct {
			Stream  string     `json:"stream,omitempty"`
			Seq     uint64     `json:"seq"`
			Time    *time.Time `json:"time,omitempty"`
			Level   string     `json:"level"`
			Context bool       `json:"context,omitempty"`
			Line    string     `json:"line"`
		}{Stream: stream, Seq: l.Seq, Level: l.Level.String(), Context: l.Context, Line: string(l.Text)}
		if !l.Time.IsZero() {
			v.Time = &l.Time
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		o.w.Write(jsonTermSafe(b))
		return o.w.WriteByte('\n')
	}
	if stream != "" {
		o.w.WriteString(stream)
		o.w.WriteString(": ")
	}
	o.buf = appendTermSafe(o.buf[:0], l.Text)
	o.w.Write(o.buf)
	return o.w.WriteByte('\n')
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
	matched := 0
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
		if !heads[best].line.Context {
			matched++
		}
		if err := next(best); err != nil {
			return err
		}
		if q.Limit > 0 && matched == q.Limit {
			return nil // the whole output's limit (each stream's search stops at it too)
		}
	}
}
