package pagecache

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to drop the cached pages of f's bytes
// [off, off+n), or from off to the end when n is 0; they must be clean
// (synced). Only whole pages go, and a file's last page only with n 0. It
// is advice: an error changes nothing that was written, so it is not
// reported.
func dropCache(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.Fadvise(int(fd), off, n, unix.FADV_DONTNEED) })
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

// Kept reports whether the file system of dir keeps a file's pages cached
// after they are dropped (tmpfs, whose only copy they are): there,
// Resident cannot show a Dropper at work.
func Kept(dir string) (bool, error) {
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
	// Not dropCache: a broken one must fail the tests, not skip them.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return false, err
	}
	in, err := Resident(f.Name())
	if err != nil {
		return false, err
	}
	return Count(in, 0, len(in)) == len(in), nil
}
