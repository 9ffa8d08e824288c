package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/logx-dev/logx/internal/pagecache"
)

// Compressed rotated files. A rotated file may be kept as <name>.zst
// instead of <name> (Compress, below): zstd in the seekable format of the
// zstd project (contrib/seekable_format), so any zstd tool decodes it and a
// reader can still reach any offset without decoding what comes before.
//
//   - The plain bytes are cut into frames of about FrameSize bytes, each
//     ending at the end of a line (a longer line makes a longer frame, up
//     to maxFrame), and each frame is compressed on its own, with the
//     encoder settings fixed below and one goroutine: the same plain file
//     gives the same compressed bytes on every node running the same
//     version of logx.
//   - A skippable frame at the end lists every frame's compressed and
//     plain size, then the footer: the number of frames, a descriptor byte
//     (0: no per-frame checksums; each zstd frame has its own) and the
//     seekable magic number.
//
// A log file's bytes always mean its plain bytes: sizes, checksums,
// offsets in the fetch protocol and in the checkpoint are those of the
// plain file, whichever form a node keeps.

// CompressedExt is appended to a rotated file's name when it is kept
// compressed.
const CompressedExt = ".zst"

// FrameSize is the plain size a compressed file's frames aim at. On log
// lines, frames of 256 KiB compressed better than frames of 1, 4 or 32 MiB
// with these settings (BenchmarkEncoderChoices), and reading one line
// decodes little.
const FrameSize = 256 << 10

// maxFrame bounds a frame's plain size: a file holding a longer line is
// not compressed, and a compressed file claiming a longer frame is refused
// as corrupt before anything is allocated for it.
const maxFrame = 64 << 20

const (
	zstdMagic      = 0xFD2FB528
	skippableMagic = 0x184D2A5E // the first of the 16 skippable frame magics
	seekableMagic  = 0x8F92EAB1
	footerSize     = 9 // frames (4), descriptor (1), magic (4)
)

// encoder is the one every node uses: these settings are part of the
// compressed files' format, and changing them changes the bytes (see
// docs/guarantees.md, "Compressed files"). SpeedFastest (zstd's level 1)
// compressed log lines smaller than SpeedDefault, and as fast
// (BenchmarkEncoderChoices).
var encoder = sync.OnceValue(func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true),
		zstd.WithSingleSegment(true),
		zstd.WithZeroFrames(false),
	)
	if err != nil {
		panic(err) // fixed options: cannot fail
	}
	return e
})

var decoder = sync.OnceValue(func() *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxFrame))
	if err != nil {
		panic(err)
	}
	return d
})

// ErrLineTooLong is returned by Compress for a file holding a line longer
// than a frame may be; the file stays plain.
var ErrLineTooLong = errors.New("logx: a line is too long to compress")

// Compress writes the compressed form of the plain bytes read from src to
// dst and returns their checksum (with sum) and size. It calls stop
// between frames and gives up with its error.
func Compress(dst io.Writer, src io.Reader, sum Hash, stop func() error) ([]byte, int64, error) {
	return compressFrames(dst, src, sum, stop, FrameSize)
}

// compressFrames is Compress with frames of about frameSize bytes.
func compressFrames(dst io.Writer, src io.Reader, sum Hash, stop func() error, frameSize int) (_ []byte, size int64, err error) {
	h := sum.New()
	var table []byte
	var out []byte
	buf := make([]byte, 0, 2*frameSize)
	eof := false
	read := func() error { // one Read into buf's spare room, grown if none
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			eof, err = true, nil
		}
		return err
	}
	for {
		for !eof && len(buf) < frameSize { // at least a frame's bytes, or to the end
			if err := read(); err != nil {
				return nil, size, err
			}
		}
		if len(buf) == 0 {
			break
		}
		cut := frameEnd(buf, eof, frameSize)
		for cut < 0 { // no newline yet: read on until one comes
			if len(buf) >= maxFrame {
				return nil, size, ErrLineTooLong
			}
			if err := read(); err != nil {
				return nil, size, err
			}
			cut = frameEnd(buf, eof, frameSize)
		}
		if cut > maxFrame {
			return nil, size, ErrLineTooLong
		}
		if err := stop(); err != nil {
			return nil, size, err
		}
		frame := buf[:cut]
		h.Write(frame)
		size += int64(cut)
		out = encoder().EncodeAll(frame, out[:0])
		if _, err := dst.Write(out); err != nil {
			return nil, size, err
		}
		table = binary.LittleEndian.AppendUint32(table, uint32(len(out)))
		table = binary.LittleEndian.AppendUint32(table, uint32(cut))
		buf = buf[:copy(buf, buf[cut:])]
	}
	if size == 0 {
		return nil, 0, errors.New("logx: an empty file is not compressed")
	}
	n := len(table) / 8
	var tail []byte
	tail = binary.LittleEndian.AppendUint32(tail, skippableMagic)
	tail = binary.LittleEndian.AppendUint32(tail, uint32(len(table)+footerSize))
	tail = append(tail, table...)
	tail = binary.LittleEndian.AppendUint32(tail, uint32(n))
	tail = append(tail, 0)
	tail = binary.LittleEndian.AppendUint32(tail, seekableMagic)
	if _, err := dst.Write(tail); err != nil {
		return nil, size, err
	}
	return h.Sum(nil), size, nil
}

