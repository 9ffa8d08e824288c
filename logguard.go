package logx

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/types"
)

// logGuard is raft-wal as Raft's log store (under Raft's LogCache, over
// the checksums of summedLog), with two holes closed: one in
// hashicorp/raft, one in raft-wal.
//
// A snapshot installed over a longer log (hashicorp/raft#697). When a
// leader sends a follower a snapshot, hashicorp/raft v1.8.0 empties a log
// store that forbids gaps (raft-wal: MonotonicLogStore) once the state
// machine has restored it, with removeOldLogs: every entry goes, including
// those past the snapshot's index. It does not reset its own record of the
// last entry, though. A follower whose log ran past the snapshot (entries
// of a leader that lost its term, say) then refuses every AppendEntries,
// since it looks for the entry before them in a log that no longer holds
// it; the leader walks back below its first entry and sends the same
// snapshot again, every few milliseconds, for good. If a later
// AppendEntries does match that stale last entry, Raft appends after a gap
// and panics applying it ("log not found").
//
// The guard keeps the log consistent with that record. When the log holds
// the snapshot's last entry (index X, term T) with its term, the entries
// from X on stay and only those before go, as the Raft paper's
// InstallSnapshot has it. When it does not, or holds X with another term,
// the paper empties the log, but hashicorp/raft would go on checking
// against its old last entry; so the entries after X stay, behind a no-op
// that stands in for entry X with term T. Only that term is read (the
// check of the entry before the leader's, in AppendEntries), and a
// leader's metrics and lagTarget read its type and time: X is applied (the
// snapshot holds it), and a leader sends entries only after the entry it
// finds before them, which for X+1 is its snapshot's (or the stand-in's
// term), never X itself (a snapshot at index 1 gets no stand-in). Raft
// then compares the entries kept with the leader's, and cuts where they
// differ. The kept entries exist nowhere else once the log is emptied, so
// writing them back is retried until it succeeds or the node closes.
//
// After every install the log starts at X (the stand-in, when the install
// left it empty, goes before the first entry appended after it; also when
// NewRaft starts on an empty log after a snapshot), as after a compaction
// that keeps trailing entries. A leader that walks this node back stops
// there: entry X's term is the committed one. Without it, a log that
// started after X and whose entries all differed from a new leader's was
// walked down past X, where this node holds nothing to compare; a leader
// that still held entry 1 sent it, and this node refused it for good
// ("failed to get log entry: index=1").
//
// Not covered, and logged: a log that ends exactly at X with another term
// (Raft prefers its record of that entry to the snapshot's, so no log can
// help), a tail past X over 256 MiB, and a log that starts after X+1. The
// guard then deletes as Raft asks, and the node follows again once it
// restarts or once the leader's next snapshot passes the old log's end.
// An install that Raft runs in the instant between starting its goroutines
// and NewRaft's return is not seen (the guard tells it from NewRaft's own
// restore by that return).
//
// Entries a compaction removed, still read (raft-wal v0.4.1). raft-wal
// reads its tail segment without checking the log's first index, so the
// entries a compaction dropped from it are still found. A leader then walks
// a follower's next index back through them, down to 1, instead of sending
// its snapshot; a follower with a snapshot cannot take entry 1 (it no
// longer holds it to compare), and the two loop there for good. GetLog
// below the first index is "not found" here.
//
// A read that fails as NewRaft starts. NewRaft reads the last entry, and
// every entry after the snapshot it restores (its scan for configuration
// changes), and panics on one it cannot read (an I/O error, a damaged
// segment): the host process went down with it, at every start. The guard notes such a failure and
// newRaft returns that panic as New's error.
//
// A read that fails for a moment once Raft runs. Raft also panics when it
// cannot read a committed entry it is to apply (processLogs). A read of a
// committed entry not yet applied that fails with an I/O error is tried
// again, so that a disk that fails for a moment (a network volume's
// hiccup) does not end the process; the reads of one episode of failures
// are tried again for readRetryFor in all (readAgain), then returned, and
// Raft panics as before. Meanwhile the asker waits (Raft's main
// goroutine: this node applies nothing, and Close waits for it); a
// leader's Raft sends nothing meanwhile (raftRefused). Other reads go back at once: Raft answers
// their failures itself (a follower's check of a leader's entries,
// replication, a leader's metrics), and a damaged frame (ErrCorrupt) or a
// closed log will not read better. A read that hangs rather than fails is
// not bounded.
//
// An unreadable entry that is applied (damaged: summedLog finds the
// damage; or an I/O error). A leader's Raft sends a follower its snapshot
// only when an entry the follower needs is "not found"; on any other error
// it tries again, for good, its heartbeats keeping the follower. Such an
// entry is "not found" to Raft when the newest snapshot holds it; when
// none does, a leader's guard asks for a snapshot (snapshotToHold), and
// the reads after it answer so.
type logGuard struct {
	raft.LogStore // raft-wal, with its checksums (summedLog)

	snaps   raft.SnapshotStore
	applied func() uint64 // Raft's applied index: the snapshot's, during the install
	logf    func(string, ...any)
	maxKeep int64 // bytes of entries past X the rewrite holds in memory at most

	closing    <-chan struct{} // closed when the node closes
	retryPause time.Duration   // the first pause before writing the kept entries again, or reading again

	// armed is set once the state machine has taken a snapshot a leader
	// sent: the next delete of the whole log is removeOldLogs'. The next
	// append disarms it (the log was empty: nothing was deleted).
	armed atomic.Bool
	// standIn is set when the log may be empty after a snapshot (an
	// install, or a start that found it so): the next append, if the log
	// is empty and a stored snapshot ends just before it, puts the
	// stand-in for that snapshot's last entry first.
	standIn atomic.Bool
	mu      sync.Mutex // one delete at a time: installs and compactions

	// failedRead is the error of the last read that failed other than
	// with "not found" (newRaft).
	failedRead atomic.Pointer[error]
	// A failed read of a committed entry not yet applied is tried
	// again, until giveUpAt (monoNanos; 0: no failure yet), readRetryFor
	// after the first failure of its episode (readAgain). commit is
	// Raft's commit index, 0 until NewRaft has returned: nothing is
	// tried again before (newRaft).
	commit         func() uint64
	readRetryFor   time.Duration
	giveUpAt       atomic.Int64
	retried        atomic.Int64 // reads tried again (tests)
	notFound       atomic.Int64 // unreadable entries answered "not found" (GetLog)
	notFoundLogged atomic.Int64 // monoNanos of the last such answer logged
	waiting        atomic.Int32 // reads being tried again now
	onWait         func()       // called as a read is tried again (waitingToRead)
	// cannotSend is called when a read of an entry not applied fails
	// and is not tried again (cannotReadUnapplied).
	cannotSend func(index uint64, err error)
	// refuseUntil is the monoNanos until which a leader that could not
	// read such an entry sends nothing (raftRefused); refuseFor is how
	// long each such failure keeps it so.
	refuseUntil atomic.Int64
	refuseFor   time.Duration
	refuseLog   atomic.Int64 // monoNanos of the last such failure logged
	refusals    atomic.Int64 // such failures while leading (tests)
	// firstFail is the monoNanos of the first such failure of an episode
	// (0: none); only one refuseAfter or more after it refuses.
	firstFail   atomic.Int64
	refuseAfter time.Duration
	closer      atomic.Bool // a closeWhileRefused runs
	// snapshot asks Raft for a snapshot, in the background, if this node
	// leads, and reports whether it did (one runs at a time:
	// askSnapshot); snapshotAsked is the monoNanos of the guard's last
	// ask, and askEvery the spacing of the next (snapshotToHold).
	snapshot      func() bool
	snapshotAsked atomic.Int64
	askEvery      atomic.Int64
	askedSnapshot atomic.Int64 // snapshots it asked for (tests)
}

