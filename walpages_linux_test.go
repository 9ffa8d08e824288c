package logx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft-wal/fs"

	"github.com/logx-dev/logx/internal/pagecache"
)

// A raft-wal segment written through walPages keeps its newest walKeep to
// 2*walKeep durable bytes cached, and none once its writer is closed.
func TestWALPagesDrop(t *testing.T) {
	dir := t.TempDir()
	if kept, err := pagecache.Kept(dir); err != nil {
		t.Fatal(err)
	} else if kept {
		t.Skip("this file system keeps written pages in memory (tmpfs?)")
	}
	wf, err := walPages{fs.New()}.Create(dir, "seg", 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 256 << 10
	buf := make([]byte, chunk)
	end := int64(3*walKeep + chunk)
	for off := int64(0); off < end; off += chunk {
		if _, err := wf.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if err := wf.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	in, err := pagecache.Resident(filepath.Join(dir, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	old, newest := int((end-2*walKeep)/page), int((end-walKeep)/page)
	if n := pagecache.Count(in, 0, old); n != 0 {
		t.Errorf("%d of the %d pages older than 2*walKeep are cached", n, old)
	}
	if n, want := pagecache.Count(in, newest, int(end/page)), int(end/page)-newest; n != want {
		t.Errorf("%d of the newest walKeep's %d pages are cached, want all", n, want)
	}
	if err := wf.Close(); err != nil {
		t.Fatal(err)
	}
	if in, err = pagecache.Resident(filepath.Join(dir, "seg")); err != nil {
		t.Fatal(err)
	}
	if n := pagecache.Count(in, 0, len(in)); n != 0 {
		t.Errorf("after Close %d of %d pages are cached", n, len(in))
	}
}