// frameEnd is where the frame starting buf ends: after the last newline
// within frameSize bytes, else after the first newline; at the end of the
// input, all of buf. -1: a newline is needed and there is none yet.
func frameEnd(buf []byte, eof bool, frameSize int) int {
	if eof && len(buf) <= frameSize {
		return len(buf)
	}
	if i := bytes.LastIndexByte(buf[:min(len(buf), frameSize)], '\n'); i >= 0 {
		return i + 1
	}
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		return i + 1
	}
	if eof {
		return len(buf)
	}
	return -1
}

// Segment is one log file's plain bytes, read at offsets: the file itself,
// or its compressed form, decoded a frame at a time. A Segment is not safe
// for concurrent use.
type Segment struct {
	f *os.File
	z *zfile // nil: plain
}

// OpenSegment opens the log file at path, or, if there is none, its
// compressed form at path+CompressedExt. Which form it is comes from its
// first bytes, not its name: a line of a log file never starts with zstd's
// magic number.
func OpenSegment(path string) (*Segment, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.Open(path + CompressedExt)
		if errors.Is(err, os.ErrNotExist) {
			err = &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist} // name the plain file
		}
	}
	if err != nil {
		return nil, err
	}
	s, err := NewSegment(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// NewSegment reads the open file f as a log file, compressed or not; the
// Segment owns f.
func NewSegment(f *os.File) (*Segment, error) {
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || binary.LittleEndian.Uint32(magic[:]) != zstdMagic {
		return &Segment{f: f}, nil // plain (perhaps empty, or still being written)
	}
	z, err := openZ(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, f.Name(), err)
	}
	return &Segment{f: f, z: z}, nil
}

// Compressed reports whether the file is kept compressed.
func (s *Segment) Compressed() bool { return s.z != nil }

