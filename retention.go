package logx

import (
	"errors"

	"github.com/logx-dev/logx/internal/store"

	"github.com/hashicorp/raft"
)

// Retired files and snapshots. Retention renames the files it takes out of
// the log to .retired-<name>, and a snapshot deletes those retired at or
// before the newest stored snapshot (fsm.deleteRetired): a peer catching up
// from that snapshot may still copy them. Raft takes a snapshot after
// SnapshotThreshold Raft entries, checked every two minutes or so; under
// heavy load that is many gigabytes of retired files (a 10-minute run at
// 700k entries/s held 5 GiB of them per node with MaxFiles 8 of 128 MiB).
// So once as many files wait for deletion as retention keeps (MaxFiles, at
// least 2), the node asks Raft for a snapshot itself, one at a time: the
// retired files then stay within about three times MaxFiles
// (TestRetiredFilesBounded).
//
// The price: a retired file is deleted sooner, so a peer catching up from
// a snapshot has about the time the cluster takes to write MaxFiles files
// to copy what that snapshot lists before the oldest of them may go. A
// peer that misses one fails its catch-up and installs the newer snapshot,
// keeping what it copied (docs/design.md, "Rotation and retention").

// onRetired runs on the apply goroutine once, after retention retired
// files, as many retired files wait for deletion as retention keeps (the
// cluster's MaxFiles, at least 2): it asks Raft for a snapshot, unless one
// it asked for is still running.
func (lx *Stream) onRetired() { lx.askSnapshot() }

// askSnapshot asks Raft for a snapshot in the background, unless one this
// node asked for is still running or Raft is not running yet, and reports
// whether it did. An error (a snapshot already under way, Raft shutting
// down) leaves it to the next ask: retention's next retirement, or the
// log guard's next read of an entry it cannot read (logguard.go).
func (lx *Stream) askSnapshot() bool {
	r := lx.raftPtr.Load() // nil while NewRaft replays the log at start
	if r == nil || !lx.snapshotting.CompareAndSwap(false, true) {
		return false
	}
	started := lx.goFunc(func() {
		defer lx.snapshotting.Store(false)
		if err := lx.raftCall(func() error { return r.Snapshot().Error() }); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) && !errors.Is(err, raft.ErrRaftShutdown) {
			lx.logf("logx: a snapshot this node asked for: %v", err)
		}
	})
	if !started {
		lx.snapshotting.Store(false)
	}
	return started
}

// retain applies the retention policy after a batch: while there are more
// rotated files than policy.maxFiles, or the oldest one's newest line clock
// is more than policy.maxAge older than the log clock (clock.go), the
// oldest leaves the log. Both clocks come from the log, so every node
// retires the same files at the same Raft index. A retired file is renamed, not
// deleted: catch-ups from a recent snapshot may still fetch it. Snapshot
// deletes it later.
func (f *fsm) retain() error {
	p := f.policy
	if p.maxFiles <= 0 && p.maxAge <= 0 && f.st.TruncatedBefore == 0 {
		return nil
	}
	gone, err := f.seg.Retire(store.RetireBy{MaxFiles: p.maxFiles, MaxAge: p.maxAge, Clock: f.st.Clock, Before: f.st.TruncatedBefore, Unclocked: f.st.Rules >= 1}, &f.filesMu)
	for _, old := range gone {
		f.st.Retired = append(f.st.Retired, retiredFile{Name: old.Name, Index: f.st.Index})
		f.retired.Add(1)
	}
	if len(gone) > 0 && len(f.st.Retired) >= max(2, p.maxFiles) && f.onRetired != nil {
		f.onRetired()
	}
	return err
}

// prevSnap is the "previous snapshot" whose files must stay: the newest
// Raft stored, not the last one asked for, since Raft may still fail to
// store that one (a disk full, a configuration change not yet applied).
func (f *fsm) prevSnap() uint64 {
	prev := f.st.SnapIndex
	if f.storedSnap != nil {
		prev = min(prev, f.storedSnap())
	}
	return prev
}

// deleteRetired deletes the retired files no snapshot Raft could still send
// lists: those retired at or before prevSnap, the index of the newest
// snapshot Raft has stored (it keeps that one and the one being taken).
// Called by Snapshot and before each retry of a failed write, on the apply
// goroutine.
func (f *fsm) deleteRetired(prevSnap uint64) error {
	kept := f.st.Retired[:0]
	for _, r := range f.st.Retired {
		if r.Index > prevSnap {
			kept = append(kept, r)
			continue
		}
		f.filesMu.Lock()
		err := store.RemoveRetired(f.dir, r.Name)
		f.filesMu.Unlock()
		if err != nil {
			return err
		}
	}
	f.st.Retired = kept
	return nil
}
