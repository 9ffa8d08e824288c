package logx

import (
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft-wal/types"
)

// powerHooks is a test seam (powercut_test.go) that lets a test simulate a
// power cut: it sees every write and fsync of a node, so it can copy the
// node's Dir as a power cut would leave it, without the bytes that were not
// yet fsynced. Nil in normal use.
type powerHooks struct {
	// mu is held for reading while the node writes or fsyncs files; the
	// simulated cut holds it for writing while it copies Dir.
	mu sync.RWMutex
	// synced is told that the first size bytes of the log file at path are
	// durable (after an fsync, or when recovery cut the file back).
	synced func(path string, size int64)
	// vfs and meta wrap raft-wal's file system and metadata store; if vfs
	// is nil raft-wal is left alone (only the log files are guarded).
	vfs  func(types.VFS) types.VFS
	meta func(types.MetaStore) types.MetaStore
}

// guard takes the hooks' read lock, if any, and returns its release.
func (h *powerHooks) guard() func() {
	if h == nil {
		return func() {}
	}
	h.mu.RLock()
	return h.mu.RUnlock
}

// noteSynced reports the active file's durable size to the hooks.
func (f *fsm) noteSynced() {
	if h := f.hooks; h != nil && h.synced != nil && f.seg != nil {
		h.synced(filepath.Join(f.dir, f.file), f.seg.size)
	}
}

// attachHooks connects the segment writer to the hooks and reports the
// active file's durable size (what recovery or a catch-up left).
func (f *fsm) attachHooks() {
	if h := f.hooks; h != nil && h.synced != nil && f.seg != nil {
		f.seg.synced = h.synced
		f.noteSynced()
	}
}
