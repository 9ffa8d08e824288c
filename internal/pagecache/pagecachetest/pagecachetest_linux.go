// Package pagecachetest tells tests which pages of a file are in the
// page cache (Linux only), to check pagecache.Drop's callers.
package pagecachetest

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Resident reports, page by page, whether the bytes of the file at path
// are in the page cache (mincore on a read-only mapping, which faults
// nothing in).
func Resident(t testing.TB, path string) []bool {
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
	if fi.Size() == 0 {
		return nil
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

// Count counts the resident pages among in[from:to] (page indexes).
func Count(in []bool, from, to int) int {
	n := 0
	for _, r := range in[from:to] {
		if r {
			n++
		}
	}
	return n
}

// Cached returns how many of the pages of the file at path are in the page
// cache, and how many pages it has.
func Cached(t testing.TB, path string) (cached, pages int) {
	t.Helper()
	in := Resident(t, path)
	return Count(in, 0, len(in)), len(in)
}

// Observable skips the test unless dir's file system shows dropped pages:
// a file written and synced there has its pages cached, and advice to drop
// them drops them. Not on tmpfs (its pages are the only copy) nor on file
// systems that cache nothing written (DAX).
func Observable(t testing.TB, dir string) {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, 16*os.Getpagesize())); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if n, pages := Cached(t, f.Name()); n != pages {
		t.Skip("this file system does not cache what is written")
	}
	// Not pagecache.Drop: a broken one must fail the tests, not skip them.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if n, _ := Cached(t, f.Name()); n != 0 {
		t.Skip("this file system keeps pages it was told to drop (tmpfs?)")
	}
}
