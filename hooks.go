package logx

import (
	"sync"

	"github.com/hashicorp/raft-wal/types"
	"github.com/logx-dev/logx/internal/store"
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

// storeHooks are the test hooks of the node's files (store.Hooks): the
// simulated full disk and the power cut's record of durable sizes.
func (f *fsm) storeHooks() store.Hooks {
	h := store.Hooks{Fault: f.fault}
	if f.hooks != nil {
		h.Synced = f.hooks.synced
	}
	return h
}
