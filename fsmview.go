package logx

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/logx-dev/logx/internal/store"
)

// What the rest of a stream may ask of its state machine, from any
// goroutine. Nothing outside the state machine's files reads its fields.

// fsmStats is the state machine's part of Stats.
type fsmStats struct {
	clockRefused                  uint64
	applied, seq                  uint64
	entries, bytes, dups, evicted uint64
	rotations, retired, catchUps  uint64
	clock                         int64 // the log clock, Unix nanoseconds; 0: none yet
	catchingUp                    bool
	catchUpBytes, catchUpDone     int64
	catchUpDuration               time.Duration
	catchUpErr                    string
}

func (f *fsm) stats() fsmStats {
	return fsmStats{
		applied: f.applied.Load(), seq: f.seq.Load(),
		entries: f.entries.Load(), bytes: f.bytes.Load(), dups: f.dups.Load(), evicted: f.evicted.Load(),
		rotations: f.rotated.Load(), retired: f.retired.Load(), catchUps: f.catchUps.Load(),
		clock: f.clock.Load(), clockRefused: f.clockRefused.Load(),
		catchingUp: f.progress.running.Load(), catchUpBytes: f.progress.total.Load(), catchUpDone: f.progress.done.Load(),
		catchUpDuration: f.progress.elapsed(), catchUpErr: f.catchUpErr(),
	}
}

// appliedIndex is the Raft index applied here.
func (f *fsm) appliedIndex() uint64 { return f.applied.Load() }

// catchingUp reports whether files are being copied from peers.
func (f *fsm) catchingUp() bool { return f.progress.running.Load() }

// changed returns a channel closed after the next apply: take it before
// reading the files, and a line written after the read closes it.
func (f *fsm) changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notify
}

// clusterSettings are the cluster's settings, nil until known.
func (f *fsm) clusterSettings() *clusterSettings { return f.settings.Load() }

// votersAreKnown reports whether the checkpoint knows the voters (clock.go).
func (f *fsm) votersAreKnown() bool {
	v := f.voters.Load()
	return v != nil && len(v.voters) > 0
}

// toScrub is the rotated files to check in the background once peers are
// reachable (scrub.go), as recovered at start, before Raft's apply can
// change the list; none after an interrupted catch-up, which checks every
// file against the snapshot itself. Called before Raft starts.
func (f *fsm) toScrub() []store.File {
	if f.st.CatchingUp {
		return nil
	}
	return append([]store.File(nil), f.st.Rotated...)
}

// restoring marks the time New's Raft restores its stored snapshot
// (catchup.go: an interrupted catch-up then goes on in the background).
func (f *fsm) restoring(on bool) { f.bg.starting.Store(on) }

// closeFiles closes the files without a checkpoint (a failed start).
func (f *fsm) closeFiles() {
	if f.seg != nil {
		_ = f.seg.Close()
	}
}

// toCompress is the rotated files the newest checkpoint lists (compress.go),
// and how many catch-ups have replaced the files so far; nil files while
// a catch-up interrupted at start has not ended.
func (f *fsm) toCompress() (files []store.File, catchUps uint64) {
	catchUps = f.catchUps.Load()
	if p := f.checkpointed.Load(); p != nil {
		files = *p
	}
	return files, catchUps
}

// filesLock is held to rename or remove a rotated file (fsm.filesMu);
// compressLock while compressing one (fsm.compressMu).
func (f *fsm) filesLock() sync.Locker    { return &f.filesMu }
func (f *fsm) compressLock() sync.Locker { return &f.compressMu }

// storeMax raises v to x; it never lowers it.
func storeMax(v *atomic.Uint64, x uint64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}
