package logx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/logx-dev/logx/internal/store"
)

// Query selects lines for Grep. Every set condition must hold.
type Query struct {
	Since time.Time    // lines at or after this time (zero: no bound)
	Until time.Time    // lines before this time (zero: no bound)
	Level slog.Leveler // lines at or above this level (nil: all)
	// Contains is a substring the line must hold ("" matches every line).
	Contains string
	// Regexp, if set, must match the line too.
	Regexp *regexp.Regexp
	// MaxSeq, if positive, selects lines whose sequence number is at most
	// MaxSeq: with Newest and Limit, the next page of older matches
	// (MaxSeq one below the oldest seen). Files that start after it are
	// not read. Context lines (After) may lie beyond it. GrepAt sends it;
	// a node older than this field ignores it.
	MaxSeq uint64

	// Limit, if positive, stops Grep after that many matching lines.
	Limit int
	// Newest delivers the matches newest first: the files from the newest,
	// each file's matches from its end (one file's matches are held at a
	// time). Not with Before or After.
	Newest bool
	// Before and After, if positive, deliver that many lines before and
	// after each match as well, as grep -B and -A do, with Line.Context
	// set; a line near several matches comes once, and a match within
	// another's context comes as a match.
	Before, After int
}

// errGrepLimit ends a Grep that reached its Limit.
var errGrepLimit = errors.New("logx: grep limit reached")

func (q *Query) match(l *Line) bool {
	if q.MaxSeq > 0 && l.Seq > q.MaxSeq {
		return false
	}
	if q.Level != nil && l.Level < q.Level.Level() {
		return false
	}
	if !q.Since.IsZero() && (l.Time.IsZero() || l.Time.Before(q.Since)) {
		return false
	}
	if !q.Until.IsZero() && (l.Time.IsZero() || !l.Time.Before(q.Until)) {
		return false
	}
	return q.Regexp == nil || q.Regexp.Match(l.Text)
}

// grepChunk is how much of a file a Grep worker reads at a time.
const grepChunk = 256 << 10

// Grep calls fn, in log order, for every line of the log in dir (active
// file name file) that matches q. Files are filtered in parallel, one per
// CPU, and their matches merged in order; rotated files whose lines all
// fall outside [Since, Until) are skipped by the time range the checkpoint
// records for each (see pruneByTime). fn's
// Line.Text is only valid during the call. Grep stops at the first error
// fn returns, or when ctx ends.
func Grep(ctx context.Context, dir, file string, q Query, fn func(Line) error) (err error) {
	if q.Before < 0 || q.After < 0 || q.Limit < 0 {
		return fmt.Errorf("logx: Grep: Before (%d), After (%d) and Limit (%d) may not be negative", q.Before, q.After, q.Limit)
	}
	if q.Newest && (q.Before > 0 || q.After > 0) {
		return errors.New("logx: Grep: context lines (Before, After) come in log order: not with Newest")
	}
	if strings.ContainsRune(q.Contains, '\n') {
		return nil // no line holds a newline (matchLines would cut at the needle's)
	}
	if q.Before > 0 || q.After > 0 {
		c := &grepContext{dir: dir, file: file, q: &q, fn: fn}
		defer c.close()
		fn = c.match
		defer func() {
			if err == nil {
				err = c.finish() // the last match's After lines
			}
		}()
	} else if q.Limit > 0 {
		matches, inner := 0, fn
		fn = func(l Line) error {
			if matches == q.Limit {
				return errGrepLimit
			}
			matches++
			return inner(l)
		}
	}
	err = grepMatches(ctx, dir, file, q, fn)
	if errors.Is(err, errGrepLimit) {
		err = nil
	}
	return err
}

// grepMatches is Grep without Limit and context lines: the matches, in
// log order or newest first.
func grepMatches(ctx context.Context, dir, file string, q Query, fn func(Line) error) error {
	files, err := listLogFiles(dir, file)
	if err != nil {
		return err
	}
	files = pruneByTime(dir, files, q)
	if q.MaxSeq > 0 {
		files = slices.DeleteFunc(files, func(lf logFile) bool { return lf.first > q.MaxSeq })
	}
	if q.Newest {
		slices.Reverse(files)
	}
	ctx, cancel := context.WithCancel(ctx)
	jobs := make([]*grepJob, len(files))
	for i, lf := range files {
		jobs[i] = &grepJob{lf: lf, out: make(chan []Line, 4)}
	}
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next == len(jobs) {
					mu.Unlock()
					return
				}
				j := jobs[next]
				next++
				mu.Unlock()
				j.err = grepFile(ctx, dir, file, j.lf, &q, j.out)
				close(j.out)
			}
		}()
	}
	// However this returns (fn's error, or a panic in fn), the workers
	// stop and are waited for.
	defer func() {
		cancel()
		drain(jobs)
		wg.Wait()
	}()
	for _, j := range jobs {
		var held []Line // Newest: this file's matches, delivered from the end
		for batch := range j.out {
			if q.Newest {
				held = append(held, batch...)
				if q.Limit > 0 && len(held) > 2*q.Limit { // only the newest Limit can be wanted
					held = slices.Clone(held[len(held)-q.Limit:])
				}
				continue
			}
			for _, l := range batch {
				if err := fn(l); err != nil {
					return err
				}
			}
		}
		for i := len(held) - 1; i >= 0 && j.err == nil; i-- {
			if err := fn(held[i]); err != nil {
				return err
			}
		}
		if j.err != nil {
			return j.err
		}
	}
	return ctx.Err()
}

