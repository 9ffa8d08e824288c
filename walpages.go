package logx

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"

	"github.com/logx-dev/logx/internal/pagecache"
)

// walPages is raft-wal's file system with a segment's pages dropped from
// the page cache (internal/pagecache) when raft-wal lets its writer go:
// once it is sealed (sealingFiler), or at Close. The open segment stays
// cached whole (64 MiB for the default stream, 8 MiB for the others), so
// Raft's reads of entries its log cache no longer holds (logCacheSize
// batches: a follower's apply after a long AppendEntries, a follower
// behind) find them in memory as before, except the sealed segment's,
// which come from the disk after a rotation. Without it the Raft log of a
// busy stream grows the page cache by its whole size (gigabytes under
// load: TrailingLogs batches stay), as the log files would (store.Writer).
type walPages struct{ types.VFS }

// Create makes a new segment file. raft-wal preallocates it, in the
// rotation that follows the append which sealed the one before; if that
// fails, raft-wal logs "rotate error" and keeps the sealed segment as its
// tail, so every append after it fails ("segment is sealed") until the
// node restarts, although the disk may have room again a moment later. So
// a segment that cannot be preallocated for want of room (a full disk, a
// quota) is created empty instead, to grow as it is written: raft-wal
// reads a segment shorter than its size limit (its reads and its recovery
// stop at the file's end as at zeros, and it seals by offset, not by the
// file's size), but only a crash before the first append left one before,
// so TestWALCreateFullDisk checks appends, reads and a reopen of such a
// segment. An append that finds the disk full then fails as any write
// would, and works again once there is room.
func (v walPages) Create(dir, name string, size uint64) (types.WritableFile, error) {
	wf, err := v.VFS.Create(dir, name, size)
	if err != nil && size > 0 && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		// The failed preallocation leaves the file it created (O_EXCL:
		// no other file of that name was there).
		_ = os.Remove(filepath.Join(dir, name))
		wf, err = v.VFS.Create(dir, name, 0)
	}
	return wrapWALFile(wf, err)
}

// OpenWriter is how raft-wal reopens its open segment at start: a plain
// *os.File from fs.FS.
func (v walPages) OpenWriter(dir, name string) (types.WritableFile, error) {
	return wrapWALFile(v.VFS.OpenWriter(dir, name))
}

func wrapWALFile(wf types.WritableFile, err error) (types.WritableFile, error) {
	if err != nil {
		return nil, err
	}
	switch f := wf.(type) {
	case *fs.File:
		return walFile{wf, &f.File}, nil
	case *os.File:
		return walFile{wf, f}, nil
	}
	return wf, nil
}

// walFile is a segment file whose pages go when it is closed. raft-wal
// syncs every append, so they are clean then; a dirty page would stay (the
// kernel keeps those).
type walFile struct {
	types.WritableFile
	f *os.File
}

func (w walFile) Close() error {
	pagecache.Drop(w.f, 0)
	return w.WritableFile.Close()
}
