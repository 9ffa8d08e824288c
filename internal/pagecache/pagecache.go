// Package pagecache drops the durable bytes of files from the kernel's
// page cache (Drop), so that a busy log does not fill the host's memory
// (a container's, where the page cache counts) with bytes written once and
// seldom read, and its writes reuse pages the kernel has at hand. Only
// Linux drops anything (posix_fadvise); elsewhere the page cache is left
// to the system. Package pagecachetest shows the drops to tests.
package pagecache
