package logx

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/logx-dev/logx/internal/store"
)

// fsm is the Raft state machine: it renders committed batches into lines and
// appends them to the log's files (internal/store). Raft calls it from one
// goroutine; the fields below mu are read by other goroutines.
type fsm struct {
	fsmConfig // as given to newFSM; file, policy and format follow the cluster's settings

	// stop is closed when the node closes.
	stop chan struct{}

	// verified are the rotated files an unfinished catch-up has checked
	// (or kept) against its manifest, by first sequence number: the next
	// attempt keeps them without reading them again. Owned by the catch-up.
	verified map[uint64]store.File

	// compressMu is held by the compressor while it compresses a file, and
	// by a catch-up from its start to its end: the compressor stops the
	// file under way when a catch-up begins (compress.go), so that the two
	// do not rename the same files in turn.
	compressMu sync.Mutex

	// checkpointed is the rotated files the newest checkpoint lists: the
	// ones the compressor may compress (compress.go). Nil while the files
	// are being caught up at start.
	checkpointed atomic.Pointer[[]store.File]

	// filesMu is held by every step that renames or removes a rotated file
	// out of the log (retention, catch-up, a redo's undo of rotations), and
	// by repair (scrub.go) from its check that a file is still there to its
	// rename over it.
	filesMu sync.Mutex

	// settings are the cluster's, once known (settings.go); catalog is the
	// catalog as applied (catalog.go), for other goroutines.
	settings atomic.Pointer[clusterSettings]
	// pendingSettings are the cluster's settings known while settings is
	// not set (nil: none): those of the snapshot a catch-up under way
	// copies to, or those the log recorded that this node's Config
	// conflicts with (it stopped applying). A node's senders take their
	// DedupWindow: its Appends still go through the leader, and a try
	// must not outlast the cluster's memory of its producer.
	pendingSettings atomic.Pointer[clusterSettings]
	catalog         atomic.Pointer[map[string]*catalogEntry]
	level           atomic.Pointer[slog.Level] // the cluster level as applied, nil if never set
	// truncated is the truncation point as applied (truncate.go), 0 if none.
	truncated atomic.Uint64
	// levelIndex is the Raft index of the last level command that set the
	// node's level (apply goroutine; not part of st, so a redo does not
	// reset it).
	levelIndex uint64

	// Owned by the apply goroutine.
	st          applyState
	scratch     []byte        // expanded records of a compressed batch
	seg         *store.Writer // nil while a catch-up is unfinished
	lastPersist time.Time
	// lists is the rotated files' list the last checkpoint named
	// (checkpoint.go), written again only when it changes.
	lists  rotatedList
	failed error // sticky: the files are incomplete and cannot be finished
	// dirty is set when a write failed part-way: st and the files then
	// describe a half-applied batch, and only starting again from the
	// checkpoint (redo, or a restart) makes them consistent. Nothing is
	// checkpointed or snapshotted while it is set.
	dirty bool

	// Read by others.
	applied atomic.Uint64                 // Raft index applied (mirrors st.Index)
	seq     atomic.Uint64                 // last sequence number written
	clock   atomic.Int64                  // the log clock (st.Clock)
	rules   atomic.Int32                  // the apply rules (st.Rules, rules.go)
	voters  atomic.Pointer[appliedVoters] // st.Voters, for Stats and ensureVoters (clock.go)
	entries atomic.Uint64                 // entries written since start
	bytes   atomic.Uint64                 // bytes written since start
	dups    atomic.Uint64                 // repeated entries dropped
	// clockRefused counts clock reports refused for another certificate
	// subject than the voter's earlier ones (clock.go).
	clockRefused atomic.Uint64
	evicted      atomic.Uint64 // producers forgotten early (evictProducers)
	rotated      atomic.Uint64
	retired      atomic.Uint64 // files retention retired since start
	catchUps     atomic.Uint64
	progress     catchUpProgress
	bg           background                   // a catch-up finishing in the background (catchup.go)
	retrying     atomic.Bool                  // ApplyBatch retries a failed write (applyBlocked)
	segPtr       atomic.Pointer[store.Writer] // seg, for the fetch server
	nextSum      atomic.Uint32                // store.Hash of the files started next (sums.go)
	mu           sync.Mutex
	notify       chan struct{} // closed and replaced after every apply
	failedMu     sync.Mutex
	failErr      error
}

