package logx

import (
	"bufio"
	"errors"
	"sort"
	"time"
)

// SeekTime positions the Reader at the first line, in log order, whose
// time is t or later, behind the lines without a time just before it (a
// line without a time may be from then). A time older than the oldest
// line gives the oldest line; one past every line, the end.
//
// Lines are not in time order: each carries its caller's clock, and one
// node's clock hours behind puts lines hours early among the others'. So
// SeekTime does not search by bisection where it can avoid it: it takes
// the first file that can hold such a line from the time range the
// checkpoint (state.json) records for each rotated file (every file before
// it has only earlier lines), and reads that file from its start. A
// bisection probing a line of the late clock took it for a line before t
// and skipped, with it, up to a file of lines after t, however small the
// skew. When the checkpoint has no range for a file before the newest ones
// (a Dir an earlier version wrote, or read without its state.json), it
// falls back to the bisection, first by each file's first line, then
// within the file, which is exact only for lines in time order.
func (r *Reader) SeekTime(t time.Time) error {
	return r.listAgain(func() error { return r.seekTime(t) })
}

func (r *Reader) seekTime(t time.Time) error {
	files, err := r.files()
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return r.seekSeq(0)
	}
	if k, ok := firstFileReaching(r.dir, files, t); ok {
		for ; k < len(files); k++ {
			if err := r.open(files[k], 0); err != nil {
				return err
			}
			off, found, err := r.scanTime(t)
			if err != nil {
				return err
			}
			if found || k == len(files)-1 {
				return r.seek(off)
			}
		}
	}
	// The last file whose first line is before t.
	var ferr error
	k := sort.Search(len(files), func(i int) bool {
		ft, err := firstTime(r.dir, r.file, files[i])
		if err != nil {
			ferr = err
		}
		return !ft.Before(t)
	}) - 1
	if ferr != nil {
		return ferr
	}
	k = max(k, 0)
	if err := r.open(files[k], 0); err != nil {
		return err
	}
	off, err := r.search(func(_ uint64, lt time.Time) bool { return !lt.Before(t) }, true)
	if err != nil {
		return err
	}
	return r.seek(off)
}

// firstFileReaching is the index in files of the first file that can hold
// a line whose time is t or later, by the time ranges the checkpoint
// records: every rotated file before it has a range wholly before t. ok is
// false when a file before it has no range although a later file has one
// (files an earlier version wrote, before ranges were recorded), or when
// the checkpoint cannot be read. The files after the last one the
// checkpoint lists (rotated since it was written, and the active file)
// have none and are read.
func firstFileReaching(dir string, files []logFile, t time.Time) (int, bool) {
	ranges, ok := checkpointRanges(dir)
	if !ok {
		return 0, false
	}
	last := -1 // the last file the checkpoint lists
	for i, lf := range files {
		if _, ok := ranges[lf.name]; ok {
			last = i
		}
	}
	for i, lf := range files {
		fs, ok := ranges[lf.name]
		switch {
		case !ok && i < last, ok && fs.MinTime == 0 && fs.MaxTime == 0:
			return 0, false // no range: the bisection
		case !ok || !time.Unix(0, fs.MaxTime).Before(t):
			return i, true
		}
	}
	return len(files) - 1, true
}

// scanTime reads the current file from its start to the first line whose
// time is t or later, and returns the offset after the last line with an
// earlier time before it (so the lines without a time just before it come
// first), and whether there was such a line; at none, the offset after the
// file's last line with a time (the lines without one after it may be from
// then). Lines that do not parse are passed over.
func (r *Reader) scanTime(t time.Time) (off int64, found bool, err error) {
	if err := r.seek(0); err != nil {
		return 0, false, err
	}
	pos := int64(0)
	for {
		line, err := r.readLine()
		if err != nil {
			return off, false, notEOF(err)
		}
		next := pos + int64(len(line)) + 1
		if _, lt, _, perr := parseHead(line); perr == nil && !lt.IsZero() {
			if !lt.Before(t) {
				return off, true, nil
			}
			off = next
		}
		pos = next
	}
}

// firstTime is the time of the first line of lf that has one.
func firstTime(dir, file string, lf logFile) (time.Time, error) {
	f, _, err := openLogFile(dir, file, lf)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f.From(0), 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		long := errors.Is(err, bufio.ErrBufferFull) // a long line: its head is in line
		if err != nil && !long {
			return time.Time{}, nil // no timed line: sorts first
		}
		if _, t, _, err := parseHead(line); err == nil && !t.IsZero() {
			return t, nil
		}
		for n := len(line); long; n += len(line) {
			if n > maxLineBytes {
				return time.Time{}, nil // damage: sorts first, and reading it reports it
			}
			line, err = br.ReadSlice('\n')
			long = errors.Is(err, bufio.ErrBufferFull)
			if err != nil && !long {
				return time.Time{}, nil
			}
		}
	}
}
