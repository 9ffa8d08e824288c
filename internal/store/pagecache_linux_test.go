package store

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/logx-dev/logx/internal/pagecache"
)

// resident is pagecache.Resident, failing the test on an error.
func resident(t *testing.T, path string) []bool {
	t.Helper()
	in, err := pagecache.Resident(path)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// A Sync drops the pages the Sync before it made durable, keeps the
// newest interval's, and a rotation drops the file it seals.
func TestSyncDropsOlderPages(t *testing.T) {
	dir := t.TempDir()
	if kept, err := pagecache.Kept(dir); err != nil {
		t.Fatal(err)
	} else if kept {
		t.Skip("this file system keeps written pages in memory (tmpfs?)")
	}
	count := pagecache.Count
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
	if n := count(in, 0, size1/page); n != size1/page {
		t.Fatalf("after the first Sync %d of the first %d pages are cached, want all", n, size1/page)
	}
	seq = write(t, w, seq, lines, size, 0)
	size2 := int(w.size)
	if err := w.Sync(); err != nil { // drops the first part, keeps the second
		t.Fatal(err)
	}
	in = resident(t, active)
	if n := count(in, 0, size1/page); n != 0 {
		t.Errorf("after the second Sync %d of the first part's %d pages are still cached", n, size1/page)
	}
	if n, want := count(in, size1/page+1, size2/page), size2/page-size1/page-1; n != want {
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
	if in := resident(t, sealed); count(in, 0, len(in)) != 0 {
		t.Errorf("%d of the rotated file's %d pages are still cached", count(in, 0, len(in)), len(in))
	}
}
