package store

import (
	"os"

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
