// Package pagecache drops the durable bytes of files from the kernel's
// page cache (Drop), so that a busy log does not fill the host's memory
// (a container's, where the page cache counts) with bytes written once and
// seldom read, and its writes reuse pages the kernel has at hand. Only
// Linux drops anything (posix_fadvise); elsewhere the page cache is left
// to the system. Resident and Observable are for tests.
package pagecache

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
