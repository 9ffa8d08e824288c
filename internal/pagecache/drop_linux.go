package pagecache

import (
	"os"

	"golang.org/x/sys/unix"
)

// Drop asks the kernel to drop the cached pages of f's first n bytes, or
// of all of it when n is 0; they must be durable (synced), as the kernel
// keeps dirty pages. Only whole pages (and folios) inside the range go, so
// each drop starts at the file's first byte: a page or folio a drop ended
// in goes with the next, and a range with nothing cached costs little. It
// is advice: an error changes nothing written, so it is not reported.
func Drop(f *os.File, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.Fadvise(int(fd), 0, n, unix.FADV_DONTNEED) })
}
