package store

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident reports, page by page, whether the bytes of the file at path
// are in the page cache (mincore on a read-only mapping, which faults
// nothing in).
func resident(t *testing.T, path string) []bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	page := os.Getpagesize()
	vec := make([]byte, (len(b)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	in := make([]bool, len(vec))
	for i, v := range vec {
		in[i] = v&1 != 0
	}
	return in
}

// pagesIn counts the resident pages among in[from:to] (page indexes).
func pagesIn(in []bool, from, to int) int {
	n := 0
	for _, r := range in[from:to] {
		if r {
			n++
		}
	}
	return n
}

// A Sync drops the pages the Sync before it made durable, keeps the
// newest interval's, and a rotation drops the file it seals.
func TestSyncDropsOlderPages(t *testing.T) {
	dir := t.TempDir()
	// Some file systems (tmpfs) keep their only copy in the page cache:
	// nothing to check there.
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	pf, err := os.Open(probe)
	if err != nil {
		t.Fatal(err)
	}
	_ = pf.Sync()
	_ = unix.Fadvise(int(pf.Fd()), 0, 0, unix.FADV_DONTNEED) // not dropCache: a broken one must fail the test, not skip it
	pf.Close()
	if pagesIn(resident(t, probe), 0, 16) == 16 {
		t.Skip("this file system keeps written pages in memory (tmpfs?)")
	}

	page := os.Getpagesize()
	const lines, size = 256, 1000 // about 63 pages of 4 KiB
	w := open(t, dir, Rotation{MaxSize: 1 << 30}, State{ActiveFirst: 1}, false, Hooks{})
	active := filepath.Join(dir, "app.log")
	seq := write(t, w, 1, lines, size, 0)
	size1 := int(w.size)
	if err := w.Sync(); err != nil { // makes the first part durable; nothing to drop yet
		t.Fatal(err)
	}
	in := resident(t, active)
	if n := pagesIn(in, 0, size1/page); n != size1/page {
		t.Fatalf("after the first Sync %d of the first %d pages are cached, want all", n, size1/page)
	}
	seq = write(t, w, seq, lines, size, 0)
	size2 := int(w.size)
	if err := w.Sync(); err != nil { // drops the first part, keeps the second
		t.Fatal(err)
	}
	in = resident(t, active)
	if n := pagesIn(in, 0, size1/page); n != 0 {
		t.Errorf("after the second Sync %d of the first part's %d pages are still cached", n, size1/page)
	}
	if n, want := pagesIn(in, size1/page+1, size2/page), size2/page-size1/page-1; n != want {
		t.Errorf("after the second Sync %d of the newest part's %d whole pages are cached, want all", n, want)
	}

	// Rotation: the sealed file leaves the cache whole.
	first := w.first
	w.SetRotation(Rotation{MaxSize: int64(size2) + 100*size})
	write(t, w, seq, 150, size, 0)
	if w.Rotations() != 1 {
		t.Fatalf("%d rotations, want 1", w.Rotations())
	}
	sealed := filepath.Join(dir, w.names.Segment(first))
	if in := resident(t, sealed); pagesIn(in, 0, len(in)) != 0 {
		t.Errorf("%d of the rotated file's %d pages are still cached", pagesIn(in, 0, len(in)), len(in))
	}
}
