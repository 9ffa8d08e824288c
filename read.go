package logx

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/logx-dev/logx/internal/store"
)

// Reading the log. Every node holds the whole log in its files, so reading
// is local: a Reader walks a node's files in log order, from any sequence
// number or time, without loading a file into memory. Seeking finds the file
// by its name (rotated files are named after their first sequence number)
// and the line by binary search over byte offsets, so it never scans the
// log from the beginning.

// Line is one line of the log.
type Line struct {
	Seq   uint64
	Time  time.Time // zero if the entry had none
	Level slog.Level
	// Text is the whole line without its newline. It is only valid until
	// the next call to Next.
	Text []byte
	// Context is set on a line Grep delivers because it is near a match
	// (Query.Before, After), not because it matches.
	Context bool
}

// ErrRetained is returned by Reader.SeekSeq and Reader.SeekTime when the
// position asked for is older than the oldest line still in the files
// (retention removed it); the Reader is then at the oldest line.
var ErrRetained = errors.New("logx: the log no longer holds that position (retention or truncation removed it)")

// ErrBadLine is wrapped by Reader.Next's error for a complete line that
// does not parse (damage); the next call reads on after it. Watch and
// Grep skip such lines.
var ErrBadLine = errors.New("logx: a line that does not parse")

// parseHead parses the sequence number, time and level at the start of a
// line rendered by logx, in either format.
func parseHead(b []byte) (seq uint64, t time.Time, level slog.Level, err error) {
	var sep byte
	switch {
	case bytes.HasPrefix(b, []byte("seq=")):
		b, sep = b[4:], ' '
	case bytes.HasPrefix(b, []byte(`{"seq":`)):
		b, sep = b[7:], ','
	default:
		return 0, t, 0, errors.New("logx: not a log line")
	}
	i := bytes.IndexByte(b, sep)
	if i < 0 {
		return 0, t, 0, errors.New("logx: truncated log line")
	}
	if seq, err = parseSeq(b[:i]); err != nil {
		return 0, t, 0, fmt.Errorf("logx: bad sequence number: %w", err)
	}
	b = b[i+1:]
	timeKey, levelKey := "time=", "level="
	if sep == ',' {
		timeKey, levelKey = `"time":"`, `"level":"`
	}
	if bytes.HasPrefix(b, []byte(timeKey)) && len(b) >= len(timeKey)+len(timeLayout) {
		ts := b[len(timeKey) : len(timeKey)+len(timeLayout)]
		if t, err = parseLineTime(ts); err != nil {
			return 0, t, 0, fmt.Errorf("logx: bad time: %w", err)
		}
		b = b[min(len(b), len(timeKey)+len(timeLayout)+1):] // a line may end at its time
		if sep == ',' {
			b = b[min(1, len(b)):] // the closing quote's comma
		}
	}
	if !bytes.HasPrefix(b, []byte(levelKey)) {
		return 0, t, 0, errors.New("logx: no level")
	}
	b = b[len(levelKey):]
	end := bytes.IndexAny(b, ` "`)
	if end < 0 {
		return 0, t, 0, errors.New("logx: truncated level")
	}
	if level, err = parseLineLevel(b[:end]); err != nil {
		return 0, t, 0, err
	}
	return seq, t, level, nil
}

// parseSeq is strconv.ParseUint(b, 10, 64) without a string: up to 19
// digits cannot overflow; anything else goes to ParseUint.
func parseSeq(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 19 {
		return strconv.ParseUint(string(b), 10, 64)
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return strconv.ParseUint(string(b), 10, 64)
		}
		n = n*10 + uint64(c-'0')
	}
	return n, nil
}

// parseLineLevel is slog.Level.UnmarshalText, at once for the four names
// lines mostly have.
func parseLineLevel(b []byte) (slog.Level, error) {
	switch string(b) {
	case "INFO":
		return slog.LevelInfo, nil
	case "WARN":
		return slog.LevelWarn, nil
	case "ERROR":
		return slog.LevelError, nil
	case "DEBUG":
		return slog.LevelDebug, nil
	}
	var l slog.Level
	err := l.UnmarshalText(b)
	return l, err
}