// grepJob is one file to filter; its matches arrive on out in batches.
type grepJob struct {
	lf  logFile
	out chan []Line // closed when the file is done
	err error       // set before out is closed
}

// drain empties the jobs' channels so that their workers can finish.
func drain(jobs []*grepJob) {
	for _, j := range jobs {
		for range j.out {
		}
	}
}

// pruneByTime drops the rotated files that cannot hold a line in
// [q.Since, q.Until): those whose time range, recorded in the checkpoint
// (state.json) when they were written, lies wholly outside it. Lines are
// not in time order, so nothing else (a file's first line, the next file's)
// bounds a file's times. Files the checkpoint has no range for (rotated
// since it was written, or before ranges were recorded) and the active
// file are always read; so is every file when the checkpoint cannot be
// read, since skipping files only saves time.
func pruneByTime(dir string, files []logFile, q Query) []logFile {
	if q.Since.IsZero() && q.Until.IsZero() {
		return files
	}
	ranges, ok := checkpointRanges(dir)
	if !ok || len(ranges) == 0 {
		return files
	}
	out := make([]logFile, 0, len(files))
	for _, lf := range files {
		if fs, ok := ranges[lf.name]; ok && !q.timesMeet(fs.MinTime, fs.MaxTime) {
			continue
		}
		out = append(out, lf)
	}
	return out
}

// checkpointRanges are the rotated files the checkpoint (state.json)
// lists, by name, with the time ranges recorded when they were written;
// ok is false when it cannot be read.
func checkpointRanges(dir string) (map[string]store.File, bool) {
	st, _, err := readState(dir)
	if err != nil {
		return nil, false
	}
	ranges := make(map[string]store.File, len(st.Rotated))
	for _, fs := range st.Rotated {
		ranges[fs.Name] = fs
	}
	return ranges, true
}

// timesMeet reports whether a line whose time is in [lo, hi] (Unix
// nanoseconds; both 0: unknown) may be in [q.Since, q.Until).
func (q *Query) timesMeet(lo, hi int64) bool {
	if lo == 0 && hi == 0 || lo > hi {
		return true
	}
	if !q.Since.IsZero() && time.Unix(0, hi).Before(q.Since) {
		return false
	}
	return q.Until.IsZero() || time.Unix(0, lo).Before(q.Until)
}

// matchCheckBytes is how many bytes of lines matchLines gives an
// expression between two looks at its context.
const matchCheckBytes = 64 << 10

// grepFile sends the matching lines of one file in batches.
func grepFile(ctx context.Context, dir, file string, lf logFile, q *Query, out chan<- []Line) error {
	seg, lf, err := openLogFile(dir, file, lf)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // retired or rotated away meanwhile
		}
		return err
	}
	defer seg.Close()
	f := seg.From(0)
	buf := make([]byte, grepChunk)
	var batch []Line
	var carry int // bytes of an incomplete line kept at the start of buf
	needle := []byte(q.Contains)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if carry == len(buf) { // a line longer than the buffer
			if carry > maxLineBytes {
				return fmt.Errorf("logx: %s: %w", lf.name, errLongLine)
			}
			buf = append(buf, make([]byte, min(len(buf), maxLineBytes+1-len(buf)))...)
		}
		n, rerr := io.ReadFull(f, buf[carry:])
		data := buf[:carry+n]
		end := bytes.LastIndexByte(data, '\n') + 1 // complete lines
		if batch == nil && len(needle) == 0 && q.Regexp == nil && q.Level == nil {
			batch = make([]Line, 0, 1024) // every line may match: about a chunk's
		}
		batch = grepLines(ctx, data[:end], needle, q, batch)
		if len(batch) > 0 {
			select {
			case out <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = nil
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				return nil // a trailing incomplete line is not a line yet
			}
			return rerr
		}
		carry = copy(buf, data[end:])
	}
}

