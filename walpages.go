package logx

import (
	"os"
	"sync"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"

	"github.com/logx-dev/logx/internal/pagecache"
)

// walPages is raft-wal's file system with each segment's durable bytes
// dropped from the page cache (internal/pagecache), all but the newest
// walKeep, and the rest when raft-wal lets the segment's writer go (it
// sealed it, or closes). Raft reads its recent entries from its log cache
// (logCacheSize batches); older ones it reads only for a follower far
// behind or a restart's replay, from the disk. Without it the Raft log of
// a busy stream grows the page cache by its whole size (gigabytes under
// load: TrailingLogs batches stay), as the log files would (store.Writer).
type walPages struct{ types.VFS }

// walKeep is how many of a segment's newest bytes stay cached, and how
// many more must be durable before the next drop: one posix_fadvise per
// walKeep bytes written.
const walKeep = 8 << 20

func (v walPages) Create(dir, name string, size uint64) (types.WritableFile, error) {
	return wrapWALFile(v.VFS.Create(dir, name, size))
}

func (v walPages) OpenWriter(dir, name string) (types.WritableFile, error) {
	return wrapWALFile(v.VFS.OpenWriter(dir, name))
}

func wrapWALFile(wf types.WritableFile, err error) (types.WritableFile, error) {
	if err != nil {
		return nil, err
	}
	ff, ok := wf.(*fs.File)
	if !ok {
		return wf, nil
	}
	return &walFile{WritableFile: wf, f: &ff.File}, nil
}

// walFile is a segment raft-wal writes front to back (its index last,
// when it seals it).
type walFile struct {
	types.WritableFile
	f *os.File

	mu   sync.Mutex
	end  int64 // where the furthest write ended
	next int64 // the drop point that calls for a drop
	drop pagecache.Dropper
}

func (w *walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.WritableFile.WriteAt(p, off)
	w.mu.Lock()
	w.end = max(w.end, off+int64(n))
	w.mu.Unlock()
	return n, err
}

func (w *walFile) Sync() error {
	if err := w.WritableFile.Sync(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if to := w.end - walKeep; to >= w.next {
		w.drop.To(w.f, to)
		w.next = to + walKeep
	}
	return nil
}

// Close drops the rest: a dirty page (a segment closed before a sync)
// stays, as the kernel never drops those.
func (w *walFile) Close() error {
	w.mu.Lock()
	w.drop.All(w.f)
	w.mu.Unlock()
	return w.WritableFile.Close()
}