// parseLineTime is time.Parse(timeLayout, ts), several times faster for
// the times logx writes (every line read is parsed: a histogram of a day
// reads millions); anything else goes to time.Parse, so that the result
// and the errors are the same (FuzzLineTime).
func parseLineTime(ts []byte) (time.Time, error) {
	if len(ts) != len(timeLayout) || ts[4] != '-' || ts[7] != '-' || ts[10] != 'T' || ts[13] != ':' ||
		ts[16] != ':' || ts[19] != '.' || ts[26] != 'Z' {
		return time.Parse(timeLayout, string(ts))
	}
	num := func(b []byte) int64 {
		var n int64
		for _, c := range b {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int64(c-'0')
		}
		return n
	}
	year, month, day := num(ts[0:4]), num(ts[5:7]), num(ts[8:10])
	hour, min, sec, usec := num(ts[11:13]), num(ts[14:16]), num(ts[17:19]), num(ts[20:26])
	if year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || min < 0 || min > 59 ||
		sec < 0 || sec > 59 || usec < 0 || day > daysIn(month, year) {
		return time.Parse(timeLayout, string(ts))
	}
	// Days since 1970-01-01 of the civil date (H. Hinnant's algorithm, the
	// inverse of appendUTCTime's).
	y := year
	if month <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (month + 9) % 12
	doy := (153*mp+2)/5 + day - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	days := era*146097 + doe - 719468
	return time.Unix(days*86400+hour*3600+min*60+sec, usec*1000).UTC(), nil
}