// applyResult is what ApplyBatch returns for a batch: the sequence number of
// its first entry. Entries of a batch get consecutive numbers.
type applyResult struct {
	firstSeq uint64
	err      error
}

// fsmConfig is everything a state machine uses, given to newFSM.
type fsmConfig struct {
	// onlySHA256 refuses manifests naming a file without a sha256, as a
	// logx before BLAKE3 checksums does (a test's seam, sums.go).
	onlySHA256 bool

	dir    string
	file   string // the active file's name
	policy filePolicy
	format Format
	// stateInterval is how often apply checkpoints (Config's
	// CheckpointInterval; -1: only when asked, in tests).
	stateInterval time.Duration
	logf          func(format string, args ...any)

	// want is what this node's Config sets of the cluster's settings
	// (settings.go).
	want clusterSettings
	// logs returns the Raft log, from which redo reads back the entries
	// applied since the checkpoint. A function: the Raft log is opened
	// after the state machine (whose files are checked first), and is
	// needed only once Raft applies.
	logs func() raft.LogStore
	// storedSnap is the index of the newest snapshot Raft has stored (0:
	// none, or unknown); nil for a state machine without a store (tests).
	// Set before Raft starts: the store is opened after the state machine.
	storedSnap func() uint64
	// storedManifest reads the newest snapshot Raft has stored (nil: none);
	// nil for a state machine without a store (tests).
	storedManifest func() (*manifest, error)
	// unchecked, if set, says which rotated files the checks of the files
	// at rest (scrub.go) have not cleared, which a catch-up reads again.
	unchecked func() fileChecks
	// fetcher copies file ranges from peers (catch-up, repair).
	fetcher fetcher
	// onWriteError is told when writing starts failing; onActive when
	// apply writes lines (idle.go); onBlocked when a catch-up starts and
	// every second while it runs (catchup.go: a leader that cannot apply
	// hands the leadership over). Any may be nil.
	onWriteError func(error)
	onActive     func()
	onBlocked    func()
	// onApplied is told after every apply (commit.go: a leader passes its
	// commit index on when traffic stops); it must not block.
	onApplied func()
	// onRetired is told when, after retention retired files, as many
	// retired files wait for deletion as retention keeps (retention.go);
	// it must not block.
	onRetired func()
	// onRotated is told when a checkpoint lists rotated files the one
	// before did not (compress.go); it must not block. With it, a batch
	// that rotates a file is checkpointed at once: the file is not
	// compressed before, and an idle log may not checkpoint for long.
	onRotated func()
	// onCatalog, set on the default stream only, is told of every change
	// of the catalog (catalog.go), in log order; it must not block.
	onCatalog func(catalogEvent)
	// onLevel is told of every cluster level applied (clusterlevel.go),
	// and of one restored by a catch-up; it must not block.
	onLevel func(slog.Level)
	// expanded holds the records of batches this node commits, lent to
	// apply so that it need not expand them (expand.go); may be nil.
	expanded *expandedSet

	// Test hooks, nil in normal use. hooks see every write and fsync for
	// a simulated power cut (hooks.go); fault is asked before every write
	// and fsync of the log files (a full or failing disk); retryPause is
	// the first pause before a failed write is retried, and the least of
	// the later ones; repairHook is
	// called by repair between its check and its rename (scrub.go).
	hooks      *powerHooks
	fault      func() error
	retryPause time.Duration
	repairHook func(name string)
}

