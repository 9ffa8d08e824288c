package logx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/logx-dev/logx/internal/store"
)

// SeekLast positions the Reader n lines before the end of what is written
// (n 0: at the end), or at the oldest line if the log holds fewer. It reads
// only the end of the newest file that has a complete line, where reading
// up to the end to find it would read every retained file.
func (r *Reader) SeekLast(n uint64) error {
	if r.closed {
		return ErrClosed
	}
	r.last = 0
	// A rotation between the listing and the reads (the active file
	// renamed, a new one empty or not) lists again: the newest line is
	// then in a file the first listing did not have. Three rotations in a
	// row, and the line found last is used: it is at most a file or two
	// before the end, so n lines or more are read, never fewer.
	for attempt := 0; ; attempt++ {
		seq, ok, stable, err := r.lastSeq()
		if err != nil && (attempt == 2 || !errors.Is(err, fs.ErrNotExist)) {
			return err
		}
		if err != nil || !stable && attempt < 2 {
			continue
		}
		if !ok && attempt < 2 {
			continue // nothing complete in the newest file: make sure of it
		}
		if !ok {
			return r.SeekSeq(0) // nothing written yet
		}
		from := uint64(1)
		if seq >= n {
			from = seq - n + 1
		}
		if err := r.SeekSeq(from); err != nil && !errors.Is(err, ErrRetained) {
			return err
		}
		return nil
	}
}

// lastSeq returns the sequence number of the log's last complete line:
// that of the newest file that has one (ok false if none has), and whether
// a listing after the reads still ends with the same file (stable false:
// a rotation meanwhile, and seq may be a file or two short of the end).
func (r *Reader) lastSeq() (seq uint64, ok, stable bool, err error) {
	files, err := listLogFiles(r.dir, r.file)
	if err != nil {
		return 0, false, false, err
	}
	if afterLastListing != nil {
		afterLastListing()
	}
	for i := len(files) - 1; i >= 0 && !ok; i-- {
		seq, ok, err = lastSeq(r.dir, r.file, files[i], 64)
		if err != nil {
			return 0, false, false, fmt.Errorf("logx: %s: %w", files[i].name, err)
		}
	}
	// If the active file rotated meanwhile (seq was then read from the
	// file it became, or the newer files had no complete line), a newer
	// file may hold newer lines: the listing's newest file has changed,
	// its name at least.
	again, err := listLogFiles(r.dir, r.file)
	if err != nil {
		return 0, false, false, err
	}
	stable = len(again) == len(files) && (len(files) == 0 || again[len(again)-1].same(files[len(files)-1]))
	return seq, ok, stable, nil
}

// lastSeq returns the sequence number of the last complete line of lf,
// reading back from its end; ok is false if it has none. A last line that
// does not parse (damage) is an error, unless back allows that many lines
// before it to be tried: then the newest that parses (a few lines short
// of the end, which SeekLast may be), or ok false if none does.
func lastSeq(dir, file string, lf logFile, back int) (seq uint64, ok bool, err error) {
	seg, _, err := openLogFile(dir, file, lf)
	if err != nil {
		return 0, false, err
	}
	defer seg.Close()
	size, err := seg.Size()
	if err != nil {
		return 0, false, err
	}
	end, err := lastNewline(seg, size) // ends the last complete line
	if err != nil || end < 0 {
		return 0, false, err
	}
	tolerant := back > 0
	for ; ; back-- {
		start, err := lastNewline(seg, end) // ends the line before, if any
		if err != nil {
			if tolerant && errors.Is(err, errLongLine) {
				return 0, false, nil // damage: the file before, then
			}
			return 0, false, err
		}
		head := make([]byte, min(end-start-1, 4<<10)) // parseHead reads the head only
		if _, err := seg.ReadAt(head, start+1); err != nil && !errors.Is(err, io.EOF) {
			return 0, false, err
		}
		seq, _, _, err = parseHead(head)
		switch {
		case err == nil:
			return seq, true, nil
		case back == 0 || start < 0:
			if tolerant {
				return 0, false, nil // no line here says: the file before, then
			}
			return 0, false, err
		}
		end = start
	}
}

// lastNewline returns the offset of the last newline before offset before
// in seg, or -1 if there is none; it reads back in chunks, and gives up
// with errLongLine past maxLineBytes.
func lastNewline(seg *store.Segment, before int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for off := before; off > 0; {
		if before-off > maxLineBytes {
			return 0, errLongLine
		}
		step := min(int64(len(buf)), off)
		off -= step
		b := buf[:step]
		if _, err := seg.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return off + int64(i), nil
		}
	}
	return -1, nil
}

// afterLastListing, if set (by tests), runs between lastSeq's listing and
// its reads.
var afterLastListing func()
