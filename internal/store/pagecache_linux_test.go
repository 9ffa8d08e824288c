package store

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/logx-dev/logx/internal/pagecache/pagecachetest"
)

// A Sync drops the pages the Sync before it made durable, keeps the
// newest interval's, a Writer opened on an existing file drops its bytes
// at the first Sync, and a rotation drops the file it seals.
func TestSyncDropsOlderPages(t *testing.T) {
	dir := t.TempDir()
	pagecachetest.Observable(t, dir)
	count, resident := pagecachetest.Count, pagecachetest.Resident
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

	// The next Sync drops the second part, with the page the first drop
	// ended in.
	seq = write(t, w, seq, 10, size, 0)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := count(resident(t, active), 0, size2/page); n != 0 {
		t.Errorf("after the third Sync %d of the first two parts' %d whole pages are still cached", n, size2/page)
	}

	// A Writer opened on an existing active file drops its bytes at the
	// first Sync.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st := w.State(seq)
	if _, err := os.ReadFile(active); err != nil { // back into the cache
		t.Fatal(err)
	}
	w = open(t, dir, Rotation{MaxSize: 1 << 30}, st, true, Hooks{})
	if n := count(resident(t, active), 0, int(st.ActiveSize)/page); n == 0 {
		t.Fatal("reading the file back did not cache it")
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := count(resident(t, active), 0, int(st.ActiveSize)/page); n != 0 {
		t.Errorf("after the first Sync of a reopened Writer %d of the file's %d whole pages are still cached", n, int(st.ActiveSize)/page)
	}

	// Rotation: the sealed file leaves the cache whole.
	first := w.first
	w.SetRotation(Rotation{MaxSize: w.size + 100*size})
	write(t, w, seq, 150, size, 0)
	if w.Rotations() != 1 {
		t.Fatalf("%d rotations, want 1", w.Rotations())
	}
	sealed := filepath.Join(dir, w.names.Segment(first))
	if in := resident(t, sealed); count(in, 0, len(in)) != 0 {
		t.Errorf("%d of the rotated file's %d pages are still cached", count(in, 0, len(in)), len(in))
	}
}

// A Writer that keeps rotated files (a node that compresses) leaves the
// whole sealed file cached for the compressor, checkpoints during its
// life included, and the compressor drops its output and removes the
// plain file.
func TestKeepRotatedForCompressor(t *testing.T) {
	dir := t.TempDir()
	pagecachetest.Observable(t, dir)
	w := open(t, dir, Rotation{MaxSize: 200 << 10}, State{ActiveFirst: 1}, false, Hooks{})
	w.KeepRotated()
	seq := uint64(1)
	for range 5 { // checkpoints as the file fills
		seq = write(t, w, seq, 50, 1000, 0)
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	write(t, w, seq, 10, 1000, 0) // one rotation, at about 200 KiB
	if w.Rotations() != 1 {
		t.Fatalf("%d rotations, want 1", w.Rotations())
	}
	fs := w.Files()[0]
	plain := filepath.Join(dir, fs.Name)
	if n, pages := pagecachetest.Cached(t, plain); n != pages {
		t.Errorf("%d of the rotated file's %d pages are cached, want all (the compressor reads it next)", n, pages)
	}
	if _, err := CompressFile(dir, fs, &sync.Mutex{}, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(plain); !os.IsNotExist(err) {
		t.Fatalf("the plain file is still there: %v", err)
	}
	if n, pages := pagecachetest.Cached(t, plain+CompressedExt); n != 0 {
		t.Errorf("%d of the compressed file's %d pages are cached", n, pages)
	}
}