// newFSM recovers c.dir's files to its checkpoint and returns the state
// machine that goes on from there.
func newFSM(c fsmConfig) (*fsm, error) {
	dir, file := c.dir, c.file
	st, have, list, err := readStateListed(dir)
	if err != nil {
		return nil, err
	}
	if err := removeStaleLists(dir, list); err != nil {
		return nil, err
	}
	if err := checkStateNames(&st, file); err != nil {
		return nil, err
	}
	if err := checkRules(st.Rules); err != nil {
		return nil, fmt.Errorf("logx: %s: %w", stateFile, err) // not ErrCorrupt: a newer logx's
	}
	if err := checkReplicated(st.Producers, st.Voters, st.Clocks, st.ClockOwners, st.ReportedAt, st.Clock, st.Rules); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, stateFile, err)
	}
	if err := checkCatalog(st.Catalog); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, stateFile, err)
	}
	f := &fsm{fsmConfig: c, st: st, lastPersist: time.Now(), notify: make(chan struct{}), stop: make(chan struct{}),
		lists: rotatedList{name: list, files: slices.Clone(st.Rotated)}}
	f.applied.Store(st.Index)
	f.seq.Store(st.Seq)
	f.clock.Store(st.Clock)
	f.rules.Store(int32(st.Rules))
	f.voters.Store(&appliedVoters{voters: st.Voters})
	f.settings.Store(st.Settings)
	f.catalog.Store(&st.Catalog)
	f.level.Store(st.Level)
	f.truncated.Store(st.TruncatedBefore)
	// A checkpoint of a version before the list had a file of its own is
	// written again in this form at once (once the files open: until then
	// the Dir can still go back to that version), so that an earlier
	// version refuses the Dir, whose Raft log this one writes in its own
	// way, even if this node never checkpoints (a settings conflict stops
	// its apply first, or a catch-up never ends).
	oldForm := have && list == ""
	if oldForm && st.CatchingUp {
		if err := writeState(dir, &st, &f.lists); err != nil {
			return nil, err
		}
	}
	if st.CatchingUp {
		// An interrupted catch-up: Raft restores its stored snapshot at
		// start-up, and Restore finishes the copy.
		f.logf("logx: %s: a catch-up from peers was interrupted; it resumes when Raft restores its snapshot", dir)
		return f, nil
	}
	seg, err := f.openFiles(st.State, file, c.policy.rotation, have)
	if err != nil {
		return nil, err
	}
	f.useSegment(seg)
	f.noteRotated(st.Rotated)
	if oldForm {
		if err := writeState(dir, &st, &f.lists); err != nil {
			seg.Close()
			return nil, err
		}
	}
	if !have {
		// A new directory: checkpoint the empty state before the first line,
		// so a crash before the first real checkpoint is recoverable.
		if err := writeState(dir, &st, &f.lists); err != nil {
			seg.Close()
			return nil, err
		}
	}
	return f, nil
}

// checkStateNames checks that every file name in a checkpoint is the name
// its numbers give: names are used as paths.
func checkStateNames(st *applyState, file string) error {
	names := store.NewNames(file)
	for _, fs := range st.Rotated {
		if fs.Name != names.Segment(fs.First) {
			return fmt.Errorf("%w: %s lists a rotated file %q", ErrCorrupt, stateFile, fs.Name)
		}
	}
	for _, r := range st.Retired {
		if _, ok := names.ParseSegment(r.Name); !ok || filepath.Base(r.Name) != r.Name {
			return fmt.Errorf("%w: %s lists a retired file %q", ErrCorrupt, stateFile, r.Name)
		}
	}
	return nil
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: one write for all the logs.
//
// When writing fails (a full disk, an I/O error) the node stops applying:
// ApplyBatch reports the error (Stats, the write-error alarm, LogOutput)
// and does not return. It retries with a growing pause, each time starting
// again from the last checkpoint as after a crash: the files are cut back
// to it, the entries applied since are read back from the Raft log and
// written again, then these. Once writing works the node resumes; nothing
// is skipped, so its files end identical to its peers'. Close ends the
// wait.
//
// While a catch-up finishes in the background, ApplyBatch waits for it;
// if the node closes first, this batch and every later one fail.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	if err := f.waitBackground(); err != nil {
		return failAll(len(logs), err)
	}
	defer f.hooks.guard()()
	if f.seg == nil && f.failed == nil && f.st.CatchingUp {
		if err := f.finishCatchUp(); err != nil {
			f.failed = err // closing: every later batch fails at once
			return failAll(len(logs), err)
		}
	}
	if f.seg == nil && f.failed == nil {
		f.failed = fmt.Errorf("%w: the files are incomplete (an interrupted catch-up) and Raft has no snapshot to finish it", ErrCorrupt)
		f.setErr(f.failed)
		f.logf("logx: %v", f.failed)
	}
	if f.failed != nil {
		return failAll(len(logs), f.failed)
	}
	res, err := f.applyLogs(logs)
	if err != nil {
		f.retrying.Store(true)
		defer f.retrying.Store(false)
	}
	for pause := cmp.Or(f.retryPause, 100*time.Millisecond); err != nil; pause = max(min(2*pause, 5*time.Second), f.retryPause) {
		f.dirty = true
		err = fmt.Errorf("logx: writing %s: %w", f.file, err)
		if f.Err() == nil {
			f.logf("%v; this node stops applying and retries until writing works", err)
		}
		f.setErr(err)
		if f.onWriteError != nil {
			f.onWriteError(err) // on every retry: the node may have been elected meanwhile
		}
		if f.stopped(pause) {
			// Closing: the files stay as the failure left them, and no
			// later batch may be written after the gap. The restart
			// starts again from the checkpoint.
			f.failed = fmt.Errorf("%w while %v", ErrClosed, err)
			return failAll(len(logs), f.failed)
		}
		// The retired files no stored snapshot lists go now, as the next
		// snapshot would delete them (they were retired at or before the
		// checkpoint redo goes back to): none is taken while a write
		// fails, and on a full disk they may be the only room there is
		// (every node holds the same files: theirs fill together).
		if derr := f.deleteRetired(f.prevSnap()); derr != nil {
			f.logf("logx: deleting retired files: %v", derr)
		}
		res, err = f.redo(logs)
	}
	f.dirty = false
	if f.failed == nil && f.Err() != nil {
		f.logf("logx: writing %s works again; this node applies again", f.file)
		f.setErr(nil)
	}
	return res
}