// Size is the file's plain size; a plain file's as it is now (the active
// file grows).
func (s *Segment) Size() (int64, error) {
	if s.z != nil {
		return s.z.plain[len(s.z.plain)-1], nil
	}
	fi, err := s.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// ReadAt reads plain bytes at off, like io.ReaderAt.
func (s *Segment) ReadAt(p []byte, off int64) (int, error) {
	if s.z != nil {
		return s.z.ReadAt(p, off)
	}
	return s.f.ReadAt(p, off)
}

// From returns a reader of the plain bytes from off to the end, wherever
// the end is when it gets there (the active file grows).
func (s *Segment) From(off int64) io.Reader {
	return io.NewSectionReader(s, off, math.MaxInt64-off)
}

// Range returns a reader of the n plain bytes at off. Of a plain file it
// is the *os.File itself under an io.LimitedReader, which lets a network
// copy use sendfile; it moves the file's offset.
func (s *Segment) Range(off, n int64) (io.Reader, error) {
	if s.z != nil {
		return io.NewSectionReader(s.z, off, n), nil
	}
	if _, err := s.f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return &io.LimitedReader{R: s.f, N: n}, nil
}

// Close closes the file.
func (s *Segment) Close() error { return s.f.Close() }

// Stat describes the open file (os.SameFile tells a renamed one).
func (s *Segment) Stat() (os.FileInfo, error) { return s.f.Stat() }

// DropPages drops the file's pages from the page cache
// (internal/pagecache): for a file read once to check it, which nobody
// is expected to read again soon.
func (s *Segment) DropPages() { pagecache.Drop(s.f, 0) }

// Sum returns the checksum (with sum) and size of the file's plain bytes,
// calling stop every MiB or so and giving up with its error.
func (s *Segment) Sum(sum Hash, stop func() error) ([]byte, int64, error) {
	h := sum.New()
	n, err := s.copyTo(h, stop)
	if err != nil {
		return nil, n, err
	}
	return h.Sum(nil), n, nil
}

func (s *Segment) copyTo(h hash.Hash, stop func() error) (int64, error) {
	size, err := s.Size()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	var off int64
	for off < size {
		if err := stop(); err != nil {
			return off, err
		}
		k, err := s.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		h.Write(buf[:k])
		off += int64(k)
		if err == io.EOF && s.z == nil {
			return off, nil // a plain file cut meanwhile
		}
		if err != nil && err != io.EOF {
			return off, err
		}
	}
	return off, nil
}

// CompressFile replaces the rotated file dir/fs.Name by its compressed
// form, dir/fs.Name+CompressedExt, and returns the bytes it saved. The
// plain bytes must match fs's size and checksum, and the compressed file
// is decoded and checked again before it takes the plain one's place; a
// mismatch is ErrCorrupt and leaves the plain file as it was. Writing
// goes to a temporary file, fsynced, then renamed, and the plain file is
// removed after, so a crash leaves one whole form or both. The rename and
// the removal happen holding lock, and only if the plain file is still
// there: retention and catch-up rename files holding it. A file already
// gone (retired, or compressed) is not an error: saved is 0.
func CompressFile(dir string, fs File, lock sync.Locker, stop func() error) (saved int64, err error) {
	plain := filepath.Join(dir, fs.Name)
	src, err := os.Open(plain)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil {
		return 0, err
	} else if fi.Size() != fs.Size {
		return 0, fmt.Errorf("%w: %s has %d bytes, the checkpoint says %d; left as it is", ErrCorrupt, fs.Name, fi.Size(), fs.Size)
	}
	tmp := filepath.Join(dir, CompressTemp(fs.Name))
	defer os.Remove(tmp) // renamed into place on success
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	w := bufio.NewWriterSize(out, 1<<20)
	kind, want := fs.Sum()
	sum, size, err := Compress(w, src, kind, stop)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return 0, err
	}
	if !fs.Matches(sum, size) {
		return 0, fmt.Errorf("%w: %s has %d bytes with %s %x, the checkpoint says %d with %s; left as it is",
			ErrCorrupt, fs.Name, size, kind, sum, fs.Size, want)
	}
	if err := out.Sync(); err != nil {
		return 0, err
	}
	// Read back what was written, as a reader will.
	seg, err := NewSegment(out)
	if err != nil {
		return 0, err
	}
	back, n, err := seg.Sum(kind, stop)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(back, sum) || n != size {
		return 0, fmt.Errorf("%w: %s: its compressed form does not decode to the same bytes", ErrCorrupt, fs.Name)
	}
	pagecache.Drop(out, 0) // synced above; a rotated file is seldom read
	fi, err := out.Stat()
	if err != nil {
		return 0, err
	}
	lock.Lock()
	if _, err = os.Stat(plain); err == nil {
		if err = os.Rename(tmp, plain+CompressedExt); err == nil {
			// The compressed file is in place before the plain one goes,
			// on disk too.
			if err = SyncDir(dir); err == nil {
				err = os.Remove(plain)
			}
		}
	} else if errors.Is(err, os.ErrNotExist) {
		lock.Unlock()
		return 0, nil // taken out of the log meanwhile
	}
	lock.Unlock()
	if err != nil {
		return 0, err
	}
	return size - fi.Size(), SyncDir(dir)
}

// CompressTemp is the name CompressFile writes name's compressed form
// under until it is complete.
func CompressTemp(name string) string { return ".compress-" + name }