// defaultReadRetryFor bounds how long a failed read is tried again.
const defaultReadRetryFor = 10 * time.Second

// defaultMaxKeep bounds the entries past a snapshot the guard rewrites; a
// tail longer than that (not seen: it is what a deposed leader sent in its
// last moments) is deleted as Raft asks, and the node needs a restart.
const defaultMaxKeep = 256 << 20

func newLogGuard(logs raft.LogStore, snaps raft.SnapshotStore, applied func() uint64,
	logf func(string, ...any), closing <-chan struct{}) *logGuard {
	g := &logGuard{LogStore: logs, snaps: snaps, applied: applied, logf: logf, closing: closing,
		maxKeep: defaultMaxKeep, retryPause: 100 * time.Millisecond, readRetryFor: defaultReadRetryFor,
		commit: func() uint64 { return 0 }, onWait: func() {}, snapshot: func() bool { return false },
		cannotSend: func(uint64, error) {}}
	g.askEvery.Store(int64(notFoundLogEvery))
	return g
}

func (g *logGuard) IsMonotonic() bool {
	m, ok := g.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// restored is called when the state machine has restored a snapshot a
// leader sent (not NewRaft's restore at start-up).
func (g *logGuard) restored() {
	g.armed.Store(true)
	g.standIn.Store(true)
}

// starting is called before NewRaft: a log empty then gets the stand-in
// before its first append, if a snapshot ends just before it.
func (g *logGuard) starting() {
	if last, err := g.LastIndex(); err == nil && last == 0 {
		g.standIn.Store(true)
	}
}

// GetLog reads entry index; once Raft runs, a read of a committed entry
// not yet applied that fails is tried again for a while (readAgain). An
// entry that is applied, that the newest snapshot holds and that cannot
// be read (damaged, or an I/O error: a bad sector) is "not found" to
// Raft: a leader then sends a follower that needs it that snapshot (on
// any other error it tries the entry again, for good; after an error that
// passes, the follower gets a snapshot it did not need). If no snapshot
// holds it yet, the read fails as it did and the guard asks for one
// (snapshotToHold): Raft tries again, and a read after that snapshot is
// "not found". Not while NewRaft runs (applied is 0 then): it may restore
// an older snapshot than the newest, and read on from there. Not when the
// log is closing.
func (g *logGuard) GetLog(index uint64, l *raft.Log) error {
	err := g.peek(index, l)
	if err == nil {
		return nil
	}
	if !missingOrClosed(err) && index <= g.applied() {
		if g.inSnapshot(index) {
			g.answeredNotFound(err)
			return raft.ErrLogNotFound // Raft compares with ==
		}
		g.snapshotToHold(index, err)
	}
	if !g.retryable(index, err) {
		if !missingOrClosed(err) && index > g.applied() {
			g.cannotSend(index, err)
		}
		return err
	}
	return g.readAgain(index, l, err)
}

// notFoundLogEvery spaces the log lines of GetLog's "not found" answers
// (a leader asks again on every replication attempt), and the first
// snapshots the guard asks for (snapshotToHold).
const notFoundLogEvery = 10 * time.Second

// answeredNotFound counts a "not found" answer for a read that failed
// with err, and logs it unless one was logged within notFoundLogEvery.
func (g *logGuard) answeredNotFound(err error) {
	g.notFound.Add(1)
	g.askEvery.Store(int64(notFoundLogEvery)) // snapshotToHold's asks (if any) helped
	if _, ok := onceEvery(&g.notFoundLogged, notFoundLogEvery); ok {
		g.logf("logx: %v; answering Raft that it is not found, since the newest snapshot holds it (a follower that needs it is sent that snapshot); this is logged at most every %v", err, notFoundLogEvery)
	}
}

// snapshotToHold asks Raft for a snapshot, since entry index is applied,
// no snapshot holds it and a read of it failed with err: a leader's Raft
// tries such a read again for good while its heartbeats keep the
// follower that needs it (a cluster whose followers all need it commits
// nothing more). Once a snapshot holds it, GetLog answers "not found",
// and the leader sends that snapshot. Only a leader asks (g.snapshot),
// and not while another snapshot runs (the next failed read asks again).
//
// A snapshot may still not hold it: Raft's no-ops never reach the state
// machine, so a snapshot ends at the last entry before them, and the
// state machine may not have taken the entry yet. So the second ask
// comes twice notFoundLogEvery after the first, and the spacing doubles
// with every ask up to maxAskEvery; it starts again once an entry is
// answered "not found".
func (g *logGuard) snapshotToHold(index uint64, err error) {
	every := time.Duration(g.askEvery.Load())
	now, ok := onceEvery(&g.snapshotAsked, every)
	if !ok {
		return
	}
	if !g.snapshot() {
		g.snapshotAsked.CompareAndSwap(now, 0) // none started: ask again at the next read
		return
	}
	g.askEvery.Store(int64(min(2*every, maxAskEvery)))
	g.askedSnapshot.Add(1)
	g.logf("logx: %v; Raft entry %d is applied but no snapshot holds it: asking Raft for a snapshot, so that a follower that needs it is sent that (the next ask, if needed, in %v at the soonest)", err, index, min(2*every, maxAskEvery))
}

// maxAskEvery bounds the spacing of the snapshots snapshotToHold asks for.
const maxAskEvery = 10 * time.Minute

// onceEvery reports whether span has passed since the monoNanos in last
// (0: never), and if so stores now there and returns it; of callers
// racing, one gets true.
func onceEvery(last *atomic.Int64, span time.Duration) (now int64, ok bool) {
	now, prev := monoNanos(), last.Load()
	return now, (prev == 0 || now-prev >= int64(span)) && last.CompareAndSwap(prev, now)
}

// inSnapshot reports whether the newest stored snapshot holds entry index.
func (g *logGuard) inSnapshot(index uint64) bool {
	if g.snaps == nil {
		return false
	}
	metas, err := g.snaps.List() // newest first
	return err == nil && len(metas) > 0 && index <= metas[0].Index
}

// retryable reports whether a read of entry index that failed with err
// is one to try again: an I/O error, once Raft runs, of an entry Raft is
// to apply.
func (g *logGuard) retryable(index uint64, err error) bool {
	if errors.Is(err, raft.ErrLogNotFound) || errors.Is(err, types.ErrCorrupt) || errors.Is(err, types.ErrClosed) {
		return false
	}
	return index > g.applied() && index <= g.commit()
}

// readAgain tries a failed read of entry index again, every 100 ms
// doubling to 1 s, until the episode's giveUpAt; then it returns the last
// error. An episode starts at a failure readRetryFor or more after the
// last one ended, and lasts readRetryFor: however often reads fail, they
// wait at most readRetryFor in any twice that (a disk that fails every
// other read would otherwise add a wait per entry applied).
func (g *logGuard) readAgain(index uint64, l *raft.Log, err error) error {
	now, span := monoNanos(), int64(g.readRetryFor)
	for {
		end := g.giveUpAt.Load()
		if end != 0 && now < end+span || g.giveUpAt.CompareAndSwap(end, now+span) {
			break
		}
	}
	end := g.giveUpAt.Load()
	if now >= end {
		return err // this episode's time has run out
	}
	g.retried.Add(1)
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	g.logf("logx: reading Raft entry %d to apply it: %v; trying again for %v at most", index, err, time.Duration(end-now))
	for pause := max(g.retryPause, time.Millisecond); ; pause = min(2*pause, time.Second) {
		left := time.Duration(end - monoNanos())
		if left <= 0 {
			break
		}
		g.onWait()
		time.Sleep(min(pause, left))
		if err = g.peek(index, l); err == nil {
			g.logf("logx: Raft entry %d reads again", index)
			return nil
		}
		if !g.retryable(index, err) {
			return err
		}
	}
	g.logf("logx: reading Raft entry %d to apply it: %v; giving up", index, err)
	return err
}

// peek reads entry index once. Readers with an answer of their own to a
// failure use it: the install's (tailAfter) and apply's write-back,
// which retries (peekStore).
func (g *logGuard) peek(index uint64, l *raft.Log) error {
	first, err := g.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	err = g.LogStore.GetLog(index, l)
	if err != nil && !errors.Is(err, raft.ErrLogNotFound) {
		g.failedRead.Store(&err)
	}
	return err
}

func (g *logGuard) StoreLog(l *raft.Log) error {
	return g.StoreLogs([]*raft.Log{l})
}

// StoreLogs appends logs. The first append after an install that left the
// log empty puts the stand-in for the snapshot's last entry before them,
// so that the log starts at it, as after a compaction with trailing
// entries: a later leader that walks this node back stops there (its
// term is the committed one) instead of going on below the snapshot,
// where this node holds nothing to compare and, if that leader still holds
// entry 1, refuses it for good.
func (g *logGuard) StoreLogs(logs []*raft.Log) error {
	if g.armed.Load() {
		g.armed.Store(false)
	}
	if !g.standIn.Load() || len(logs) == 0 {
		return g.LogStore.StoreLogs(logs)
	}
	g.standIn.Store(false)
	last, err := g.LastIndex()
	if err != nil || last != 0 || logs[0].Index <= 2 {
		return g.LogStore.StoreLogs(logs)
	}
	// The snapshot ending just before the append is the committed state
	// up to it: its term is entry x's.
	x := logs[0].Index - 1
	term, err := g.termAt(x)
	if err != nil {
		g.logf("logx: no stand-in for Raft entry %d before the first append after a snapshot: %v", x, err)
		return g.LogStore.StoreLogs(logs)
	}
	err = g.LogStore.StoreLogs(append([]*raft.Log{standInFor(x, term)}, logs...))
	if err != nil {
		g.standIn.Store(true) // nothing was written (raft-wal appends a batch whole): the next try puts it first
	}
	return err
}

func (g *logGuard) DeleteRange(lo, hi uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.armed.Load() {
		return g.LogStore.DeleteRange(lo, hi)
	}
	first, err := g.FirstIndex()
	if err != nil {
		return err
	}
	last, err := g.LastIndex()
	if err != nil {
		return err
	}
	if lo > first || hi < last {
		// A compaction after this node's own snapshot (it keeps
		// TrailingLogs entries, so never reaches the last).
		return g.LogStore.DeleteRange(lo, hi)
	}
	g.armed.Store(false)
	x := g.applied()
	if x == 0 {
		return g.LogStore.DeleteRange(lo, hi)
	}
	if last < x { // nothing past the snapshot: all goes, and the next append puts x first
		return g.LogStore.DeleteRange(lo, hi)
	}
	keep, err := g.tailAfter(first, last, x)
	var stuck stuckError
	switch {
	case errors.As(err, &stuck):
		// As Raft asks: a restart reads the log's end again.
		g.logf("logx: after installing a snapshot that ends at Raft index %d: %v; this node follows again once it restarts, or once the leader's next snapshot passes the end of its old log", x, err)
		return g.LogStore.DeleteRange(lo, hi)
	case err != nil:
		// Nothing changed: Raft logs the failure and answers the install
		// as done; the log still ends where Raft's record says, and the
		// leader's next AppendEntries is checked against it as before.
		return err
	case keep == nil:
		return g.LogStore.DeleteRange(first, x-1) // the log holds entry x with its term
	}
	if err := g.LogStore.DeleteRange(first, last); err != nil {
		return err // raft-wal commits a truncation whole, or not at all
	}
	return g.store(keep)
}

// peekStore is the guard with every read tried once (peek).
type peekStore struct{ *logGuard }

func (s peekStore) GetLog(index uint64, l *raft.Log) error { return s.peek(index, l) }

// stuckError is why the guard cannot keep the log consistent with Raft's
// record of its end: until the node restarts, Raft refuses what the leader
// sends after the snapshot.
type stuckError struct{ error }

// tailAfter returns what the log [first, last] must become after a
// snapshot whose last entry is x: nil when the log holds entry x with the
// snapshot's term (only the entries before it go), else a no-op with that
// term at x and the entries after it.
func (g *logGuard) tailAfter(first, last, x uint64) ([]*raft.Log, error) {
	term, err := g.termAt(x)
	if err != nil {
		return nil, err
	}
	if first > x+1 {
		return nil, stuckError{fmt.Errorf("the log starts at %d, after it", first)}
	}
	if first <= x {
		var e raft.Log
		if err := g.peek(x, &e); err != nil {
			return nil, err
		}
		if e.Term == term {
			return nil, nil
		}
		if last == x {
			// Raft takes its own record of the last entry, (x, e.Term),
			// over the snapshot's for the check of the entry before the
			// leader's: no log can change that.
			return nil, stuckError{fmt.Errorf("this node's Raft log ends there with term %d, the snapshot's is %d", e.Term, term)}
		}
	}
	keep := []*raft.Log{standInFor(x, term)}
	var size int64
	for i := x + 1; i <= last; i++ {
		l := new(raft.Log)
		if err := g.peek(i, l); err != nil {
			return nil, fmt.Errorf("reading entry %d: %w", i, err)
		}
		if size += int64(len(l.Data) + len(l.Extensions)); size > g.maxKeep {
			return nil, stuckError{fmt.Errorf("entries %d to %d, past it, hold over %d bytes", x+1, last, g.maxKeep)}
		}
		keep = append(keep, l)
	}
	return keep, nil
}

// store appends keep to the emptied log, retrying until it succeeds or
// the node closes: the entries exist nowhere else. (On Raft's main
// goroutine, so the node does nothing else meanwhile, as on any full disk;
// after a Close or a crash the log is empty and the restart consistent.)
func (g *logGuard) store(keep []*raft.Log) error {
	pause := g.retryPause
	for {
		err := g.LogStore.StoreLogs(keep)
		if err == nil {
			return nil
		}
		g.logf("logx: writing back the Raft log past an installed snapshot (entries %d to %d): %v; retrying in %v", keep[0].Index, keep[len(keep)-1].Index, err, pause)
		select {
		case <-g.closing:
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// standInFor is the no-op that stands in for entry x, the last of a
// snapshot in term term: only its term is read.
func standInFor(x, term uint64) *raft.Log {
	return &raft.Log{Index: x, Term: term, Type: raft.LogNoop}
}

// termAt is the term of the stored snapshot whose last entry is index.
func (g *logGuard) termAt(index uint64) (uint64, error) {
	metas, err := g.snaps.List()
	if err != nil {
		return 0, err
	}
	for _, m := range metas {
		if m.Index == index {
			return m.Term, nil
		}
	}
	return 0, stuckError{errors.New("no stored snapshot ends there")}
}

// guardedFSM tells the guard of every snapshot a leader sent that the
// state machine took.
type guardedFSM struct {
	*fsm
	g *logGuard
}

func (s guardedFSM) Restore(rc io.ReadCloser) error {
	starting := s.bg.starting.Load() // NewRaft's own restore: no install follows
	err := s.fsm.Restore(rc)
	if err == nil && !starting {
		s.g.restored()
	}
	return err
}

// newRaft is raft.NewRaft with its panic on an entry of g it cannot read
// (the scan for configuration changes, before Raft's goroutines start)
// returned as an error, so that a damaged Raft log fails New rather than
// the host process, and with the read's error in its own (the read of the
// last entry). Any other panic is Raft's, and goes on.
func newRaft(g *logGuard, conf *raft.Config, fsm raft.FSM, logs raft.LogStore, stable raft.StableStore,
	snaps raft.SnapshotStore, trans raft.Transport) (r *raft.Raft, err error) {
	defer func() {
		p := recover()
		failed := g.failedRead.Load()
		switch {
		case p == nil && (err == nil || failed == nil):
			return
		case p != nil:
			if e, ok := p.(error); !ok || failed == nil || !errors.Is(e, *failed) { // Is: safe for any error type
				panic(p)
			}
		}
		// A panic on that read, or NewRaft's error after it (its read of
		// the last entry, which it returns with %v: the cause would be
		// lost).
		r, err = nil, fmt.Errorf("reading the Raft log: %w (the disk under it may be failing; a node with peers can be started on an empty Dir, and catches up from them: docs/deploy.md)", *failed)
	}()
	return raft.NewRaft(conf, fsm, logs, stable, snaps, trans)
}