// stopped waits for pause and reports whether the node is closing; a
// node already closing does not wait.
func (f *fsm) stopped(pause time.Duration) bool {
	select {
	case <-f.stop:
		return true
	default:
	}
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-f.stop:
		return true
	case <-t.C:
		return false
	}
}

func failAll(n int, err error) []any {
	res := make([]any, n)
	for i := range res {
		res[i] = applyResult{err: err}
	}
	return res
}

// useSegment makes seg the writer of the files (nil while they are being
// replaced), visible to the fetch server.
func (f *fsm) useSegment(seg *store.Writer) {
	f.seg = seg
	f.segPtr.Store(seg)
	if seg != nil {
		seg.FollowSum(&f.nextSum) // the hash tend chose (sums.go)
	}
}

// compresses reports whether this node keeps its rotated files compressed
// (Config.Compress: onRotated wakes its compressor).
func (f *fsm) compresses() bool { return f.onRotated != nil }

// openFiles recovers the files of f.dir to the checkpoint st (known: there
// is one) and opens them for writing, the active file named file.
func (f *fsm) openFiles(st store.State, file string, rot store.Rotation, known bool) (*store.Writer, error) {
	w, err := store.Open(f.dir, file, rot, st, known, stateFile, f.storeHooks())
	if err == nil && f.compresses() { // its compressor reads the sealed files (compress.go)
		w.KeepRotated()
	}
	return w, err
}

// redo starts again from the last checkpoint, as after a crash, and
// applies the entries since then (read from the Raft log) and logs. An
// entry Raft compacted (before its first) is at or before a snapshot, which
// checkpoints the files first: not a command the checkpoint lacks.
func (f *fsm) redo(logs []*raft.Log) ([]any, error) {
	if f.seg != nil {
		_ = f.seg.Close()
	}
	f.useSegment(nil)
	f.filesMu.Lock() // store.Open removes the files rotated since the checkpoint
	nf, err := newFSM(f.fsmConfig)
	f.filesMu.Unlock()
	if err != nil {
		return nil, err
	}
	f.st, f.lastPersist = nf.st, time.Now()
	f.rules.Store(int32(f.st.Rules)) // a rules command since is applied again
	f.lists = nf.lists               // as the checkpoint names it (newFSM removed the others)
	if s := nf.st.Settings; s != nil {
		// The limits as of the checkpoint: a retention command applied
		// since is applied again, at its place in the log.
		f.policy = s.policy()
		f.settings.Store(s)
	}
	f.dirty = false // back at the checkpoint: state and files agree again
	f.useSegment(nf.seg)
	var l raft.Log
	for idx := f.st.Index + 1; idx < logs[0].Index; idx++ {
		if err := f.logs().GetLog(idx, &l); err != nil {
			if first, ferr := f.logs().FirstIndex(); ferr == nil && idx < first && errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return nil, fmt.Errorf("reading Raft entry %d back: %w", idx, err)
		}
		if _, err := f.applyLogs([]*raft.Log{&l}); err != nil {
			return nil, err
		}
	}
	return f.applyLogs(logs)
}