// RemoveTemps removes the files in dir whose names start with one of
// prefixes: the temporary files of work a crash or a Close cut short
// (compressions: CompressTemp(""); repairs). Nothing may be doing that
// work in dir meanwhile.
func RemoveTemps(dir string, prefixes ...string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(e.Name(), p) }) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// zfile reads a compressed file: where each frame starts, compressed and
// plain, and the last frame decoded.
type zfile struct {
	f     *os.File
	comp  []int64 // comp[i]: offset of frame i in the file; comp[n]: the seek table's
	plain []int64 // plain[i]: plain offset of frame i; plain[n]: the plain size
	cur   int     // the frame in data; -1: none
	data  []byte
	in    []byte
}

// openZ reads f's seek table and checks that it describes the file.
func openZ(f *os.File) (*zfile, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < 8+footerSize {
		return nil, errors.New("too short for a seek table")
	}
	var foot [footerSize]byte
	if _, err := f.ReadAt(foot[:], size-footerSize); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(foot[5:]) != seekableMagic {
		return nil, errors.New("no seek table at its end")
	}
	n := int64(binary.LittleEndian.Uint32(foot[:4]))
	entry := int64(8)
	switch foot[4] {
	case 0:
	case 0x80: // with a checksum per frame, which is not checked
		entry = 12
	default:
		return nil, fmt.Errorf("seek table descriptor %#x", foot[4])
	}
	tableAt := size - footerSize - n*entry - 8 // the skippable frame's header
	if n == 0 || tableAt < 0 {
		return nil, fmt.Errorf("seek table of %d frames in %d bytes", n, size)
	}
	table := make([]byte, 8+n*entry)
	if _, err := f.ReadAt(table, tableAt); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(table) != skippableMagic ||
		int64(binary.LittleEndian.Uint32(table[4:])) != n*entry+footerSize {
		return nil, errors.New("bad seek table frame")
	}
	z := &zfile{f: f, cur: -1, comp: make([]int64, n+1), plain: make([]int64, n+1)}
	for i := range n {
		e := table[8+i*entry:]
		c, p := int64(binary.LittleEndian.Uint32(e)), int64(binary.LittleEndian.Uint32(e[4:]))
		if c == 0 || p == 0 || p > maxFrame || c > maxFrame+maxFrame/64 {
			return nil, fmt.Errorf("frame %d: %d bytes holding %d", i, c, p)
		}
		z.comp[i+1], z.plain[i+1] = z.comp[i]+c, z.plain[i]+p
		if z.comp[i+1] > tableAt {
			return nil, fmt.Errorf("frame %d ends past the seek table", i)
		}
	}
	if z.comp[n] != tableAt {
		return nil, fmt.Errorf("frames end at %d, the seek table starts at %d", z.comp[n], tableAt)
	}
	return z, nil
}

// ReadAt implements io.ReaderAt over the plain bytes.
func (z *zfile) ReadAt(p []byte, off int64) (int, error) {
	size := z.plain[len(z.plain)-1]
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	var n int
	for n < len(p) {
		if off >= size {
			return n, io.EOF
		}
		i := sort.Search(len(z.plain)-1, func(i int) bool { return z.plain[i+1] > off })
		if err := z.load(i); err != nil {
			return n, err
		}
		k := copy(p[n:], z.data[off-z.plain[i]:])
		n += k
		off += int64(k)
	}
	return n, nil
}

// load decodes frame i into data.
func (z *zfile) load(i int) error {
	if z.cur == i {
		return nil
	}
	z.cur = -1
	c := z.comp[i+1] - z.comp[i]
	if int64(cap(z.in)) < c {
		z.in = make([]byte, c)
	}
	in := z.in[:c]
	if _, err := z.f.ReadAt(in, z.comp[i]); err != nil {
		return fmt.Errorf("%w: %s: frame %d: %v", ErrCorrupt, z.f.Name(), i, err)
	}
	want := z.plain[i+1] - z.plain[i]
	if int64(cap(z.data)) < want {
		z.data = make([]byte, 0, want)
	}
	out, err := decoder().DecodeAll(in, z.data[:0])
	if err == nil && int64(len(out)) != want {
		err = fmt.Errorf("%d bytes, the seek table says %d", len(out), want)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: frame %d: %v", ErrCorrupt, z.f.Name(), i, err)
	}
	z.data, z.cur = out, i
	return nil
}
