package logx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/logx-dev/logx/internal/store"
)

// Listing a node's files, and opening one as the listing saw it: the
// active file's first number is read from its first line, and a rotation
// between the listing and the opening must not make a reader take the new
// active file for the one it listed.

// logFile is one of a node's files: its plain name (open it with
// store.OpenSegment, which finds its compressed form) and first sequence
// number; for the active file, also the file the listing read (active),
// which a rotation renames.
type logFile struct {
	name   string
	first  uint64
	active os.FileInfo
}

// same reports whether a and b list the same file, by name and number.
func (a logFile) same(b logFile) bool { return a.name == b.name && a.first == b.first }

// listLogFiles returns the node's files in log order with their first
// sequence numbers (the active file's is read from its first line; an
// empty active file is left out). An active file whose first line does not
// parse (damage: it has no checksum until it rotates) starts one past the
// last line of the file before it (activeFirst); before, every reader
// failed until it rotated.
func listLogFiles(dir, file string) ([]logFile, error) {
	for try := 0; ; try++ {
		out, err := listLogFilesOnce(dir, file)
		if !errors.Is(err, errListAgain) {
			return out, err
		}
		if try == listTries-1 {
			return nil, fmt.Errorf("logx: %s: the files kept changing while they were listed (rotating, or a damaged first line being numbered): %w", file, err)
		}
	}
}

// listTries is how many listings listLogFiles makes while the files keep
// changing under them: a rotation during each of ten directory reads takes
// a rotation every few milliseconds with a large directory.
const listTries = 10

// afterReadDir, if set, is called by every listing after it read the
// directory, with what it read, and returns what the listing goes on with
// (a test's rotation at that point, or a file a read missed).
var afterReadDir atomic.Pointer[func(dir string, files []store.Stored) []store.Stored]

// errListAgain: the active file rotated while a listing read the
// directory, or a file changed while it numbered a damaged active file
// (activeFirst).
var errListAgain = errors.New("logx: list again")

func listLogFilesOnce(dir, file string) ([]logFile, error) {
	// The active file before the directory is read: if the one numbered
	// after is another, it rotated meanwhile, and the listing may have
	// seen it under neither name (the directory read before the rename,
	// the new file numbered after it; or a read in several calls).
	before, _ := os.Stat(filepath.Join(dir, file))
	files, err := store.StoredFiles(dir, file)
	if err != nil {
		return nil, err
	}
	if h := afterReadDir.Load(); h != nil {
		files = (*h)(dir, files)
	}
	var out []logFile
	sawActive := false
	for _, sf := range files {
		if sf.First > 0 {
			out = append(out, logFile{name: sf.Name, first: sf.First})
			continue
		}
		n := sf.Name
		first, info, err := firstSeq(filepath.Join(dir, n))
		if errors.Is(err, os.ErrNotExist) || info != nil && before != nil && !os.SameFile(before, info) {
			return nil, errListAgain
		}
		sawActive = true
		if errors.Is(err, io.EOF) {
			continue
		}
		if errors.Is(err, ErrBadLine) {
			first, err = activeFirst(dir, file, out, err)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, logFile{name: n, first: first, active: info})
	}
	if before != nil && !sawActive {
		return nil, errListAgain // renamed while the directory was read
	}
	return out, nil
}

// activeFirst is the first sequence number of the active file file whose
// first line does not parse (bad, the error): one past the last line of
// the file before it (the last of files), or, with none, the first line of
// the checkpoint's active file if that is still the active one (no file
// rotated or retired from it). Neither known, it is an ErrCorrupt naming
// the file (not an ErrBadLine: the listing fails, no line is passed over);
// a file that changed meanwhile is errListAgain.
func activeFirst(dir, file string, files []logFile, bad error) (uint64, error) {
	names := store.NewNames(file)
	var first uint64
	if len(files) > 0 {
		prev, ok, err := lastSeq(dir, file, files[len(files)-1], 0)
		if errors.Is(err, os.ErrNotExist) {
			return 0, errListAgain // retired since the listing
		}
		if err != nil || !ok {
			return 0, fmt.Errorf("%w: %s: its first line does not parse (%v), and the last line of %s does not say where it starts", ErrCorrupt, file, bad, files[len(files)-1].name)
		}
		first = prev + 1
	} else if st, ok, err := readState(dir); err == nil && ok {
		first = st.ActiveFirst
	}
	if first == 0 {
		return 0, fmt.Errorf("%w: %s: its first line does not parse (%v), and no file before it or checkpoint says where it starts", ErrCorrupt, file, bad)
	}
	if store.AnyCopy(dir, names.Segment(first)) {
		return 0, errListAgain // the active file rotated since the listing (or the checkpoint)
	}
	return first, nil
}

// firstSeq is the sequence number of the first line of the file at path
// (firstSeqOf), and the file it read.
func firstSeq(path string) (uint64, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	seq, err := firstSeqOf(f)
	return seq, info, err
}

// firstSeqOf is the sequence number of the first line r reads; io.EOF if
// it has no complete line, a badLineError if it does not parse.
func firstSeqOf(r io.Reader) (uint64, error) {
	line, err := bufio.NewReaderSize(r, 4096).ReadSlice('\n')
	if err != nil {
		if err == io.EOF || errors.Is(err, bufio.ErrBufferFull) && len(line) == 0 {
			return 0, io.EOF
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return 0, err
		}
	}
	seq, _, _, err := parseHead(line)
	if err != nil {
		return 0, badLineError{err}
	}
	return seq, nil
}

// openLogFile opens lf as listLogFiles listed it: a rotated file under
// its name, in either form; the active file only if it still starts at
// lf.first (the file the listing read). A rotation may have renamed it since the listing (and
// created a new active file, or not yet), and the rotated file it became
// is opened instead: reading the new active file under the old one's
// first number skipped the lines between them (Grep, Reader), and read
// them twice at the next rotation (Reader). A file gone since (retired) is
// ErrNotExist. The logFile returned names the file opened.
func openLogFile(dir, file string, lf logFile) (*store.Segment, logFile, error) {
	if lf.name != file {
		seg, err := store.OpenSegment(filepath.Join(dir, lf.name))
		return seg, lf, err
	}
	seg, err := store.OpenSegment(filepath.Join(dir, file))
	switch {
	case err == nil:
		if isListed(seg, lf) {
			return seg, lf, nil
		}
		seg.Close()
	case !errors.Is(err, os.ErrNotExist):
		return nil, lf, err
	}
	lf.name, lf.active = store.NewNames(file).Segment(lf.first), nil
	seg, err = store.OpenSegment(filepath.Join(dir, lf.name))
	return seg, lf, err
}

// isListed reports whether seg, open under the active file's name, is the
// file lf listed: the same file, or, for a logFile that does not say which
// file, one whose first line is lf's.
func isListed(seg *store.Segment, lf logFile) bool {
	if lf.active != nil {
		info, err := seg.Stat()
		return err == nil && os.SameFile(info, lf.active)
	}
	first, err := firstSeqOf(seg.From(0))
	return err == nil && first == lf.first
}
