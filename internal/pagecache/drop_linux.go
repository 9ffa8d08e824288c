package pagecache

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Drop asks the kernel to drop the cached pages of f's first n bytes, or
// of all of it when n is 0; they must be durable (synced), as the kernel
// keeps dirty pages. Only whole pages (and folios) inside the range go, so
// each drop starts at the file's first byte: a page or folio a drop ended
// in goes with the next, and a range with nothing cached costs little. It
// is advice: an error changes nothing written, so it is not reported.
func Drop(f *os.File, n int64) {
	if n < 0 {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.Fadvise(int(fd), 0, n, unix.FADV_DONTNEED) })
}

// Resident reports, page by page, whether the bytes of the file at path
// are in the page cache (mincore on a read-only mapping, which faults
// nothing in).
func Resident(path string) ([]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(b)
	page := os.Getpagesize()
	vec := make([]byte, (len(b)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return nil, errno
	}
	in := make([]bool, len(vec))
	for i, v := range vec {
		in[i] = v&1 != 0
	}
	return in, nil
}

// Observable reports whether Resident can show pages dropped in dir's
// file system: a file written and synced there has its pages cached, and
// advice to drop them drops them. Not on tmpfs (its pages are the only
// copy) nor on file systems that cache nothing written (DAX).
func Observable(dir string) (bool, error) {
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		return false, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, 16*os.Getpagesize())); err != nil {
		return false, err
	}
	if err := f.Sync(); err != nil {
		return false, err
	}
	in, err := Resident(f.Name())
	if err != nil || Count(in, 0, len(in)) != len(in) {
		return false, err
	}
	// Not Drop: a broken one must fail the tests, not skip them.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return false, err
	}
	if in, err = Resident(f.Name()); err != nil {
		return false, err
	}
	return Count(in, 0, len(in)) == 0, nil
}