// grepLines appends copies of the matching lines of data (whole lines) to
// batch. With a substring, it jumps from match to match instead of looking
// at every line. The copies share one allocation, of the matches' bytes.
func grepLines(ctx context.Context, data, needle []byte, q *Query, batch []Line) []Line {
	first := len(batch)
	batch = matchLines(ctx, data, needle, q, batch)
	size := 0
	for _, l := range batch[first:] {
		size += len(l.Text)
	}
	arena := make([]byte, 0, size)
	for i := first; i < len(batch); i++ {
		at := len(arena)
		arena = append(arena, batch[i].Text...)
		batch[i].Text = arena[at:len(arena):len(arena)]
	}
	return batch
}

// matchLines appends the matching lines of data to batch, their Text in
// data. With an expression, which may cost up to its instructions times a
// line's length, it checks ctx every 64 lines or 64 KiB of them, whichever
// comes first: a line can be as long as MaxBatchBytes, so a check every
// 64 lines alone could let a remote grep run minutes past its timeout.
func matchLines(ctx context.Context, data, needle []byte, q *Query, batch []Line) []Line {
	scanned := 0 // bytes given to the expression since the last check
	for n := 0; len(data) > 0; n++ {
		if q.Regexp != nil && (n%64 == 63 || scanned >= matchCheckBytes) {
			if ctx.Err() != nil {
				return batch // a costly expression: the caller sees ctx end
			}
			scanned = 0
		}
		var line []byte
		if len(needle) > 0 {
			i := bytes.Index(data, needle)
			if i < 0 {
				return batch
			}
			start := bytes.LastIndexByte(data[:i], '\n') + 1
			end := i + bytes.IndexByte(data[i:], '\n')
			line, data = data[start:end], data[end+1:]
		} else {
			end := bytes.IndexByte(data, '\n')
			line, data = data[:end], data[end+1:]
		}
		seq, t, level, err := parseHead(line)
		if err != nil {
			continue
		}
		l := Line{Seq: seq, Time: t, Level: level, Text: line}
		scanned += len(line)
		if q.match(&l) {
			batch = append(batch, l)
		}
	}
	return batch
}

// Grep searches this node's log; see the package-level Grep.
func (lx *Stream) Grep(ctx context.Context, q Query, fn func(Line) error) error {
	return Grep(ctx, lx.cfg.Dir, lx.logFile(), q, fn)
}

// grepSeekAfter is how many lines ahead the next context lines must be
// for grepContext to seek (a binary search over the files) rather than
// read on.
const grepSeekAfter = 1000

// grepContext adds the lines around each match (Query.Before, After) to
// Grep's matches, which arrive in log order: the lines between two
// matches are not matches, so they are read from the files by sequence
// number, with a Reader that only moves forward.
type grepContext struct {
	dir, file string
	q         *Query
	fn        func(Line) error
	r         *Reader
	matches   int
	done      uint64 // the last sequence number delivered
	after     uint64 // deliver context lines up to here before the next match
}

// match delivers the After lines of the previous match that come before
// l, the Before lines of l, and l.
func (c *grepContext) match(l Line) error {
	if c.q.Limit > 0 && c.matches == c.q.Limit {
		return errGrepLimit // finish delivers the last match's After lines
	}
	c.matches++
	if err := c.context(min(c.after, l.Seq-1)); err != nil {
		return err
	}
	if from := l.Seq - min(l.Seq-1, uint64(c.q.Before)); from > c.done+1 {
		if from-c.done > grepSeekAfter && c.r != nil {
			c.r.Close() // far ahead: the next read seeks instead of reading on
			c.r = nil
		}
		c.done = from - 1 // skip to l's Before lines
	}
	if err := c.context(l.Seq - 1); err != nil {
		return err
	}
	if err := c.fn(l); err != nil {
		return err
	}
	c.done, c.after = l.Seq, l.Seq+uint64(c.q.After)
	return nil
}

// finish delivers the last match's After lines.
func (c *grepContext) finish() error { return c.context(c.after) }

// context delivers the lines after c.done up to sequence number to, as
// context lines; the files may end before it.
func (c *grepContext) context(to uint64) error {
	if to <= c.done {
		return nil
	}
	if c.r == nil {
		r, err := OpenReader(c.dir, c.file)
		if err != nil {
			return err
		}
		c.r = r
		if err := r.SeekSeq(c.done + 1); err != nil && !errors.Is(err, ErrRetained) {
			return err
		}
	}
	for c.done < to {
		l, err := c.r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, ErrBadLine) {
			continue // a damaged line: not context, as it is no match
		}
		if err != nil {
			return err
		}
		if l.Seq <= c.done {
			continue
		}
		if l.Seq > c.done+1 && l.Seq > to {
			// A gap the Reader skipped to: go back to it next time.
			c.r.Close()
			c.r = nil
			return nil
		}
		l.Context = true
		if err := c.fn(l); err != nil {
			return err
		}
		c.done = l.Seq
	}
	return nil
}

func (c *grepContext) close() {
	if c.r != nil {
		c.r.Close()
	}
}
