package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// logLines returns about size bytes of log-like lines from a seeded
// generator, one of them long (longer than a frame) when long is set.
func logLines(seed uint64, size int, long bool) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var b []byte
	levels := []string{"INFO", "WARN", "ERROR", "DEBUG"}
	for seq := 1; len(b) < size; seq++ {
		b = fmt.Appendf(b, "seq=%d time=2026-12-02T19:%02d:%02d.%06dZ level=%s node=n%d msg=\"request served\" user=%d path=/api/v1/items/%d took=%dms\n",
			seq, r.IntN(60), r.IntN(60), r.IntN(1e6), levels[r.IntN(4)], r.IntN(3)+1, r.IntN(1e5), r.IntN(1e4), r.IntN(900))
		if long && seq == 100 {
			b = fmt.Appendf(b, "seq=%d level=INFO msg=\"a long one\" blob=%s\n", seq, bytes.Repeat([]byte("xy"), FrameSize))
		}
	}
	return b
}

func compress(t testing.TB, plain []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	sum, n, err := Compress(&out, bytes.NewReader(plain), SHA256, func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(plain); !bytes.Equal(sum, want[:]) || n != int64(len(plain)) {
		t.Fatalf("Compress says %d bytes %x, read %d bytes %x", n, sum, len(plain), want)
	}
	return out.Bytes()
}

func writeTemp(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSegmentReadsAnyOffset: a compressed file reads back, at any offset
// and length, the bytes it was made from; its frames end at line ends;
// the same input gives the same bytes; zstd's own tool decodes it.
func TestSegmentReadsAnyOffset(t *testing.T) {
	plain := logLines(1, 5*FrameSize+12345, true)
	z := compress(t, plain)
	if !bytes.Equal(z, compress(t, slices.Clone(plain))) {
		t.Fatal("the same input compressed to different bytes")
	}
	if len(z) >= len(plain)/3 {
		t.Fatalf("%d bytes compressed to %d", len(plain), len(z))
	}
	dir := t.TempDir()
	path := writeTemp(t, dir, "app-00000000000000000001.log.zst", z)
	// Opened by its plain name, which does not exist.
	seg, err := OpenSegment(filepath.Join(dir, "app-00000000000000000001.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	if !seg.Compressed() {
		t.Fatal("not seen as compressed")
	}
	if size, err := seg.Size(); err != nil || size != int64(len(plain)) {
		t.Fatalf("size %d, %v; want %d", size, err, len(plain))
	}
	for i := 1; i < len(seg.z.plain)-1; i++ {
		if plain[seg.z.plain[i]-1] != '\n' {
			t.Fatalf("frame %d does not end at a line end", i-1)
		}
	}
	if len(seg.z.plain) < 6 {
		t.Fatalf("%d frames", len(seg.z.plain)-1)
	}
	r := rand.New(rand.NewPCG(2, 2))
	for range 300 {
		off := r.Int64N(int64(len(plain)) + 10)
		buf := make([]byte, r.IntN(3*FrameSize))
		n, err := seg.ReadAt(buf, off)
		want := plain[min(off, int64(len(plain))):min(off+int64(len(buf)), int64(len(plain)))]
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("ReadAt(%d bytes, %d): wrong bytes", len(buf), off)
		}
		if (n < len(buf)) != (err == io.EOF) {
			t.Fatalf("ReadAt(%d bytes, %d): %d, %v", len(buf), off, n, err)
		}
	}
	rd, err := seg.Range(100, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(rd); !bytes.Equal(b, plain[100:5100]) {
		t.Fatal("Range gave other bytes")
	}
	sum, n, err := seg.Sum(SHA256, func() error { return nil })
	if want := sha256.Sum256(plain); err != nil || !bytes.Equal(sum, want[:]) || n != int64(len(plain)) {
		t.Fatalf("SHA256: %x %d %v", sum, n, err)
	}
	if zstd, err := exec.LookPath("zstd"); err == nil {
		out, err := exec.Command(zstd, "-dc", path).Output()
		if err != nil || !bytes.Equal(out, plain) {
			t.Fatalf("zstd -dc: %d bytes, %v", len(out), err)
		}
	} else {
		t.Log("no zstd tool here: not decoded by it")
	}
}

// TestSegmentPlain: a plain file opens as itself, growing as it is
// written.
func TestSegmentPlain(t *testing.T) {
	dir := t.TempDir()
	path := writeTemp(t, dir, "app.log", []byte("seq=1 level=INFO msg=a\n"))
	seg, err := OpenSegment(path)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("seq=2 level=INFO msg=b\n")
	f.Close()
	if size, _ := seg.Size(); seg.Compressed() || size != 46 {
		t.Fatalf("compressed %v, size %d", seg.Compressed(), size)
	}
	if _, err := OpenSegment(filepath.Join(dir, "none.log")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// TestSegmentCorrupt: a damaged compressed file is ErrCorrupt, whether the
// damage is in its seek table (at open) or in a frame (at read).
func TestSegmentCorrupt(t *testing.T) {
	plain := logLines(3, 3*FrameSize, false)
	z := compress(t, plain)
	dir := t.TempDir()
	ts := tableStart(z)
	for _, c := range []struct {
		name string
		at   int // the byte to flip
		open bool
	}{{"footer", len(z) - 1, true}, {"frame count", len(z) - 9, true}, {"table size", ts + 4, true},
		{"a frame size", ts + 8, true}, {"first frame", 100, false}, {"last frame", ts - 40, false}} {
		b := slices.Clone(z)
		at := c.at
		b[at] ^= 0x55
		seg, err := OpenSegment(writeTemp(t, dir, c.name, b))
		if c.open {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: open: %v", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: open: %v", c.name, err)
		}
		_, _, err = seg.Sum(SHA256, func() error { return nil })
		seg.Close()
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: read: %v", c.name, err)
		}
	}
}

// tableStart is the offset of z's seek table frame.
func tableStart(z []byte) int {
	n := int(binary.LittleEndian.Uint32(z[len(z)-9:]))
	return len(z) - footerSize - 8*n - 8
}

// rotatedFile writes a rotated log file of three frames and more into a
// new directory, and returns the directory, its bytes and its File, whose
// checksum is computed with h.
func rotatedFile(t *testing.T, h Hash) (string, []byte, File) {
	dir := t.TempDir()
	plain := logLines(4, 2*FrameSize+777, false)
	fs := File{Name: "app-00000000000000000001.log", First: 1, Size: int64(len(plain))}
	writeTemp(t, dir, fs.Name, plain)
	sum := h.New()
	sum.Write(plain)
	fs.SetSum(h, sum.Sum(nil))
	return dir, plain, fs
}

// TestCompressFile: the plain file makes way for a compressed one that
// reads the same; a file that does not match its checksum, or has left
// the log meanwhile, is left alone.
func TestCompressFile(t *testing.T) {
	dir, plain, fs := rotatedFile(t, SHA256)
	name := fs.Name
	var mu sync.Mutex

	bad := fs
	bad.SHA256 = hex.EncodeToString(make([]byte, 32))
	if _, err := CompressFile(dir, bad, &mu, func() error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a mismatch: %v", err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{name}) {
		t.Fatalf("after a mismatch: %v", got)
	}
	// A file cut short, or to nothing: refused before it is read.
	for _, size := range []int{len(plain) - 10, 0} {
		short := t.TempDir()
		writeTemp(t, short, name, plain[:size])
		if _, err := CompressFile(short, fs, &mu, func() error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%d of %d bytes: %v", size, len(plain), err)
		}
		if got := listDir(t, short); !slices.Equal(got, []string{name}) {
			t.Fatalf("after a short file: %v", got)
		}
	}
	stop := errors.New("closing")
	if _, err := CompressFile(dir, fs, &mu, func() error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("stopped: %v", err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{name}) {
		t.Fatalf("after a stop: %v", got)
	}

	saved, err := CompressFile(dir, fs, &mu, func() error { return nil })
	if err != nil || saved <= int64(len(plain))/2 {
		t.Fatalf("saved %d, %v", saved, err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{name + CompressedExt}) {
		t.Fatalf("after compressing: %v", got)
	}
	sums(t, dir, []File{fs})
	if saved, err := CompressFile(dir, fs, &mu, func() error { return nil }); saved != 0 || err != nil {
		t.Fatalf("again: %d, %v", saved, err)
	}

	// Retired while it was being compressed: the lock is taken after the
	// compressed form is written, and retention got there first.
	dir2 := t.TempDir()
	writeTemp(t, dir2, name, plain)
	lk := &retireOnLock{dir: dir2, name: name}
	if saved, err := CompressFile(dir2, fs, lk, func() error { return nil }); saved != 0 || err != nil {
		t.Fatalf("retired meanwhile: %d, %v", saved, err)
	}
	if got := listDir(t, dir2); !slices.Equal(got, []string{RetiredName(name)}) {
		t.Fatalf("retired meanwhile: %v", got)
	}
}

// retireOnLock retires a file the first time it is locked, as retention
// would just before.
type retireOnLock struct {
	sync.Mutex
	dir, name string
	done      bool
}

func (l *retireOnLock) Lock() {
	l.Mutex.Lock()
	if !l.done {
		l.done = true
		_ = retire(l.dir, l.name)
	}
}

// TestCompressedLifecycle: the Writer's recovery, retention and OpenFile
// handle rotated files kept compressed.
func TestCompressedLifecycle(t *testing.T) {
	dir := t.TempDir()
	rot := Rotation{MaxSize: 64 << 10}
	w := open(t, dir, rot, State{ActiveFirst: 1}, false, Hooks{})
	next := write(t, w, 1, 2000, 100, 0)
	cp := w.State(next)
	if len(cp.Rotated) < 3 {
		t.Fatalf("%d rotated files", len(cp.Rotated))
	}
	var mu sync.Mutex
	for _, fs := range cp.Rotated {
		if _, err := CompressFile(dir, fs, &mu, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := StoredFiles(dir, "app.log")
	if err != nil || len(stored) != len(cp.Rotated)+1 {
		t.Fatalf("%v, %v", stored, err)
	}
	for i, fs := range cp.Rotated {
		if stored[i].Name != fs.Name || stored[i].Stored != fs.Name+CompressedExt || stored[i].First != fs.First {
			t.Fatalf("listed %+v for %s", stored[i], fs.Name)
		}
	}
	// Both forms (a crash between the rename and the removal): the plain
	// one is listed.
	writeTemp(t, dir, cp.Rotated[1].Name, []byte("placeholder"))
	if names, _ := LogFiles(dir, "app.log"); names[1] != cp.Rotated[1].Name || len(names) != len(cp.Rotated)+1 {
		t.Fatalf("with both forms: %v", names)
	}
	os.Remove(filepath.Join(dir, cp.Rotated[1].Name))

	seg, err := w.OpenFile(cp.Rotated[0].First)
	if err != nil || !seg.Compressed() {
		t.Fatalf("OpenFile: %v", err)
	}
	seg.Close()
	gone, err := w.Retire(RetireBy{MaxFiles: 1}, &mu)
	if err != nil || len(gone) != len(cp.Rotated)-1 {
		t.Fatalf("retired %v, %v", gone, err)
	}
	if _, err := os.Stat(filepath.Join(dir, RetiredName(gone[0].Name+CompressedExt))); err != nil {
		t.Fatal(err)
	}
	if seg, err = w.OpenFile(gone[0].First); err != nil || !seg.Compressed() {
		t.Fatalf("OpenFile of a retired file: %v", err)
	}
	seg.Close()
	_ = w.Close()

	// Recovery to the checkpoint from before the retirement brings the
	// compressed files back.
	w2 := open(t, dir, rot, cp, true, Hooks{})
	if got := w2.State(next).Rotated; !slices.Equal(got, cp.Rotated) {
		t.Fatalf("after recovery %v", got)
	}
	sums(t, dir, w2.Files())
	gone, err = w2.Retire(RetireBy{MaxFiles: 1}, &mu)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gone {
		if err := RemoveRetired(dir, g.Name); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{cp.Rotated[len(cp.Rotated)-1].Name + CompressedExt, "app.log"}
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
	_ = w2.Close()

	// A checkpoint whose active file is here only compressed cannot be:
	// refused rather than guessed at.
	last := cp.Rotated[len(cp.Rotated)-1]
	bad := State{ActiveFirst: last.First, ActiveSize: last.Size}
	if _, err := Open(dir, "app.log", rot, bad, true, "state.json", Hooks{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a compressed active file: %v", err)
	}
}

// FuzzSegment: any bytes, read as a log file, give bytes or an error;
// never a panic, a hang, or an allocation beyond the file's bounds.
func FuzzSegment(f *testing.F) {
	var small bytes.Buffer // several frames, in few bytes
	if _, _, err := compressFrames(&small, bytes.NewReader(logLines(5, 3000, false)), SHA256, func() error { return nil }, 1000); err != nil {
		f.Fatal(err)
	}
	f.Add(small.Bytes())
	f.Add(compress(f, []byte("seq=1 level=INFO msg=a\n")))
	f.Add([]byte("seq=1 level=INFO msg=a\n"))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "seg")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		seg, err := OpenSegment(path)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("not ErrCorrupt: %v", err)
			}
			return
		}
		defer seg.Close()
		size, err := seg.Size()
		if err != nil {
			t.Fatal(err)
		}
		if !seg.Compressed() && size != int64(len(b)) {
			t.Fatalf("plain size %d of %d bytes", size, len(b))
		}
		_, n, err := seg.Sum(SHA256, func() error { return nil })
		if err == nil && n != size {
			t.Fatalf("read %d of %d bytes", n, size)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("not ErrCorrupt: %v", err)
		}
	})
}

// TestCompressFullDisk: on a real full disk (a small tmpfs; needs root),
// compressing fails with ENOSPC, leaves the plain file whole and no
// temporary file; once there is room it succeeds.
func TestCompressFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", dir).Run(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): needs root", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	plain := logLines(6, 200<<10, false)
	name := "app-00000000000000000001.log"
	writeTemp(t, dir, name, plain)
	sum := sha256.Sum256(plain)
	fs := File{Name: name, First: 1, Size: int64(len(plain)), SHA256: hex.EncodeToString(sum[:])}
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := filler.Write(make([]byte, 4096)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	filler.Close()
	var mu sync.Mutex
	if _, err := CompressFile(dir, fs, &mu, func() error { return nil }); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("on a full disk: %v", err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{name, "filler"}) {
		t.Fatalf("left %v", got)
	}
	sums(t, dir, []File{fs})
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if saved, err := CompressFile(dir, fs, &mu, func() error { return nil }); err != nil || saved <= 0 {
		t.Fatalf("with room: %d, %v", saved, err)
	}
	sums(t, dir, []File{fs})
}

// BenchmarkCompress is Compress's speed on log-like lines, per core.
func BenchmarkCompress(b *testing.B) {
	plain := logLines(7, 32<<20, false)
	b.SetBytes(int64(len(plain)))
	var out bytes.Buffer
	for b.Loop() {
		out.Reset()
		if _, _, err := Compress(&out, bytes.NewReader(plain), SHA256, func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(plain))/float64(out.Len()), "ratio")
}

// BenchmarkSegmentRead is reading a compressed file's plain bytes in
// order, per core.
func BenchmarkSegmentRead(b *testing.B) {
	plain := logLines(7, 32<<20, false)
	path := filepath.Join(b.TempDir(), "seg")
	if err := os.WriteFile(path, compress(b, plain), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		seg, err := OpenSegment(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := seg.Sum(SHA256, func() error { return nil }); err != nil {
			b.Fatal(err)
		}
		seg.Close()
	}
}

// BenchmarkEncoderChoices compares what docs/benchmarks.md ("Compressed
// files") compares for the format's fixed settings, on log-like lines with
// random fields: frame sizes at the level the format uses (level 1), and
// zstd's default level at the format's frame size. It reports the ratio
// and the speed of compressing alone.
//
//	go test -run '^$' -bench EncoderChoices ./internal/store
func BenchmarkEncoderChoices(b *testing.B) {
	plain := logLines(7, 32<<20, false)
	for _, fs := range []int{256 << 10, 1 << 20, 4 << 20, 32 << 20} {
		b.Run(fmt.Sprintf("level1/frame=%dKiB", fs>>10), func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			var out bytes.Buffer
			for b.Loop() {
				out.Reset()
				if _, _, err := compressFrames(&out, bytes.NewReader(plain), SHA256, func() error { return nil }, fs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(plain))/float64(out.Len()), "ratio")
		})
	}
	b.Run("default-level/frame=256KiB", func(b *testing.B) {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(true), zstd.WithSingleSegment(true))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(plain)))
		var n int
		var dst []byte
		for b.Loop() {
			n = 0
			for rest := plain; len(rest) > 0; {
				cut := frameEnd(rest, true, FrameSize)
				dst = enc.EncodeAll(rest[:cut], dst[:0])
				n += len(dst)
				rest = rest[cut:]
			}
		}
		b.ReportMetric(float64(len(plain))/float64(n), "ratio")
	})
}
