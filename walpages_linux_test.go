package logx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"

	"github.com/logx-dev/logx/internal/pagecache/pagecachetest"
)

// A raft-wal segment written through walPages stays cached while it is
// open and leaves the page cache when its writer is closed, whether
// raft-wal created it or reopened it (at start, OpenWriter: a plain
// *os.File).
func TestWALPagesDrop(t *testing.T) {
	dir := t.TempDir()
	pagecachetest.Observable(t, dir)
	path := filepath.Join(dir, "seg")
	vfs := walPages{fs.New()}
	write := func(how string, wf types.WritableFile, from int64) {
		t.Helper()
		const chunk, chunks = 256 << 10, 8
		for i := range int64(chunks) {
			if _, err := wf.WriteAt(make([]byte, chunk), from+i*chunk); err != nil {
				t.Fatal(err)
			}
			if err := wf.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		in := pagecachetest.Resident(t, path)
		page := int64(os.Getpagesize())
		start, end := int(from/page), int((from+chunks*chunk)/page)
		if n := pagecachetest.Count(in, start, end); n != end-start {
			t.Errorf("%s: %d of the %d pages written are cached while it is open, want all", how, n, end-start)
		}
		if err := wf.Close(); err != nil {
			t.Fatal(err)
		}
		if n, pages := pagecachetest.Cached(t, path); n != 0 {
			t.Errorf("%s: after Close %d of %d pages are cached", how, n, pages)
		}
	}
	wf, err := vfs.Create(dir, "seg", 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	write("created", wf, 0)
	if wf, err = vfs.OpenWriter(dir, "seg"); err != nil {
		t.Fatal(err)
	}
	write("reopened", wf, 2<<20)
}
