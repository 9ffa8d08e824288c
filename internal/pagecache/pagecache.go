// Package pagecache drops the durable bytes of files written front to back
// from the kernel's page cache (Dropper), and tells which of a file's
// pages are cached (Resident, for tests).
package pagecache

import "os"

// Dropper drops the durable bytes of a file written front to back from
// the kernel's page cache, so that a busy log does not fill the host's
// memory (a container's, where the page cache counts) with bytes written
// once and seldom read, and its writes reuse pages the kernel has at hand.
// Only Linux drops anything (posix_fadvise); elsewhere the page cache is
// left to the system. The zero value starts at the file's first byte.
type Dropper struct {
	dropped int64 // the bytes before it are out of the page cache
}

// To drops the bytes before to, which must be durable (synced): those
// from where the last drop ended, and the page that drop ended in (the
// kernel drops whole pages only).
func (d *Dropper) To(f *os.File, to int64) {
	if to <= d.dropped {
		return
	}
	from := pageStart(d.dropped)
	dropCache(f, from, to-from)
	d.dropped = to
}

// All drops the rest of the file, its last page included; the file must
// be durable to its end.
func (d *Dropper) All(f *os.File) {
	dropCache(f, pageStart(d.dropped), 0)
}

// pageStart is where the page that holds the byte at off starts.
func pageStart(off int64) int64 { return off - off%int64(os.Getpagesize()) }

// Count counts the resident pages among in[from:to] (page indexes, from
// Resident).
func Count(in []bool, from, to int) int {
	n := 0
	for _, r := range in[from:to] {
		if r {
			n++
		}
	}
	return n
}