// applyLogs writes the lines of logs; on error the files and f.st are
// left half-way, for redo to start again from the checkpoint.
func (f *fsm) applyLogs(logs []*raft.Log) ([]any, error) {
	res := make([]any, len(logs))
	st := &f.st
	last := st.Index
	var line []byte
	active, changedRetention := false, false
	defer func() {
		if active && f.onActive != nil {
			f.onActive()
		}
	}()
	for i, l := range logs {
		if l.Index <= st.Index {
			// Replayed after a restart: the files already hold it.
			res[i] = applyResult{err: errReplayed}
			continue
		}
		last = l.Index
		switch {
		case l.Type == raft.LogConfiguration:
			f.applyConfiguration(l.Index, l.Data)
		case l.Type != raft.LogCommand:
		case f.failed != nil:
			res[i] = applyResult{err: f.failed} // stopped by a settings conflict
		case len(l.Data) > 0 && l.Data[0] == cmdClock:
			res[i] = f.applyClock(l)
		case len(l.Data) > 0 && l.Data[0] == cmdSettings:
			res[i] = f.applySettings(l.Data)
		case len(l.Data) > 0 && l.Data[0] == cmdCatalog:
			res[i] = f.applyCatalog(l.Index, l.Data)
		case len(l.Data) > 0 && l.Data[0] == cmdLevel:
			res[i] = f.applyLevel(l.Index, l.Data)
		case len(l.Data) > 0 && l.Data[0] == cmdTruncate:
			res[i] = f.applyTruncate(l.Data)
		case len(l.Data) > 0 && l.Data[0] == cmdRetention:
			// Retire under the limits in force up to here first, so that
			// what is retired does not depend on how Raft grouped the
			// entries into batches on this node.
			st.Index = l.Index - 1
			if err := f.retain(); err != nil {
				return nil, err
			}
			res[i] = f.applyRetention(l.Data)
			changedRetention = true
		case len(l.Data) > 0 && l.Data[0] == cmdRules:
			// Retire by the rules in force up to here first (as above).
			st.Index = l.Index - 1
			if err := f.retain(); err != nil {
				return nil, err
			}
			res[i] = f.applyRules(l.Data)
			changedRetention = true // checkpointed at once, as a retention command
		default:
			r, err := f.applyBatch(l, &line)
			if err != nil {
				return nil, err
			}
			res[i] = r
			active = true
		}
	}
	if err := f.seg.Flush(); err != nil {
		return nil, err
	}
	st.Index = last
	if err := f.retain(); err != nil {
		return nil, err
	}
	storeMax(&f.seq, st.Seq) // a redo writes again what readers saw
	rotated := f.seg.Rotations() != f.rotated.Load()
	f.rotated.Store(f.seg.Rotations())
	// A retention command is checkpointed at once: a node restarted with
	// a Config of the new limits must find them set (settings.go).
	// A node that stopped applying (stopWith) checkpoints nothing more:
	// persist would refuse, and its refusal taken for a write error would
	// cut the files back to the last checkpoint.
	if f.failed == nil && f.stateInterval >= 0 && (time.Since(f.lastPersist) >= f.stateInterval || rotated && f.compresses() || changedRetention) {
		if err := f.persist(); err != nil {
			return nil, err
		}
	}
	storeMax(&f.applied, last)
	f.mu.Lock()
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
	if f.onApplied != nil {
		f.onApplied()
	}
	return res, nil
}

// setErr records the write error that stops the node (nil: none).
func (f *fsm) setErr(err error) {
	f.failedMu.Lock()
	f.failErr = err
	f.failedMu.Unlock()
}

// applyBlocked reports whether apply is held up: ApplyBatch retries a
// failed write, or waits for a catch-up finishing in the background. A node
// stopped for good (f.failed: a settings conflict, incomplete files) is not
// held up: its ApplyBatch answers at once, with the error.
func (f *fsm) applyBlocked() bool { return f.retrying.Load() || f.bg.applyWaiting.Load() }