// daysIn is the number of days of month m (1 to 12) in year y.
func daysIn(m, y int64) int64 {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// LogFiles returns the names of the log files in dir for the active file
// name, rotated files first in log order and the active file last. A
// rotated file kept compressed (Config.Compress) is given by its name on
// disk, <name>.zst; OpenLogFile reads either form.
func LogFiles(dir, name string) ([]string, error) { return store.LogFiles(dir, name) }

// OpenLogFile opens the log file at path, as LogFiles names it, for its
// plain bytes: a compressed file is decoded as it is read. A plain rotated
// file that has been compressed since it was listed is found under its
// compressed name.
func OpenLogFile(path string) (io.ReadCloser, error) {
	seg, err := store.OpenSegment(path)
	if err != nil {
		return nil, err
	}
	return segmentReader{seg.From(0), seg}, nil
}

type segmentReader struct {
	io.Reader
	io.Closer
}

// Reader reads a node's log files in order. It is not safe for concurrent
// use. It follows rotation: at the end of a file it moves to the next one,
// and at the end of the active file Next returns io.EOF; calling Next again
// later returns lines written meanwhile. A line still being written is not
// returned until it is complete.
type Reader struct {
	dir, file string
	cur       logFile
	f         *store.Segment
	br        *bufio.Reader
	off       int64  // offset in f of the next line
	last      uint64 // the sequence number of the last line Next returned (0: none since the last seek)
	buf       []byte
	closed    bool // Close was called: every later call is ErrClosed
}

// OpenReader opens the log in dir, whose active file is named file, at its
// oldest line.
func OpenReader(dir, file string) (*Reader, error) {
	r := &Reader{dir: dir, file: file}
	if err := r.SeekSeq(0); err != nil && !errors.Is(err, ErrRetained) {
		return nil, err
	}
	return r, nil
}

// Close closes the file the Reader has open; later calls return ErrClosed.
func (r *Reader) Close() error {
	r.closed = true
	return r.closeFile()
}

func (r *Reader) closeFile() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// open opens lf at offset off; the file open before stays open if lf
// cannot be (retired since it was listed: ErrNotExist).
func (r *Reader) open(lf logFile, off int64) error {
	f, lf, err := openLogFile(r.dir, r.file, lf)
	if err != nil {
		return err
	}
	r.closeFile()
	r.cur, r.f = lf, f
	return r.seek(off)
}

func (r *Reader) seek(off int64) error {
	if off < 0 {
		return fmt.Errorf("logx: negative offset %d", off)
	}
	r.off = off
	src := r.f.From(off) // a file being written grows: to wherever its end is then
	if r.br == nil {
		r.br = bufio.NewReaderSize(src, 256<<10)
	} else {
		r.br.Reset(src)
	}
	return nil
}

// SeekSeq positions the Reader at the line with sequence number seq, or the
// first line after it. If seq is older than the oldest line, the Reader is
// at the oldest line and SeekSeq returns ErrRetained (seq 0 means the
// oldest line and is not an error).
func (r *Reader) SeekSeq(seq uint64) error {
	return r.listAgain(func() error { return r.seekSeq(seq) })
}

// listAgain runs seek, and again (up to twice) if a file it listed was
// retired before it opened it: retention takes the oldest file, which
// OpenReader and a seek to an early line open.
func (r *Reader) listAgain(seek func() error) error {
	r.last = 0
	for try := 0; ; try++ {
		err := seek()
		if try == 2 || !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
}

// files lists the log's files, or fails with ErrClosed once the Reader is
// closed.
func (r *Reader) files() ([]logFile, error) {
	if r.closed {
		return nil, ErrClosed
	}
	return listLogFiles(r.dir, r.file)
}

func (r *Reader) seekSeq(seq uint64) error {
	files, err := r.files()
	if err != nil {
		return err
	}
	if len(files) == 0 {
		// Nothing written yet: start at the beginning of the active file.
		r.closeFile()
		r.cur = logFile{name: r.file, first: 1}
		return nil
	}
	k := sort.Search(len(files), func(i int) bool { return files[i].first > seq }) - 1
	if k < 0 {
		if err := r.open(files[0], 0); err != nil {
			return err
		}
		if seq == 0 || files[0].first == 1 {
			return nil
		}
		return fmt.Errorf("%w: asked for %d, the oldest line is %d", ErrRetained, seq, files[0].first)
	}
	if err := r.open(files[k], 0); err != nil {
		return err
	}
	off, err := r.search(func(s uint64, _ time.Time) bool { return s >= seq }, false)
	if err != nil {
		return err
	}
	return r.seek(off)
}

// search returns the offset of the first line of the current file for
// which pred holds (lines are assumed ordered so that pred is false, then
// true), or the file's size. It probes lines by binary search over byte
// offsets; timed: pred is about time, so only lines with one are probed
// (lineAtOrAfter).
func (r *Reader) search(pred func(seq uint64, t time.Time) bool, timed bool) (int64, error) {
	size, err := r.f.Size()
	if err != nil {
		return 0, err
	}
	lo, hi := int64(0), size // the answer is a line start in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		start, seq, t, ok, err := r.lineAtOrAfter(mid, hi, timed)
		if err != nil {
			return 0, err
		}
		if !ok {
			hi = mid // no line starts in [mid, hi): look left
			if mid == lo {
				break
			}
			continue
		}
		if pred(seq, t) {
			hi = start
		} else {
			// The line at start fails: the answer is after it.
			end, err := r.lineEnd(start)
			if err != nil {
				return 0, err
			}
			lo = end
		}
	}
	return lo, nil
}

// lineAtOrAfter finds the first complete line starting at or after off and
// before limit (off 0 is a line start; otherwise the line starts after the
// next newline) whose head parses, and, if timed, that has a time: for a
// time predicate a line without one (a record with no time, or one outside
// what a head can show) counts as its successor, so a search never takes
// it for a line before the time sought and skips the lines after it.
func (r *Reader) lineAtOrAfter(off, limit int64, timed bool) (start int64, seq uint64, t time.Time, ok bool, err error) {
	if err := r.seek(off); err != nil {
		return 0, 0, t, false, err
	}
	start = off
	if off > 0 {
		// Back up one byte so that a line starting exactly at off counts.
		if err := r.seek(off - 1); err != nil {
			return 0, 0, t, false, err
		}
		skip, err := r.br.ReadSlice('\n')
		start = off - 1 + int64(len(skip))
		for errors.Is(err, bufio.ErrBufferFull) {
			skip, err = r.br.ReadSlice('\n')
			start += int64(len(skip))
		}
		if err != nil {
			return 0, 0, t, false, notEOF(err)
		}
	}
	for start < limit {
		line, err := r.readLine()
		if err != nil {
			return 0, 0, t, false, notEOF(err)
		}
		if seq, t, _, perr := parseHead(line); perr == nil && (!timed || !t.IsZero()) {
			return start, seq, t, true, nil
		}
		start += int64(len(line)) + 1
	}
	return 0, 0, t, false, nil
}

// lineEnd returns the offset just after the line starting at start.
func (r *Reader) lineEnd(start int64) (int64, error) {
	if err := r.seek(start); err != nil {
		return 0, err
	}
	line, err := r.readLine()
	if err != nil {
		return 0, err
	}
	return start + int64(len(line)) + 1, nil
}

// maxLineBytes is more than the longest line a node writes: a rendered
// entry of at most MaxEntrySize, itself at most maxBatchBytes, behind its
// sequence number. Longer is damage (or not a log file), found before a
// reader's buffer grows to the file's size.
const maxLineBytes = maxBatchBytes + 4<<10

// badLineError is Next's error for a complete line that does not parse;
// the next call reads on after it (Grep's context lines skip it, as Grep
// skips it among the matches).
type badLineError struct{ err error }

func (e badLineError) Error() string        { return e.err.Error() }
func (e badLineError) Unwrap() error        { return e.err }
func (e badLineError) Is(target error) bool { return target == ErrBadLine }

// errLongLine is the damage of a line longer than maxLineBytes.
var errLongLine = fmt.Errorf("%w: a line longer than %d bytes, more than any node writes", ErrCorrupt, maxLineBytes)

// readLine reads one complete line (without its newline) at the current
// position, into r.buf if it is longer than the buffer. A line without a
// newline at the end of the file is io.EOF; a file that cannot be read (a
// damaged compressed frame: ErrCorrupt) is its error, never io.EOF, which
// would have Next wait for the rest of the line forever. So is a line
// longer than maxLineBytes.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == nil {
		return line[:len(line)-1], nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	r.buf = append(r.buf[:0], line...)
	for {
		line, err = r.br.ReadSlice('\n')
		r.buf = append(r.buf, line...)
		if err == nil {
			return r.buf[:len(r.buf)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		if len(r.buf) > maxLineBytes {
			return nil, errLongLine
		}
	}
}

// notEOF is err, or nil for the end of a file.
func notEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// Next returns the next line. At the end of what has been written it
// returns io.EOF; a later call continues from there. A complete line that
// does not parse is an error wrapping ErrBadLine, and the next call reads
// on after it; other errors come again at the next call.
func (r *Reader) Next() (Line, error) {
	if r.closed {
		return Line{}, ErrClosed
	}
	cutAt := int64(-1) // where a file with a newer one after it ended in a partial line
	for gone, gaps := 0, 0; ; {
		if r.f == nil {
			// Nothing was written when the Reader was positioned.
			files, err := listLogFiles(r.dir, r.file)
			if err != nil {
				return Line{}, err
			}
			if len(files) == 0 {
				return Line{}, io.EOF
			}
			if err := r.open(files[0], 0); err != nil {
				return Line{}, err
			}
		}
		line, err := r.readLine()
		if err != nil && !errors.Is(err, io.EOF) {
			_ = r.seek(r.off) // a call after the error reads the same line, not its tail
			return Line{}, fmt.Errorf("logx: %s: %w", r.cur.name, err)
		}
		if err == nil {
			r.off += int64(len(line)) + 1
			seq, t, level, err := parseHead(line)
			if err != nil {
				return Line{}, fmt.Errorf("logx: %s at byte %d: %w", r.cur.name, r.off-int64(len(line))-1, badLineError{err})
			}
			r.last = seq
			return Line{Seq: seq, Time: t, Level: level, Text: line}, nil
		}
		// The end of this file, or a line still being written: go back to
		// the last line start, and move on if a newer file exists.
		if err := r.seek(r.off); err != nil {
			return Line{}, err
		}
		if r.stillActive() {
			return Line{}, io.EOF // no newer file: no need to list Dir
		}
		next, ok, err := r.nextFile()
		if err != nil {
			return Line{}, err
		}
		if !ok {
			return Line{}, io.EOF
		}
		if next.first == r.cur.first {
			// The open file was replaced: the node cut its files back to
			// its checkpoint and is writing the same lines again (a
			// restart, a retried write), whatever this one's torn tail.
			// Go on in the new one where this Reader stands, once it is
			// written that far.
			if again, err := r.resume(next); err != nil || !again {
				return Line{}, cmp.Or(err, io.EOF)
			}
			continue
		}
		// A newer file exists only once this one is complete (rotation
		// writes every line first); read what arrived since the EOF.
		size, err := r.f.Size()
		if err != nil {
			return Line{}, err
		}
		if size > r.off {
			if cutAt == r.off {
				// Read again, and still no newline: its last line was cut
				// (damage the start's check repairs), and would be read
				// again for good.
				return Line{}, fmt.Errorf("logx: %s at byte %d: %w: its last line is cut (%d bytes without a newline) and a newer file follows",
					r.cur.name, r.off, ErrCorrupt, size-r.off)
			}
			cutAt = r.off
			continue
		}
		if r.last != 0 && next.first != r.last+1 && gaps < 2 {
			// The next file listed does not start right after the last
			// line read: the listing may have missed one (renamed while
			// the directory was read in several calls). List again; a
			// gap that stays is passed on (Watch reports it).
			gaps++
			continue
		}
		if err := r.open(next, 0); err != nil {
			if errors.Is(err, os.ErrNotExist) && gone < 2 {
				gone++ // retired since the listing: list again (Watch reports the gap)
				continue
			}
			return Line{}, err
		}
	}
}

// stillActive reports whether the open file is the active file, not yet
// rotated: then no newer file exists. It costs two stat calls, where
// listing Dir (nextFile) costs a read of every entry: a watcher reaches the
// end at every batch applied, and Dir may hold thousands of files.
func (r *Reader) stillActive() bool {
	if r.cur.name != r.file {
		return false
	}
	open, err := r.f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Stat(filepath.Join(r.dir, r.file))
	return err == nil && os.SameFile(open, now)
}

// resume opens lf, the file that replaced the open one, at the Reader's
// offset, if it holds that many bytes yet (again); otherwise the Reader
// keeps its file, and finds lf again at its next call.
func (r *Reader) resume(lf logFile) (again bool, err error) {
	f, lf, err := openLogFile(r.dir, r.file, lf)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // replaced again, or rotated and compressed: listed again next time
	}
	if err != nil {
		return false, err
	}
	size, err := f.Size()
	if err == nil && size < r.off && lf.name != r.file {
		// Rotated shorter than the lines read from the file it replaced:
		// it will not grow.
		err = fmt.Errorf("logx: %s: %w: it replaced the file this Reader had open, and holds %d bytes where that one held %d", lf.name, ErrCorrupt, size, r.off)
	}
	if err != nil || size < r.off {
		f.Close()
		return false, err
	}
	r.closeFile()
	r.cur, r.f = lf, f
	return true, r.seek(r.off)
}

// replaced reports whether lf, listed with the open file's first sequence
// number, is another file: the open one was replaced (or compressed). A
// file rotated while open is the same file under another name.
func (r *Reader) replaced(lf logFile) bool {
	open, err := r.f.Stat()
	if err != nil {
		return false
	}
	info := lf.active
	if info == nil {
		path := filepath.Join(r.dir, lf.name)
		if info, err = os.Stat(path); errors.Is(err, os.ErrNotExist) {
			// Compressed since: another file, whether it replaced this one
			// or is this one compressed (the same bytes; resume then moves
			// to it at the end, once).
			info, err = os.Stat(path + store.CompressedExt)
		}
		if err != nil {
			return false
		}
	}
	return !os.SameFile(open, info)
}

// listings counts the Reader's listings of Dir (nextFile), for tests.
var listings atomic.Int64

// nextFile returns the file after the current one, if there is one yet,
// or the one that replaced it (the same first sequence number). A file
// rotated while open stays open under its new name: it is neither.
func (r *Reader) nextFile() (logFile, bool, error) {
	listings.Add(1)
	files, err := listLogFiles(r.dir, r.file)
	if err != nil {
		return logFile{}, false, err
	}
	for _, lf := range files {
		if lf.first > r.cur.first || lf.first == r.cur.first && r.replaced(lf) {
			return lf, true, nil
		}
	}
	return logFile{}, false, nil
}

// OpenReader opens this node's log at its oldest line; see Reader.
func (lx *Stream) OpenReader() (*Reader, error) { return OpenReader(lx.cfg.Dir, lx.logFile()) }

// Lines returns an iterator over the lines from the Reader's position to
// the end of what is written (io.EOF ends it quietly); another error is
// yielded once, last.
//
//	for l, err := range r.Lines() { ... }
func (r *Reader) Lines() iter.Seq2[Line, error] {
	return func(yield func(Line, error) bool) {
		for {
			l, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(l, err) || err != nil {
				return
			}
		}
	}
}