// Err returns the write error that stopped the node, or nil.
func (f *fsm) Err() error {
	f.failedMu.Lock()
	defer f.failedMu.Unlock()
	return f.failErr
}

// waitApplied blocks until the Raft index idx has been applied here.
func (f *fsm) waitApplied(done <-chan struct{}, idx uint64) error {
	for {
		f.mu.Lock()
		ch := f.notify
		f.mu.Unlock()
		if f.applied.Load() >= idx {
			return nil
		}
		if err := f.Err(); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-done:
			return errWaitAborted
		}
	}
}

// Snapshot implements raft.FSM. It checkpoints the files first, so Raft only
// compacts log entries the files durably hold.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if f.backgroundBusy() {
		return nil, errors.New("logx: a catch-up from peers is under way; no snapshot")
	}
	defer f.hooks.guard()()
	if f.failed != nil {
		return nil, f.failed
	}
	if f.dirty || f.seg == nil {
		return nil, errors.New("logx: the files are not consistent yet; no snapshot")
	}
	if err := f.deleteRetired(f.prevSnap()); err != nil {
		return nil, err
	}
	f.st.SnapIndex = f.st.Index
	if err := f.persist(); err != nil {
		return nil, err
	}
	m := &manifest{Index: f.st.Index, Seq: f.st.Seq, Producers: make(map[uint64]*producerState, len(f.st.Producers)),
		PrunedAt: f.st.PrunedAt, Clock: f.st.Clock, Clocks: maps.Clone(f.st.Clocks), Voters: slices.Clone(f.st.Voters),
		Owners: maps.Clone(f.st.ClockOwners), ReportedAt: maps.Clone(f.st.ReportedAt), Rules: f.st.Rules,
		Settings: f.st.Settings, Catalog: f.st.Catalog, Level: f.st.Level, TruncatedBefore: f.st.TruncatedBefore}
	for k, v := range f.st.Producers {
		c := *v
		m.Producers[k] = &c
	}
	m.Files = f.seg.Files()
	return m, nil
}

// Persist implements raft.FSMSnapshot.
func (m *manifest) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(m); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (m *manifest) Release() {}

// Restore implements raft.FSM. At start-up Raft restores the newest local
// snapshot; the files are at least as new (Snapshot checkpoints them first),
// so there is nothing to do, unless a catch-up was interrupted: then it
// resumes in the background, so that New does not wait for the peers. A
// snapshot from the leader that is newer than the files means this node
// missed entries Raft no longer holds: catchUp copies them from a peer,
// before Restore returns (on failure Raft sends the snapshot again). It
// supersedes a catch-up still running in the background.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	// A catch-up in the background owns f.st and f.file (which the
	// manifest's check reads) until it has stopped; if this snapshot is
	// refused, it goes on.
	pending := f.bg.m
	f.stopBackground()
	m, err := readManifest(rc, f.manifestFile)
	if err == nil {
		err = errors.Join(f.knowsSums(m), f.laterRules(m))
	}
	if err != nil {
		if pending != nil && f.seg == nil {
			f.resumeInBackground(pending)
		}
		return err
	}
	defer f.hooks.guard()()
	if m.Index <= f.st.Index && !f.st.CatchingUp {
		return nil
	}
	if f.failed != nil {
		return f.failed
	}
	if f.bg.starting.Load() {
		f.resumeInBackground(m)
		return nil
	}
	err = f.catchUp(f.stopContext(), m)
	f.setCatchUpErr(err)
	f.endCatchUp()
	if err != nil {
		f.logf("logx: catch-up to Raft index %d failed (Raft retries): %v", m.Index, err)
		return err
	}
	return nil
}

// close checkpoints and closes the files. Raft must have stopped. Files a
// write failure left half-written are closed as they are, without a
// checkpoint: the restart cuts them back to the last one. A background
// catch-up is stopped first (it resumes at the next start).
func (f *fsm) close() error {
	f.stopBackground()
	if f.seg == nil {
		return nil
	}
	if f.failed != nil || f.dirty {
		return f.seg.Close()
	}
	err := f.persist()
	if cerr := f.seg.Close(); err == nil {
		err = cerr
	}
	return err
}
